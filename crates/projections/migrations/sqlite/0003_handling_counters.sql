-- Counters behind every complaint-handling figure, so that a report reads a few rows per month
-- however many complaints there are (CH01/CH02, answered within the Code, median working days).
--
-- contractor_id is '' for the landlord-wide counts behind CH01/CH02, counted in the month of the
-- date each counts (receipt, escalation, response); otherwise a contractor's counts, by the
-- month its complaint was received. value is 0 except for the working-day histograms
-- (days_to_acknowledge, days_to_respond), where it is the number of working days.

-- The counters need the whole log. Every read model shares one checkpoint, so forget it (and the
-- rows it covers): the runner then rebuilds everything from position 0.
DELETE FROM complaint_list;
DELETE FROM contractors;
DELETE FROM contractor_lookup;
DELETE FROM visits;
DELETE FROM contractor_month_visits;
DELETE FROM contractor_month_standard;
DELETE FROM complaint_findings;
DELETE FROM complaint_handling;
DELETE FROM projection_checkpoints;

CREATE TABLE handling_counters (
    contractor_id TEXT NOT NULL,
    metric TEXT NOT NULL,
    month TEXT NOT NULL,
    value INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (contractor_id, metric, month, value)
);
