-- Idempotent publishing: a caller's key, in its tenant and mode, names the first event made
-- with it; a later request with the same key (within 24 hours) gets that event back.
CREATE TABLE idempotency_keys (
    tenant_id TEXT NOT NULL,
    mode TEXT NOT NULL,
    key TEXT NOT NULL,
    -- What the first request asked for, so that a different request with the key is refused.
    fingerprint TEXT NOT NULL,
    event_id TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, mode, key)
);
CREATE INDEX idempotency_keys_age ON idempotency_keys(created_ms);
