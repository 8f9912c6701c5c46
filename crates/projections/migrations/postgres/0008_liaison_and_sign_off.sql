-- Resident liaison, standards sign-off and equality conditions (issue 17).
--
-- contractors.liaison_lead is the lead a complaint about the contractor received now is
-- attributed to (IN_HOUSE, CONTRACTOR, or '' for unknown); contractors.contracts is a JSON array
-- of each contract's reference, sorted standard codes and whether they are signed off.
-- complaint_handling.liaison_lead is the lead a complaint was attributed to when received, and
-- liaison_handling_counters holds the contractors' handling counters (0003) by that lead.

-- The new columns need the whole log. Every read model shares one checkpoint, so forget it (and
-- the rows it covers): the runner then rebuilds everything from position 0 (as 0002-0004 did).
DELETE FROM complaint_list;
DELETE FROM contractors;
DELETE FROM contractor_lookup;
DELETE FROM visits;
DELETE FROM contractor_month_visits;
DELETE FROM contractor_month_standard;
DELETE FROM complaint_findings;
DELETE FROM complaint_handling;
DELETE FROM handling_counters;
DELETE FROM escalation_clocks;
DELETE FROM escalation_schedule;
DELETE FROM escalations;
DELETE FROM projection_checkpoints;

ALTER TABLE contractors ADD COLUMN liaison_lead TEXT NOT NULL DEFAULT '';
ALTER TABLE contractors ADD COLUMN contracts TEXT NOT NULL DEFAULT '[]';
ALTER TABLE complaint_handling ADD COLUMN liaison_lead TEXT NOT NULL DEFAULT '';

CREATE INDEX complaint_handling_by_liaison_lead ON complaint_handling (month, liaison_lead, contractor_id);

CREATE TABLE liaison_handling_counters (
    liaison_lead TEXT NOT NULL,
    metric TEXT NOT NULL,
    month TEXT NOT NULL,
    value BIGINT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (liaison_lead, metric, month, value)
);
