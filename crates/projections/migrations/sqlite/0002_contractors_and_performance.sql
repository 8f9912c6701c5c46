-- The contractor registry and the contractor-performance and complaint-handling read models.
-- Integers are INTEGER (BIGINT in PostgreSQL) so both backends read them as i64; dates are
-- YYYY-MM-DD text and months YYYY-MM text, which compare in date order.

-- The new read models need the whole log. Every read model shares one checkpoint, so forget it
-- (and the rows it covers): the runner then rebuilds everything from position 0.
DELETE FROM complaint_list;
DELETE FROM projection_checkpoints;

CREATE TABLE contractors (
    contractor_id TEXT PRIMARY KEY NOT NULL,
    legal_name TEXT NOT NULL,
    -- A JSON array of text.
    trading_names TEXT NOT NULL,
    -- ACTIVE or SUSPENDED.
    status TEXT NOT NULL,
    public_contact_name TEXT NOT NULL,
    public_phone TEXT NOT NULL,
    logo_url TEXT NOT NULL,
    -- The audit with the latest audit date (of equal dates, the one recorded last); all three
    -- NULL when never audited.
    latest_audit_date TEXT,
    latest_audit_outcome TEXT,
    latest_audit_requirements_not_met TEXT,
    version INTEGER NOT NULL,
    last_position INTEGER NOT NULL
);

CREATE INDEX contractors_by_status ON contractors (status, contractor_id);

-- What VerifyContractor looks up: normalised legal and trading names (lower case, punctuation
-- removed, whitespace collapsed) and `phone:<digits>`. Rewritten on every contractor event.
CREATE TABLE contractor_lookup (
    key TEXT NOT NULL,
    contractor_id TEXT NOT NULL,
    PRIMARY KEY (key, contractor_id)
);

CREATE INDEX contractor_lookup_by_contractor ON contractor_lookup (contractor_id);

-- Each visit named by a recorded visit or by a complaint. contractor_id and month are NULL until
-- the visit itself is recorded; upheld_breaches counts upheld and partly upheld findings of the
-- complaints that name the visit.
CREATE TABLE visits (
    visit_id TEXT PRIMARY KEY NOT NULL,
    contractor_id TEXT,
    month TEXT,
    upheld_breaches INTEGER NOT NULL
);

-- Recorded visits per contractor and visit month, and how many of them have at least one upheld
-- (or partly upheld) breach.
CREATE TABLE contractor_month_visits (
    contractor_id TEXT NOT NULL,
    month TEXT NOT NULL,
    visits INTEGER NOT NULL,
    visits_with_upheld_breach INTEGER NOT NULL,
    PRIMARY KEY (contractor_id, month)
);

CREATE INDEX contractor_month_visits_by_month ON contractor_month_visits (month, contractor_id);

-- Allegations and current findings per contractor, month received (in England) and standard.
CREATE TABLE contractor_month_standard (
    contractor_id TEXT NOT NULL,
    month TEXT NOT NULL,
    standard TEXT NOT NULL,
    reported INTEGER NOT NULL,
    upheld INTEGER NOT NULL,
    partly_upheld INTEGER NOT NULL,
    not_upheld INTEGER NOT NULL,
    PRIMARY KEY (contractor_id, month, standard)
);

CREATE INDEX contractor_month_standard_by_month ON contractor_month_standard (month, contractor_id);

-- Each complaint's current finding per standard, so a changed finding moves exactly one count.
CREATE TABLE complaint_findings (
    complaint_id TEXT NOT NULL,
    standard TEXT NOT NULL,
    outcome TEXT NOT NULL,
    PRIMARY KEY (complaint_id, standard)
);

-- Each complaint's clock per stage: the first acknowledgement and first response, against the
-- deadlines in force when they were given. Stage 2 columns are NULL until escalation.
CREATE TABLE complaint_handling (
    complaint_id TEXT PRIMARY KEY NOT NULL,
    contractor_id TEXT NOT NULL,
    -- The month received, in England.
    month TEXT NOT NULL,
    visit_id TEXT,
    received_date TEXT NOT NULL,
    stage_one_started TEXT NOT NULL,
    stage_one_acknowledgement_due TEXT NOT NULL,
    stage_one_acknowledged TEXT,
    -- As set at acknowledgement, before extensions.
    stage_one_response_due_original TEXT,
    -- Including extensions.
    stage_one_response_due TEXT,
    stage_one_responded TEXT,
    stage_two_started TEXT,
    stage_two_acknowledgement_due TEXT,
    stage_two_acknowledged TEXT,
    stage_two_response_due_original TEXT,
    stage_two_response_due TEXT,
    stage_two_responded TEXT,
    -- 1 once stage 2 was requested.
    escalated INTEGER NOT NULL,
    reopen_count INTEGER NOT NULL,
    version INTEGER NOT NULL
);

CREATE INDEX complaint_handling_by_contractor ON complaint_handling (contractor_id, month);
CREATE INDEX complaint_handling_by_received ON complaint_handling (received_date);
CREATE INDEX complaint_handling_by_stage_one_response ON complaint_handling (stage_one_responded)
    WHERE stage_one_responded IS NOT NULL;
CREATE INDEX complaint_handling_by_stage_two_start ON complaint_handling (stage_two_started)
    WHERE stage_two_started IS NOT NULL;
CREATE INDEX complaint_handling_by_stage_two_response ON complaint_handling (stage_two_responded)
    WHERE stage_two_responded IS NOT NULL;
