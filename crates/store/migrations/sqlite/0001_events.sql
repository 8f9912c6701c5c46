-- The append-only event log.
--
-- `position` is the global order. The store's single writer assigns it explicitly, gap-free from 1,
-- so it is an alias of the rowid rather than AUTOINCREMENT (which may skip values after a rollback).
-- `version` counts events within one stream from 1; the unique (stream_id, version) pair is the
-- last line of defence for optimistic concurrency, and its index serves stream reads.
-- `event_id` is a lowercase hyphenated UUID, unique across the whole log, so that retries can be
-- recognised. `payload` and `metadata` hold JSON text. `recorded_at` is RFC 3339 UTC with exactly
-- six fractional digits, so it round-trips exactly and sorts as text.
-- STRICT makes SQLite refuse values of the wrong type instead of silently storing them.
CREATE TABLE events (
    position       INTEGER PRIMARY KEY CHECK (position >= 1),
    stream_id      TEXT    NOT NULL,
    version        INTEGER NOT NULL CHECK (version >= 1),
    event_id       TEXT    NOT NULL UNIQUE,
    event_type     TEXT    NOT NULL,
    schema_version INTEGER NOT NULL CHECK (schema_version >= 0),
    payload        TEXT    NOT NULL CHECK (json_valid(payload)),
    metadata       TEXT    NOT NULL CHECK (json_valid(metadata)),
    recorded_at    TEXT    NOT NULL,
    UNIQUE (stream_id, version)
) STRICT;

-- Events are facts: once recorded they are never changed or removed, whoever holds a connection.
CREATE TRIGGER events_refuse_update
BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only');
END;

CREATE TRIGGER events_refuse_delete
BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only');
END;
