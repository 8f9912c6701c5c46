-- On-site inspections: each inspection as it stands after its latest correction, the counters
-- behind "what we saw" (per contractor, month inspected and standard), and the notifier's
-- schedule and record of escalated findings. Instants are milliseconds since 1970 (UTC) in
-- INTEGER columns; months are YYYY-MM in England. No older event feeds these tables, so the
-- other read models keep their checkpoint.

CREATE TABLE inspections (
    inspection_id TEXT PRIMARY KEY NOT NULL,
    contractor_id TEXT NOT NULL,
    contract_reference TEXT NOT NULL,
    uprn TEXT NOT NULL,
    inspected_at INTEGER NOT NULL,
    inspected_month TEXT NOT NULL,
    -- A JSON object of standard code to MET, NOT_MET or NOT_OBSERVED: what the counters hold
    -- for this inspection, taken back out when a correction replaces it.
    observations TEXT NOT NULL,
    met INTEGER NOT NULL,
    not_met INTEGER NOT NULL,
    not_observed INTEGER NOT NULL,
    open_findings INTEGER NOT NULL,
    -- The log position of the inspection's last change.
    position INTEGER NOT NULL
);

CREATE INDEX inspections_by_position ON inspections (position);
CREATE INDEX inspections_by_contractor ON inspections (contractor_id, position);

-- Observations that were met or not met, and those not met, per contractor, month and standard.
CREATE TABLE inspection_month_standard (
    contractor_id TEXT NOT NULL,
    month TEXT NOT NULL,
    standard TEXT NOT NULL,
    observations INTEGER NOT NULL,
    not_met INTEGER NOT NULL,
    PRIMARY KEY (contractor_id, month, standard)
);

-- Inspections per contractor and month.
CREATE TABLE inspection_month (
    contractor_id TEXT NOT NULL,
    month TEXT NOT NULL,
    inspections INTEGER NOT NULL,
    PRIMARY KEY (contractor_id, month)
);

-- The next ladder step of each open finding not raised yet. The scheduler asks for due_at <= now.
CREATE TABLE finding_schedule (
    escalation_id TEXT PRIMARY KEY NOT NULL,
    finding_id TEXT NOT NULL,
    inspection_id TEXT NOT NULL,
    contractor_id TEXT NOT NULL,
    standard TEXT NOT NULL,
    level TEXT NOT NULL,
    due_date TEXT NOT NULL,
    due_at INTEGER NOT NULL,
    set_aside_reason TEXT,
    set_aside_at INTEGER
);

CREATE INDEX finding_schedule_by_due ON finding_schedule (due_at, escalation_id);
CREATE INDEX finding_schedule_by_finding ON finding_schedule (finding_id);

-- Every finding escalation raised, in log order.
CREATE TABLE finding_escalations (
    escalation_id TEXT PRIMARY KEY NOT NULL,
    finding_id TEXT NOT NULL,
    inspection_id TEXT NOT NULL,
    contractor_id TEXT NOT NULL,
    standard TEXT NOT NULL,
    level TEXT NOT NULL,
    due_date TEXT NOT NULL,
    raised_at INTEGER NOT NULL,
    -- A JSON array of email addresses.
    recipients TEXT NOT NULL,
    position INTEGER NOT NULL
);

CREATE INDEX finding_escalations_by_finding ON finding_escalations (finding_id);
