-- Refunds (DESIGN §6): one row per refund, resolved like a charge
-- (succeeded, failed, or pending while the provider has not said).
--
-- A payment keeps what its refunds have taken (amount_refunded, succeeded
-- ones) and what they hold (amount_refund_pending, still pending): a new
-- refund reserves its amount with one conditional update that checks the
-- sum of both against the amount captured, so concurrent refunds, across
-- instances too, can never exceed it.

ALTER TABLE payments ADD COLUMN amount_refund_pending BIGINT NOT NULL DEFAULT 0
    CHECK (amount_refund_pending >= 0);

CREATE TABLE refunds (
    id                 TEXT COLLATE "C" PRIMARY KEY,
    payment_id         TEXT NOT NULL REFERENCES payments (id),
    merchant_id        TEXT NOT NULL,
    amount             BIGINT NOT NULL CHECK (amount > 0),
    currency           TEXT NOT NULL,
    reason             TEXT,
    status             TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    failure_code       TEXT,
    provider           TEXT NOT NULL,
    provider_refund_id TEXT,
    raw_response       TEXT,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);
CREATE INDEX refunds_by_payment ON refunds (payment_id, id);
-- The reconciler finds refunds whose outcome is still unknown.
CREATE INDEX refunds_by_status ON refunds (status, updated_at);

-- An idempotency key may create a refund as well as a payment: the record
-- then names the refund its answer belongs to.
ALTER TABLE idempotency_keys ADD COLUMN refund_id TEXT;

-- A wallet top-up is idempotent per merchant and key, like a payment; it
-- has no payment or order, so its keys live in a table of their own.
CREATE TABLE top_up_keys (
    merchant_id     TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    fingerprint     TEXT NOT NULL,
    transaction_id  TEXT NOT NULL,
    response_body   TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (merchant_id, idempotency_key)
);
