-- The generations of the read models (`doorstep projections rebuild --online`): the live one,
-- which every server serves, and at most one being built beside it. Generation 0 is the read
-- models as they were before generations existed (SQLite: `<name>.read-models.db`; PostgreSQL:
-- the public schema), so nothing moves on upgrade. A generation being built reports its progress
-- here (position reached, head aimed at, events per second) so that every server can export it.
-- Times are microseconds since the Unix epoch, UTC.
CREATE TABLE read_model_generations (
    generation BIGINT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('building', 'live', 'retired')),
    started_at_micros BIGINT NOT NULL,
    switched_at_micros BIGINT,
    position BIGINT NOT NULL DEFAULT 0,
    target BIGINT NOT NULL DEFAULT 0,
    events_per_second DOUBLE PRECISION NOT NULL DEFAULT 0
);
INSERT INTO read_model_generations (generation, state, started_at_micros) VALUES (0, 'live', 0);
-- Which generation each running server serves, so that a rebuild can wait for every server to
-- have switched before it drops the old one.
ALTER TABLE running_servers ADD COLUMN read_model_generation BIGINT NOT NULL DEFAULT 0;
