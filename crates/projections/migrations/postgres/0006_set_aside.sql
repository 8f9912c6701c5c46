-- A schedule row the scheduler cannot read (a value this build cannot decode) is set aside with
-- its reason, so that it neither stops every other complaint's escalations nor is read again.
-- Only rows with no reason are due. A change of the complaint's clock replaces the row as usual.
ALTER TABLE escalation_schedule ADD COLUMN set_aside_reason TEXT;
ALTER TABLE escalation_schedule ADD COLUMN set_aside_at BIGINT;

-- Deliveries the worker cannot read are set aside the same way, in escalation_deliveries'
-- state column: PENDING, DELIVERED, DEAD, or SET_ASIDE (never claimed; its reason is in
-- last_error). No schema change is needed for it.
