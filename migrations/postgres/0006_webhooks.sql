-- Inbound provider webhooks (DESIGN §6): each event is applied once. The
-- receipt is the deduplication record (a provider delivers at least once,
-- and redelivers what it thinks failed) and says what the event did.
CREATE TABLE webhook_receipts (
    provider     TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    kind         TEXT NOT NULL,
    payment_id   TEXT,
    refund_id    TEXT,
    -- applied | no_effect | late | unmatched
    result       TEXT NOT NULL,
    received_at  BIGINT NOT NULL,
    PRIMARY KEY (provider, event_id)
);
CREATE INDEX webhook_receipts_by_payment ON webhook_receipts (payment_id);
