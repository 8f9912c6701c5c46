-- The notifier's tables: each complaint's running clock, the escalation schedule indexed by due
-- time, the escalations raised, and the delivery outbox. Instants the scheduler and the delivery
-- worker compare are milliseconds since 1970 (UTC) in INTEGER columns; clock starts are RFC 3339
-- text with every fraction digit, because escalation ids are derived from them exactly.

-- The schedule needs the whole log: forget the shared checkpoint and the rows it covers, so the
-- runner rebuilds every read model from position 0 (as 0002 and 0003 did).
DELETE FROM complaint_list;
DELETE FROM contractors;
DELETE FROM contractor_lookup;
DELETE FROM visits;
DELETE FROM contractor_month_visits;
DELETE FROM contractor_month_standard;
DELETE FROM complaint_findings;
DELETE FROM complaint_handling;
DELETE FROM handling_counters;
DELETE FROM projection_checkpoints;

-- The Code deadline each complaint is waiting on; deadline is NULL when no clock runs.
CREATE TABLE escalation_clocks (
    complaint_id TEXT PRIMARY KEY NOT NULL,
    contractor_id TEXT NOT NULL,
    deadline TEXT,
    deadline_date TEXT,
    clock_started_at TEXT
);

-- The steps of each running clock's ladder not raised yet. The scheduler asks for due_at <= now.
CREATE TABLE escalation_schedule (
    escalation_id TEXT PRIMARY KEY NOT NULL,
    complaint_id TEXT NOT NULL,
    contractor_id TEXT NOT NULL,
    deadline TEXT NOT NULL,
    level TEXT NOT NULL,
    deadline_date TEXT NOT NULL,
    clock_started_at TEXT NOT NULL,
    due_at INTEGER NOT NULL
);

CREATE INDEX escalation_schedule_by_due ON escalation_schedule (due_at, escalation_id);
CREATE INDEX escalation_schedule_by_complaint ON escalation_schedule (complaint_id);

-- Every escalation raised, in log order (position), with who acknowledged it.
CREATE TABLE escalations (
    escalation_id TEXT PRIMARY KEY NOT NULL,
    complaint_id TEXT NOT NULL,
    contractor_id TEXT NOT NULL,
    deadline TEXT NOT NULL,
    level TEXT NOT NULL,
    deadline_date TEXT NOT NULL,
    clock_started_at TEXT NOT NULL,
    due_at INTEGER NOT NULL,
    raised_at INTEGER NOT NULL,
    -- YYYY-MM in England, for the contractor performance figures.
    raised_month TEXT NOT NULL,
    -- 1 when the step fell due once the deadline had passed (the breach and later), 0 for a warning.
    after_deadline INTEGER NOT NULL,
    -- A JSON array of email addresses.
    recipients TEXT NOT NULL,
    acknowledged_by TEXT,
    acknowledged_at INTEGER,
    position INTEGER NOT NULL
);

CREATE INDEX escalations_by_position ON escalations (position);
CREATE INDEX escalations_by_contractor ON escalations (contractor_id, position);
CREATE INDEX escalations_by_contractor_month ON escalations (contractor_id, raised_month);

-- The delivery outbox: one row per escalation and webhook URL or email recipient, written in the
-- same transaction as the escalation's row. It is delivery state, not a read model: a rebuild
-- leaves it alone and re-inserting an existing delivery id does nothing, so nothing is sent
-- twice except by a retry carrying the same delivery id.
CREATE TABLE escalation_deliveries (
    delivery_id TEXT PRIMARY KEY NOT NULL,
    escalation_id TEXT NOT NULL,
    -- WEBHOOK or EMAIL.
    channel TEXT NOT NULL,
    -- The URL, or the email address.
    target TEXT NOT NULL,
    -- The escalation as JSON, what the webhook body and the email are made from.
    body TEXT NOT NULL,
    -- PENDING, DELIVERED or DEAD.
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    -- A worker that claims the row holds it until then, so replicas do not send it at once.
    lease_until INTEGER,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    delivered_at INTEGER
);

CREATE INDEX escalation_deliveries_due ON escalation_deliveries (state, next_attempt_at);
