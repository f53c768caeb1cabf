-- Attempts are only ever read with their delivery's: keyed by it, an attempt costs one index
-- entry instead of two (the sequence and the delivery's index), and no sequence call.
ALTER TABLE attempts DROP CONSTRAINT attempts_pkey;
DROP INDEX attempts_delivery;
ALTER TABLE attempts DROP COLUMN seq;
ALTER TABLE attempts ADD PRIMARY KEY (delivery_id, id);
