-- A large fan-out's delivery rows are written after its event's commit, in parts, so that
-- the publish is answered once the event is durable instead of after a 1,000-row insert.
-- Until then each part's subscriptions (their ids, comma separated) wait here; any node
-- writes a part its publisher left (a crash, a failed write) once it is old enough.
CREATE TABLE spreads (
    event_id TEXT NOT NULL,
    part INTEGER NOT NULL,
    subscriptions TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (event_id, part)
);
CREATE INDEX spreads_age ON spreads(created_ms);
