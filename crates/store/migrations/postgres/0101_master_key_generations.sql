-- Which generation of the master key wraps each resident key. Rotating the master key re-wraps
-- every row under a new generation in one transaction; a generation that wraps no row any more
-- can be destroyed, and with it every copy of a deleted row (in backups, say) becomes unopenable.
-- Keys stored before generations existed were wrapped by the one master key there was: 1.
ALTER TABLE resident_keys ADD COLUMN master_generation BIGINT NOT NULL DEFAULT 1;
