CREATE TABLE IF NOT EXISTS tenants (
    id TEXT PRIMARY KEY,
    created_ms BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS api_keys (
    api_key TEXT PRIMARY KEY,
    secret_sha256 BYTEA NOT NULL,
    tenant_id TEXT REFERENCES tenants(id),
    mode TEXT,
    operator BOOLEAN NOT NULL DEFAULT FALSE,
    created_ms BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS subscriptions (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    tenant_id TEXT NOT NULL,
    mode TEXT NOT NULL,
    name TEXT NOT NULL,
    url TEXT NOT NULL,
    -- ",TYPE_A,TYPE_B," so that matching is one LIKE in the publish transaction
    event_types TEXT NOT NULL,
    active BOOLEAN NOT NULL,
    secret TEXT NOT NULL,
    previous_secret TEXT,
    previous_secret_until_ms BIGINT,
    include_payload BOOLEAN NOT NULL,
    disabled_reason TEXT,
    failing_since_ms BIGINT,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS subscriptions_scope ON subscriptions(tenant_id, mode, active);

CREATE TABLE IF NOT EXISTS events (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    tenant_id TEXT NOT NULL,
    mode TEXT NOT NULL,
    type TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    body TEXT NOT NULL,
    lean_body TEXT
);
CREATE INDEX IF NOT EXISTS events_scope ON events(tenant_id, mode, seq);

CREATE TABLE IF NOT EXISTS deliveries (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    subscription_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    mode TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT,
    lean BOOLEAN NOT NULL,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    last_status_code INTEGER,
    last_error TEXT,
    -- the node sending it, until when; NULL when nobody holds it
    lease_owner TEXT,
    lease_until_ms BIGINT
);
CREATE INDEX IF NOT EXISTS deliveries_subscription ON deliveries(subscription_id, seq);
CREATE INDEX IF NOT EXISTS deliveries_event ON deliveries(event_id);

CREATE TABLE IF NOT EXISTS attempts (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    attempted_ms BIGINT NOT NULL,
    status_code INTEGER,
    latency_ms BIGINT NOT NULL,
    response_body TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS attempts_delivery ON attempts(delivery_id, seq);

-- Rate-limit counters shared by the nodes; losing them in a crash loses nothing of value.
CREATE UNLOGGED TABLE IF NOT EXISTS request_counts (
    client TEXT NOT NULL,
    window_s BIGINT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (client, window_s)
);

-- The sandbox platform's records, as the JSON the API serves.
CREATE TABLE IF NOT EXISTS documents (
    seq BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    mode TEXT NOT NULL,
    user_id TEXT,
    source_id TEXT,
    created_ms BIGINT NOT NULL,
    body TEXT NOT NULL,
    UNIQUE (kind, id)
);
CREATE INDEX IF NOT EXISTS documents_scope ON documents(tenant_id, mode, kind, seq);
CREATE INDEX IF NOT EXISTS documents_source ON documents(source_id);
