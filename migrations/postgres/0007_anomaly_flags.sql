-- Anomaly flags (DESIGN §6, §10): one row per rule that fired for a payment,
-- written in the same transaction as the payment it flags. Ids are
-- `af_` + UUIDv7, so id order is time order (newest first = id DESC).
CREATE TABLE anomaly_flags (
    id           TEXT COLLATE "C" PRIMARY KEY,
    merchant_id  TEXT NOT NULL,
    rule         TEXT NOT NULL,
    action       TEXT NOT NULL CHECK (action IN ('flag', 'block')),
    customer_id  TEXT NOT NULL,
    payment_id   TEXT NOT NULL,
    detail       TEXT NOT NULL DEFAULT '{}',
    created_at   BIGINT NOT NULL
);
-- Listing: per merchant (or all, for an operator), newest first.
CREATE INDEX anomaly_flags_by_merchant ON anomaly_flags (merchant_id, id);
CREATE INDEX anomaly_flags_by_customer ON anomaly_flags (merchant_id, customer_id, id);
-- `scope = "cluster"` counts a customer's payments of the last window
-- by creation time (warm start reads by `payments_by_created`).
CREATE INDEX payments_by_customer_time ON payments (merchant_id, customer_id, created_at);
