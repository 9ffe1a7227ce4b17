-- The append-only tables, the audit trail (payment_events) and the ledger's
-- lines (ledger_entries), partitioned by month of created_at (DESIGN §11),
-- so that a table of ten million payments' events stays as fast to write
-- and to index as a small one, and an old month can be archived whole.
--
-- created_at is microseconds since the Unix epoch (UTC). Partitions are
-- named <table>_yYYYYmMM and created ahead by the engine
-- (payments_ensure_partitions, called at start and by the reconciler); a
-- DEFAULT partition catches rows of a month nobody created, so a write is
-- never refused for want of a partition.

-- The first microsecond of the UTC month `months` after the one holding `at_us`.
CREATE FUNCTION payments_month_start(at_us BIGINT, months INT) RETURNS BIGINT
LANGUAGE sql IMMUTABLE AS $$
    SELECT (extract(epoch FROM
        ((date_trunc('month', to_timestamp(at_us / 1000000.0) AT TIME ZONE 'UTC')
          + make_interval(months => months)) AT TIME ZONE 'UTC')) * 1000000)::BIGINT
$$;

-- Creates the month partitions of `parent` from the month holding `from_us`
-- to `months_ahead` months after the one holding `now_us`; returns how many
-- it created. A month whose rows already sit in the DEFAULT partition is
-- skipped with a notice (creating it would fail); those rows stay readable.
CREATE FUNCTION payments_ensure_partitions(parent TEXT, from_us BIGINT, now_us BIGINT, months_ahead INT)
RETURNS INT LANGUAGE plpgsql AS $$
DECLARE
    lower_us BIGINT := payments_month_start(LEAST(from_us, now_us), 0);
    last_us  BIGINT := payments_month_start(now_us, months_ahead);
    upper_us BIGINT;
    name     TEXT;
    created  INT := 0;
BEGIN
    -- Bounded: at most 1200 months (a century) in one call.
    FOR i IN 1..1200 LOOP
        EXIT WHEN lower_us > last_us;
        upper_us := payments_month_start(lower_us, 1);
        name := parent || '_y' || to_char(to_timestamp(lower_us / 1000000.0) AT TIME ZONE 'UTC', 'YYYY"m"MM');
        IF to_regclass(quote_ident(name)) IS NULL THEN
            BEGIN
                EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%s) TO (%s)',
                               name, parent, lower_us, upper_us);
                created := created + 1;
            EXCEPTION WHEN check_violation OR invalid_object_definition THEN
                RAISE NOTICE 'partition % not created: % (its rows stay in the default partition)', name, SQLERRM;
            END;
        END IF;
        lower_us := upper_us;
    END LOOP;
    RETURN created;
END;
$$;

-- payment_events: the same columns; the key gains created_at (a partitioned
-- table's unique keys must hold its partition key; ids are UUIDv7 and
-- unique on their own).
ALTER TABLE payment_events RENAME TO payment_events_unpartitioned;
DROP INDEX payment_events_by_payment;
CREATE TABLE payment_events (
    id          TEXT NOT NULL,
    payment_id  TEXT NOT NULL,
    merchant_id TEXT NOT NULL,
    type        TEXT NOT NULL,
    from_status TEXT,
    to_status   TEXT,
    attempt_id  TEXT,
    data        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);
CREATE TABLE payment_events_default PARTITION OF payment_events DEFAULT;
CREATE INDEX payment_events_by_payment ON payment_events (payment_id, id);

-- ledger_entries: likewise.
ALTER TABLE ledger_entries RENAME TO ledger_entries_unpartitioned;
DROP INDEX ledger_entries_by_account;
CREATE TABLE ledger_entries (
    transaction_id TEXT COLLATE "C" NOT NULL REFERENCES ledger_transactions (id),
    line           BIGINT NOT NULL CHECK (line > 0),
    account        TEXT NOT NULL,
    direction      TEXT NOT NULL CHECK (direction IN ('debit', 'credit')),
    amount         BIGINT NOT NULL CHECK (amount > 0),
    currency       TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    PRIMARY KEY (transaction_id, line, created_at)
) PARTITION BY RANGE (created_at);
CREATE TABLE ledger_entries_default PARTITION OF ledger_entries DEFAULT;
CREATE INDEX ledger_entries_by_account ON ledger_entries (account, created_at);

-- The months the existing rows belong to, and three ahead, before they move.
SELECT payments_ensure_partitions('payment_events',
    COALESCE((SELECT min(created_at) FROM payment_events_unpartitioned),
             (extract(epoch FROM now()) * 1000000)::BIGINT),
    (extract(epoch FROM now()) * 1000000)::BIGINT, 3);
SELECT payments_ensure_partitions('ledger_entries',
    COALESCE((SELECT min(created_at) FROM ledger_entries_unpartitioned),
             (extract(epoch FROM now()) * 1000000)::BIGINT),
    (extract(epoch FROM now()) * 1000000)::BIGINT, 3);

INSERT INTO payment_events SELECT id, payment_id, merchant_id, type, from_status, to_status,
    attempt_id, data, created_at FROM payment_events_unpartitioned;
INSERT INTO ledger_entries SELECT transaction_id, line, account, direction, amount, currency,
    created_at FROM ledger_entries_unpartitioned;
-- DROP is not an UPDATE, DELETE or TRUNCATE: the append-only triggers let
-- the old tables go once their rows moved.
DROP TABLE payment_events_unpartitioned;
DROP TABLE ledger_entries_unpartitioned;

-- The append-only rules, on the new tables (row triggers on a partitioned
-- table apply to every partition, present and future).
CREATE TRIGGER payment_events_no_update BEFORE UPDATE OR DELETE ON payment_events
    FOR EACH ROW EXECUTE FUNCTION payment_events_append_only();
CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();
