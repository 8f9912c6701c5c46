-- Read models are derived data: every table here can be dropped and rebuilt from the event log.
-- Integers are BIGINT so the same queries read them as i64 on SQLite and PostgreSQL.

CREATE TABLE projection_checkpoints (
    projection TEXT PRIMARY KEY NOT NULL,
    -- The global position of the last event this projection has applied.
    position BIGINT NOT NULL
);

CREATE TABLE complaint_list (
    complaint_id TEXT PRIMARY KEY NOT NULL,
    status TEXT NOT NULL,
    stage BIGINT NOT NULL,
    contractor_id TEXT NOT NULL,
    uprn TEXT NOT NULL,
    resident_reference TEXT NOT NULL,
    -- Microseconds since the Unix epoch, so ranges and keyset pages compare as integers.
    received_at_micros BIGINT NOT NULL,
    -- Stable standard codes, comma-separated.
    standards TEXT NOT NULL,
    -- The pending Code deadline (YYYY-MM-DD), NULL when nothing is due.
    next_deadline TEXT,
    version BIGINT NOT NULL,
    last_position BIGINT NOT NULL
);

CREATE INDEX complaint_list_by_received ON complaint_list (received_at_micros DESC, complaint_id DESC);
CREATE INDEX complaint_list_by_contractor ON complaint_list (contractor_id, received_at_micros DESC);
CREATE INDEX complaint_list_by_uprn ON complaint_list (uprn, received_at_micros DESC);
CREATE INDEX complaint_list_by_resident ON complaint_list (resident_reference, received_at_micros DESC);
CREATE INDEX complaint_list_by_deadline ON complaint_list (next_deadline) WHERE next_deadline IS NOT NULL;
