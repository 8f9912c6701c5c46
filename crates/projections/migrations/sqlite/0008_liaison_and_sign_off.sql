-- Resident liaison, standards sign-off and equality conditions (issue 17).
--
-- contractors.liaison_lead is the lead a complaint about the contractor received now is
-- attributed to (IN_HOUSE, CONTRACTOR, or '' for unknown); contractors.contracts is a JSON array
-- of each contract's reference, sorted standard codes and whether they are signed off.
-- complaint_handling.liaison_lead is the lead a complaint was attributed to when received, and
-- liaison_handling_counters holds the contractors' handling counters (0003) by that lead.
-- Escalations by lead join escalations to complaint_handling by complaint_id (its key).

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
DELETE FROM inspections;
DELETE FROM inspection_month;
DELETE FROM inspection_month_standard;
DELETE FROM finding_schedule;
DELETE FROM finding_escalations;
DELETE FROM projection_checkpoints;

ALTER TABLE contractors ADD COLUMN liaison_lead TEXT NOT NULL DEFAULT '';
ALTER TABLE contractors ADD COLUMN contracts TEXT NOT NULL DEFAULT '[]';
ALTER TABLE complaint_handling ADD COLUMN liaison_lead TEXT NOT NULL DEFAULT '';

-- Complaints per liaison lead, contractor and month received: the contractors behind each lead.
CREATE TABLE liaison_contractor_months (
    liaison_lead TEXT NOT NULL,
    contractor_id TEXT NOT NULL,
    month TEXT NOT NULL,
    complaints INTEGER NOT NULL,
    PRIMARY KEY (liaison_lead, contractor_id, month)
);

CREATE TABLE liaison_handling_counters (
    liaison_lead TEXT NOT NULL,
    metric TEXT NOT NULL,
    month TEXT NOT NULL,
    value INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (liaison_lead, metric, month, value)
);
