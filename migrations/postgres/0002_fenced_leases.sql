-- Fenced leases (DESIGN §5): a lease names its holder as (instance id,
-- incarnation). The instance id is stable across restarts of one
-- deployment; the incarnation grows at every boot, so a booting instance
-- knows that leases held by its earlier incarnations are dead.

CREATE TABLE instances (
    instance_id TEXT PRIMARY KEY,
    incarnation BIGINT NOT NULL CHECK (incarnation > 0),
    started_at  BIGINT NOT NULL
);

ALTER TABLE orders ADD COLUMN lease_incarnation BIGINT;
-- The recovery scan looks for live payments whose lease is dead.
CREATE INDEX orders_by_lease ON orders (lease_owner, lease_expires_at);

-- An idempotency record stores the final answer's body; every final answer
-- is a created resource (the API's 201), so no status is kept, and a NULL
-- body means the first request is still running.
ALTER TABLE idempotency_keys DROP COLUMN response_status;
