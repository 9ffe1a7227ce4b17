-- Balance slots (see the PostgreSQL migration 0010): SQLite has one
-- writer, so every balance stays in slot 0; the column keeps the two
-- schemas and their statements alike.
CREATE TABLE ledger_balances_slotted (
    account  TEXT NOT NULL,
    currency TEXT NOT NULL,
    slot     INTEGER NOT NULL DEFAULT 0,
    debits   INTEGER NOT NULL CHECK (debits >= 0),
    credits  INTEGER NOT NULL CHECK (credits >= 0),
    PRIMARY KEY (account, currency, slot),
    CHECK (substr(account, 1, 16) <> 'customer_wallet:' OR credits >= debits)
);
INSERT INTO ledger_balances_slotted (account, currency, slot, debits, credits)
    SELECT account, currency, 0, debits, credits FROM ledger_balances;
DROP TABLE ledger_balances;
ALTER TABLE ledger_balances_slotted RENAME TO ledger_balances;
CREATE TRIGGER ledger_balances_no_delete BEFORE DELETE ON ledger_balances
BEGIN SELECT RAISE(ABORT, 'ledger_balances rows are never removed'); END;
