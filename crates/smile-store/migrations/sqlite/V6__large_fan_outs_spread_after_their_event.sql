-- A large fan-out's delivery rows are written after its event's commit, in parts, so that
-- the publish is answered once the event is durable and the rows never make one long
-- commit. Until then each part's subscriptions (their numbers, a JSON array) wait here; a
-- start after a crash writes what is left.
CREATE TABLE spreads (
    event_seq INTEGER NOT NULL,
    part INTEGER NOT NULL,
    subscriptions TEXT NOT NULL,
    PRIMARY KEY (event_seq, part)
) WITHOUT ROWID;
