-- Visit rows are found only by their visit id, and a large log is nine parts visits: as an
-- ordinary table with a TEXT primary key each row lived twice, in the table and in the key's
-- index, and every write and lookup went through both. WITHOUT ROWID keeps each row once, in
-- its key's order. The rows are copied, so nothing needs rebuilding.
CREATE TABLE visits_by_id (
    visit_id TEXT PRIMARY KEY NOT NULL,
    contractor_id TEXT,
    month TEXT,
    upheld_breaches INTEGER NOT NULL
) WITHOUT ROWID;

INSERT INTO visits_by_id (visit_id, contractor_id, month, upheld_breaches)
SELECT visit_id, contractor_id, month, upheld_breaches FROM visits;

DROP TABLE visits;

ALTER TABLE visits_by_id RENAME TO visits;
