-- The ledger (DESIGN §8): append-only double entry, per currency.
--
-- A posting is one ledger_transactions row and its ledger_entries lines;
-- ledger_balances keeps each account's running totals, written in the same
-- transaction as the lines. Balance sign convention: debits - credits.

CREATE TABLE ledger_transactions (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('payment', 'refund', 'wallet_top_up')),
    -- The merchant whose accounts the posting touches (NULL if none), so a
    -- merchant's reads are scoped without parsing account names.
    merchant_id TEXT,
    payment_id  TEXT,
    refund_id   TEXT,
    created_at  INTEGER NOT NULL,
    -- The references the uniqueness below rests on must be there.
    CHECK ((kind = 'payment' AND payment_id IS NOT NULL AND refund_id IS NULL)
        OR (kind = 'refund' AND payment_id IS NOT NULL AND refund_id IS NOT NULL)
        OR (kind = 'wallet_top_up' AND payment_id IS NULL AND refund_id IS NULL))
);
-- A posting is idempotent in the schema, not only in code: one per payment,
-- one per refund (a top-up is idempotent by its own id, the primary key).
CREATE UNIQUE INDEX ledger_one_posting_per_payment ON ledger_transactions (payment_id)
    WHERE kind = 'payment';
CREATE UNIQUE INDEX ledger_one_posting_per_refund ON ledger_transactions (refund_id)
    WHERE refund_id IS NOT NULL;
-- A payment's postings (its own and its refunds'), and a merchant's, newest first.
CREATE INDEX ledger_transactions_by_payment ON ledger_transactions (payment_id, id);
CREATE INDEX ledger_transactions_by_merchant ON ledger_transactions (merchant_id, id);

CREATE TABLE ledger_entries (
    transaction_id TEXT NOT NULL REFERENCES ledger_transactions (id),
    line           INTEGER NOT NULL CHECK (line > 0),
    account        TEXT NOT NULL,
    direction      TEXT NOT NULL CHECK (direction IN ('debit', 'credit')),
    amount         INTEGER NOT NULL CHECK (amount > 0),
    currency       TEXT NOT NULL,
    -- The posting's time, copied so `as_of` reads need no join.
    created_at     INTEGER NOT NULL,
    PRIMARY KEY (transaction_id, line)
);
-- Balances as of a point in time sum one account's lines up to it.
CREATE INDEX ledger_entries_by_account ON ledger_entries (account, created_at);

CREATE TABLE ledger_balances (
    account  TEXT NOT NULL,
    currency TEXT NOT NULL,
    debits   INTEGER NOT NULL CHECK (debits >= 0),
    credits  INTEGER NOT NULL CHECK (credits >= 0),
    PRIMARY KEY (account, currency),
    -- Last line of defence: a wallet never holds less than nothing. The
    -- writer's conditional debit refuses first, with a clean answer.
    CHECK (substr(account, 1, 16) <> 'customer_wallet:' OR credits >= debits)
);

-- Lines and transactions are append-only, and a balance row, once there,
-- stays: the database itself refuses edits.
CREATE TRIGGER ledger_transactions_no_update BEFORE UPDATE ON ledger_transactions
BEGIN SELECT RAISE(ABORT, 'ledger_transactions is append-only'); END;
CREATE TRIGGER ledger_transactions_no_delete BEFORE DELETE ON ledger_transactions
BEGIN SELECT RAISE(ABORT, 'ledger_transactions is append-only'); END;
CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE ON ledger_entries
BEGIN SELECT RAISE(ABORT, 'ledger_entries is append-only'); END;
CREATE TRIGGER ledger_entries_no_delete BEFORE DELETE ON ledger_entries
BEGIN SELECT RAISE(ABORT, 'ledger_entries is append-only'); END;
CREATE TRIGGER ledger_balances_no_delete BEFORE DELETE ON ledger_balances
BEGIN SELECT RAISE(ABORT, 'ledger_balances rows are never removed'); END;
