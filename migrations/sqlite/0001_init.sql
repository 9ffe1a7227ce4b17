-- The engine's core tables. Timestamps are integer microseconds since the
-- Unix epoch (UTC) in both backends, so values round-trip exactly.

CREATE TABLE payments (
    id                  TEXT PRIMARY KEY,
    merchant_id         TEXT NOT NULL,
    order_id            TEXT NOT NULL,
    customer_id         TEXT NOT NULL,
    status              TEXT NOT NULL,
    amount              INTEGER NOT NULL CHECK (amount > 0),
    amount_refunded     INTEGER NOT NULL DEFAULT 0 CHECK (amount_refunded >= 0 AND amount_refunded <= amount),
    currency            TEXT NOT NULL,
    payment_method      TEXT NOT NULL,
    description         TEXT,
    provider            TEXT,
    provider_payment_id TEXT,
    failure_code        TEXT,
    failure_message     TEXT,
    next_attempt_at     INTEGER,
    anomaly_flags       TEXT NOT NULL DEFAULT '[]',
    metadata            TEXT NOT NULL DEFAULT '{}',
    recovery_attempts   INTEGER NOT NULL DEFAULT 0,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL
);
-- Listing is always per merchant, newest first; ids are UUIDv7 so id order is time order.
CREATE INDEX payments_by_merchant ON payments (merchant_id, id);
CREATE INDEX payments_by_customer ON payments (merchant_id, customer_id, id);
CREATE INDEX payments_by_order ON payments (merchant_id, order_id, id);
-- Stuck-work and scheduled-retry scans.
CREATE INDEX payments_by_status ON payments (status, next_attempt_at);

CREATE TABLE attempts (
    id                       TEXT PRIMARY KEY,
    payment_id               TEXT NOT NULL REFERENCES payments (id),
    number                   INTEGER NOT NULL CHECK (number > 0),
    provider                 TEXT NOT NULL,
    provider_idempotency_key TEXT NOT NULL,
    outcome                  TEXT NOT NULL,
    code                     TEXT,
    latency_ms               INTEGER,
    provider_payment_id      TEXT,
    raw_response             TEXT,
    created_at               INTEGER NOT NULL,
    updated_at               INTEGER NOT NULL,
    UNIQUE (payment_id, number)
);
-- Crash recovery looks for attempts left 'processing'.
CREATE INDEX attempts_by_outcome ON attempts (outcome, created_at);

CREATE TABLE idempotency_keys (
    merchant_id     TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    fingerprint     TEXT NOT NULL,
    payment_id      TEXT NOT NULL,
    order_id        TEXT NOT NULL,
    response_status INTEGER,
    response_body   TEXT,
    created_at      INTEGER NOT NULL,
    completed_at    INTEGER,
    PRIMARY KEY (merchant_id, idempotency_key)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
-- The final answer is stored by payment (recovery does not know the key).
CREATE INDEX idempotency_keys_by_payment ON idempotency_keys (merchant_id, payment_id);

-- One row per order: which payment currently holds it (the order-level guard)
-- and which instance is working on it (the lease).
CREATE TABLE orders (
    merchant_id      TEXT NOT NULL,
    order_id         TEXT NOT NULL,
    payment_id       TEXT NOT NULL,
    status           TEXT NOT NULL,
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    updated_at       INTEGER NOT NULL,
    PRIMARY KEY (merchant_id, order_id)
);

CREATE TABLE payment_events (
    id          TEXT PRIMARY KEY,
    payment_id  TEXT NOT NULL,
    merchant_id TEXT NOT NULL,
    type        TEXT NOT NULL,
    from_status TEXT,
    to_status   TEXT,
    attempt_id  TEXT,
    data        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX payment_events_by_payment ON payment_events (payment_id, id);

-- The audit trail is append-only: the database itself refuses edits.
CREATE TRIGGER payment_events_no_update BEFORE UPDATE ON payment_events
BEGIN SELECT RAISE(ABORT, 'payment_events is append-only'); END;
CREATE TRIGGER payment_events_no_delete BEFORE DELETE ON payment_events
BEGIN SELECT RAISE(ABORT, 'payment_events is append-only'); END;
