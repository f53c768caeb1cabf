-- Attempts are only ever read with their delivery's. Kept in one B-tree keyed by the delivery,
-- an attempt costs one insert instead of three (the row, its id, its delivery's index): the
-- attempt log is written once per delivery, so this is a fifth of a delivery's writes.
CREATE TABLE attempts_by_delivery (
    delivery_id TEXT NOT NULL,
    id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    attempted_ms INTEGER NOT NULL,
    status_code INTEGER,
    latency_ms INTEGER NOT NULL,
    response_body TEXT,
    error TEXT,
    PRIMARY KEY (delivery_id, id)
) WITHOUT ROWID;
INSERT INTO attempts_by_delivery (delivery_id, id, attempt, attempted_ms, status_code, latency_ms, response_body, error)
    SELECT delivery_id, id, attempt, attempted_ms, status_code, latency_ms, response_body, error FROM attempts;
DROP TABLE attempts;
ALTER TABLE attempts_by_delivery RENAME TO attempts;
