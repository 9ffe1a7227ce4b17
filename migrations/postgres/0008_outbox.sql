-- Outgoing events (DESIGN §11): the event log is the outbox. Each payment
-- and refund status change (and each new discrepancy) writes its event in
-- the same transaction as the change; the deliverer fans each event out to
-- the configured webhook endpoints and, with NATS configured, publishes it.
CREATE TABLE events (
    id           TEXT PRIMARY KEY,
    merchant_id  TEXT NOT NULL,
    type         TEXT NOT NULL,
    payment_id   TEXT,
    refund_id    TEXT,
    -- the object's snapshot (a payment, refund or discrepancy as the API shows it)
    data         TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    -- 0 until the deliverer made this event's webhook deliveries
    fanned_out   BIGINT NOT NULL DEFAULT 0,
    -- when JetStream acknowledged it (NULL: not published)
    published_at BIGINT
);
CREATE INDEX events_by_merchant ON events (merchant_id, id);
CREATE INDEX events_by_merchant_type ON events (merchant_id, type, id);
CREATE INDEX events_to_fan_out ON events (created_at, id) WHERE fanned_out = 0;
CREATE INDEX events_to_publish ON events (created_at, id) WHERE published_at IS NULL;

-- One event's delivery to one endpoint: at least once, with backoff, then
-- dead-lettered. The lease (holder, until) makes one instance of several
-- deliver it at a time.
CREATE TABLE webhook_deliveries (
    event_id        TEXT NOT NULL,
    endpoint_id     TEXT NOT NULL,
    endpoint_url    TEXT NOT NULL,
    merchant_id     TEXT NOT NULL,
    -- pending | delivered | dead
    status          TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_error      TEXT,
    lease_holder    TEXT,
    lease_until     BIGINT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (event_id, endpoint_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
