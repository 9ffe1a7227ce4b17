-- Reconciliation stages provider records in a TEMP table of a connection
-- of its own (src/store/sqlite/staging.rs), off the payments' writer and
-- its fsyncs: the table in the database is no longer used.
DROP TABLE reconciliation_records;
