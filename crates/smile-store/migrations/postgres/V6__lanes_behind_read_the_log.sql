-- A lane that falls behind (its window full) stops getting delivery rows at publish: its
-- deliveries stay in the event log past `cursor_seq` until the lane reads them. NULL: every
-- delivery of the subscription is written at publish. A publish that leaves a row out holds
-- the lane's log lock (shared) until it commits, so the lane never reads past it.
ALTER TABLE subscriptions ADD COLUMN cursor_seq BIGINT;
-- What a delivery written from the log needs to know of its event.
ALTER TABLE events ADD COLUMN order_key TEXT;
-- A test send's one subscription; such an event is never read from the log.
ALTER TABLE events ADD COLUMN only_subscription TEXT;
