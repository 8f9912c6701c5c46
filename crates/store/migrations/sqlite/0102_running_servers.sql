-- The servers running on this database, each registered by itself while it runs, so that
-- maintenance that must not run beside a server (`doorstep projections rebuild`) can refuse and
-- say which server holds the database. A server renews its row (heartbeat) and removes it when it
-- stops cleanly; a row whose expiry has passed is a server that crashed, and is ignored. Times are
-- microseconds since the Unix epoch, UTC.
CREATE TABLE running_servers (
    server_id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid BIGINT NOT NULL,
    address TEXT NOT NULL,
    role TEXT NOT NULL,
    started_at_micros BIGINT NOT NULL,
    heartbeat_at_micros BIGINT NOT NULL,
    expires_at_micros BIGINT NOT NULL
);
