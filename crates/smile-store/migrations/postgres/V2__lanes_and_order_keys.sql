-- Lanes: the store is the queue. A lane (one subscription's pending deliveries) is leased
-- whole to one node, so reading it is a plain read and FIFO needs no extra lock.
ALTER TABLE subscriptions ADD COLUMN fifo BOOLEAN NOT NULL DEFAULT FALSE;
-- Deliveries with the same order key to one subscription go in publish order; a later one
-- is parked (next_attempt_ms NULL) while an earlier one is pending.
ALTER TABLE deliveries ADD COLUMN order_key TEXT;
ALTER TABLE deliveries DROP COLUMN lease_owner, DROP COLUMN lease_until_ms;
DROP INDEX IF EXISTS deliveries_due;
CREATE INDEX deliveries_lane ON deliveries(subscription_id, next_attempt_ms, seq) WHERE status = 'PENDING';
CREATE INDEX deliveries_order ON deliveries(subscription_id, order_key, seq)
    WHERE status = 'PENDING' AND order_key IS NOT NULL;
CREATE TABLE lanes (
    subscription_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    until_ms BIGINT NOT NULL
);
