-- The append-only event log.
--
-- `position` is the global order that readers checkpoint on. The writer sets it to
-- `xid * 2^20 + i`: the 64-bit id of the transaction that wrote the event (`pg_current_xact_id()`)
-- times 2^20, plus the event's index within that transaction. Readers only return positions below
-- `xmin * 2^20`, where `xmin` is the oldest transaction still running when their snapshot was
-- taken: every transaction with a smaller id has finished, so no event can later appear below a
-- position a reader has already seen. Positions have gaps (between transactions) but never reorder.
-- A sequence would not do: its values are handed out before commit, so a reader could checkpoint
-- past a value whose transaction commits later and never see that event.
--
-- `version` counts events within one stream from 1. The unique (stream_id, version) pair is what
-- makes optimistic concurrency safe across processes: when two writers race for the same version,
-- the second insert fails on it. Its index also serves stream reads.
-- `event_id` is unique across the whole log, so that retries can be recognised.
-- `recorded_at` keeps microseconds, as the SQLite backend does, so values round-trip exactly.
CREATE TABLE events (
    position       BIGINT      NOT NULL CHECK (position >= 1),
    stream_id      TEXT        NOT NULL CHECK (stream_id <> ''),
    version        BIGINT      NOT NULL CHECK (version >= 1),
    event_id       UUID        NOT NULL,
    event_type     TEXT        NOT NULL,
    schema_version INTEGER     NOT NULL CHECK (schema_version >= 0),
    payload        JSONB       NOT NULL,
    metadata       JSONB       NOT NULL,
    recorded_at    TIMESTAMPTZ NOT NULL,
    CONSTRAINT events_pkey PRIMARY KEY (position),
    CONSTRAINT events_event_id_key UNIQUE (event_id),
    CONSTRAINT events_stream_id_version_key UNIQUE (stream_id, version)
);

-- Events are facts: once recorded they are never changed or removed, whoever holds a connection.
CREATE FUNCTION events_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only' USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE TRIGGER events_refuse_update
BEFORE UPDATE ON events
FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_change();

CREATE TRIGGER events_refuse_delete
BEFORE DELETE ON events
FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_change();

CREATE TRIGGER events_refuse_truncate
BEFORE TRUNCATE ON events
FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_change();
