-- Reconciliation (DESIGN §9): runs, what they found, and the provider
-- records a run compares against, staged here so that the comparison is a
-- join in the database, not a window held in memory.

CREATE TABLE reconciliation_runs (
    id           TEXT PRIMARY KEY,
    trigger      TEXT NOT NULL CHECK (trigger IN ('timer', 'manual')),
    window_from  INTEGER NOT NULL,
    window_to    INTEGER NOT NULL,
    checked      INTEGER NOT NULL,
    matched      INTEGER NOT NULL,
    mismatched   INTEGER NOT NULL,
    by_category  TEXT NOT NULL,
    duration_ms  INTEGER NOT NULL,
    created_at   INTEGER NOT NULL
);

-- A finding is kept once: a later run that finds it again adds nothing.
CREATE TABLE discrepancies (
    id                 TEXT PRIMARY KEY,
    run_id             TEXT NOT NULL,
    category           TEXT NOT NULL,
    severity           TEXT NOT NULL,
    -- What the finding is about (a payment, refund, transaction, provider
    -- reference or order), the key of "the same finding".
    subject            TEXT NOT NULL,
    merchant_id        TEXT,
    payment_id         TEXT,
    provider           TEXT,
    provider_reference TEXT,
    expected           TEXT,
    actual             TEXT,
    status             TEXT NOT NULL CHECK (status IN ('open', 'resolved')),
    resolution         TEXT,
    created_at         INTEGER NOT NULL,
    resolved_at        INTEGER,
    UNIQUE (category, subject)
);
CREATE INDEX discrepancies_by_status ON discrepancies (status, id);
CREATE INDEX discrepancies_by_payment ON discrepancies (payment_id, id);

-- One run's provider records, while it runs.
CREATE TABLE reconciliation_records (
    run_id          TEXT NOT NULL,
    provider        TEXT NOT NULL,
    reference       TEXT NOT NULL,
    kind            TEXT NOT NULL,
    payment_id      TEXT,
    merchant_id     TEXT,
    order_id        TEXT,
    amount          INTEGER NOT NULL,
    currency        TEXT NOT NULL,
    fee             INTEGER NOT NULL,
    status          TEXT NOT NULL,
    amount_refunded INTEGER NOT NULL,
    created_at      INTEGER NOT NULL
);
CREATE INDEX reconciliation_records_by_run ON reconciliation_records (run_id, reference);
CREATE INDEX reconciliation_records_by_payment ON reconciliation_records (run_id, payment_id);

-- Provider records name a payment by the provider's reference.
CREATE INDEX payments_by_reference ON payments (provider_payment_id)
    WHERE provider_payment_id IS NOT NULL;
-- Runs read one window of payments.
CREATE INDEX payments_by_created ON payments (created_at);
