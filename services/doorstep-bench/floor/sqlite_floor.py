#!/usr/bin/env python3
"""A lower bound on SQLite's CPU per complaint with Doorstep's schema: no gRPC, no Rust.

How much of intake's CPU per complaint must go to the database, however the code around it is
written? This copies the schema and the real rows of a benchmark run's two files (the log,
`doorstep.db`, and the read models, `doorstep.read-models.db`) into fresh files with the same
pragmas, then writes those rows again from an in-memory staging copy, one `INSERT ... SELECT`
per table per batch, in batches the size Doorstep's writer and projection runner commit under 64
clients, and prints process CPU per complaint.

It is a lower bound because it leaves out work Doorstep's database really does: the writer's
lookups of event ids and stream versions, its JSON array of the batch (each payload is parsed
twice there, once here, by the table's `json_valid` checks), and the projection runner's reads
(a complaint's handling row, its clock). What it keeps: every row a complaint adds to the log
and to the read models, with their keys, indexes, checks and triggers, the counters' upserts,
the checkpoint row, one commit per batch with the same `synchronous`, and WAL checkpoints (the
log's in the background every 20 commits, as Doorstep's checkpointer does about every 100 ms;
the read models' automatic, as there).

    pip install -r requirements.txt   # pysqlite3-binary: SQLite 3.51, as Doorstep bundles
    doorstep-bench --serve 127.0.0.1:7700 --data-dir DIR --keep-data   # then, from another shell:
    doorstep-bench --target 127.0.0.1:7700 --metrics ADDR --seconds 10 --no-echo
    # stop the server, then:
    sqlite_floor.py DIR/serve-XXXXXX /tmp/floor-out 50000
    BARE=1 sqlite_floor.py DIR/serve-XXXXXX /tmp/floor-out 50000

`BARE=1` writes the same rows the same way into tables with no key, index, check or upsert, in
memory: what moving the rows costs by itself. The floor includes that cost too, so the floor
less the bare run is smaller still than what SQLite's indexes and commits cost.
"""
import os
import sys
import time

try:
    import pysqlite3 as sqlite3
except ImportError:
    import sqlite3

    if sqlite3.sqlite_version_info < (3, 45, 0):
        print(
            f"warning: SQLite {sqlite3.sqlite_version} predates 3.45's faster JSON; Doorstep "
            "bundles 3.51 (pip install -r requirements.txt)",
            file=sys.stderr,
        )

if len(sys.argv) not in (3, 4):
    sys.exit(f"usage: {sys.argv[0]} SERVE_DATA_DIR EMPTY_OUTPUT_DIR [COMPLAINTS]")
SOURCE, TARGET = sys.argv[1], sys.argv[2]
LIMIT = int(sys.argv[3]) if len(sys.argv) == 4 else 50000
if os.path.exists(TARGET) and os.listdir(TARGET):
    sys.exit(f"{TARGET} is not empty: give a new or empty directory")
os.makedirs(TARGET, exist_ok=True)
# Events per writer commit and per projection batch, as the bench's metrics show them.
WRITER_BATCH = int(os.environ.get("WRITER_BATCH", 32))
PROJECTION_BATCH = int(os.environ.get("PROJECTION_BATCH", 80))
CHECKPOINT_EVERY = 20
BARE = os.environ.get("BARE") == "1"
# The read models a complaint adds a row to (the others it touches are counters, upserted below).
READ_MODELS = ["complaint_list", "complaint_handling", "escalation_clocks", "escalation_schedule"]


def open_copy(name, synchronous, staged):
    """A fresh file (in memory when BARE) with the source file's tables, and `staged` tables'
    first LIMIT rows in an attached in-memory `staging` database, numbered by rowid from 1."""
    target = sqlite3.connect(":memory:" if BARE else f"{TARGET}/{name}", isolation_level=None)
    target.execute("PRAGMA journal_mode = WAL")
    target.execute(f"PRAGMA synchronous = {synchronous}")
    target.execute("PRAGMA cache_size = -65536")
    target.execute(f"ATTACH 'file:{SOURCE}/{name}?mode=ro' AS source")
    target.execute("ATTACH ':memory:' AS staging")
    tables = target.execute(
        "SELECT name, sql FROM source.sqlite_master "
        "WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    ).fetchall()
    for table, sql in tables:
        if BARE:
            columns = [row[1] for row in target.execute(f"PRAGMA source.table_info({table})")]
            target.execute(f"CREATE TABLE main.{table} ({', '.join(columns)})")
        else:
            target.execute(sql)
    if not BARE:
        others = target.execute(
            "SELECT sql FROM source.sqlite_master WHERE type IN ('index', 'trigger') "
            "AND sql IS NOT NULL"
        ).fetchall()
        for (sql,) in others:
            target.execute(sql)
    for table, order in staged.items():
        target.execute(
            f"CREATE TABLE staging.{table} AS SELECT * FROM source.{table} {order} LIMIT ?",
            (LIMIT,),
        )
    target.execute("DETACH source")
    return target


def staged_count(connection, table):
    return connection.execute(f"SELECT count(*) FROM staging.{table}").fetchone()[0]


def columns(connection, table):
    return [row[1] for row in connection.execute(f"PRAGMA staging.table_info({table})")]


def upsert(sql, conflict):
    return sql if BARE else f"{sql} {conflict}"


log = open_copy(
    "doorstep.db",
    "FULL",
    {
        "events": "WHERE event_type = 'ComplaintReceived' ORDER BY position",
        "resident_keys": "",
    },
)
if not BARE:
    log.execute("PRAGMA secure_delete = ON")
    log.execute("PRAGMA wal_autocheckpoint = 0")
models = open_copy("doorstep.read-models.db", "NORMAL", {table: "" for table in READ_MODELS})
count = min(
    staged_count(log, "events"),
    staged_count(log, "resident_keys"),
    *(staged_count(models, table) for table in READ_MODELS),
)
if count == 0:
    sys.exit(f"{SOURCE} holds no complaints: run the bench against it first (with --keep-data)")

event_columns = columns(log, "events")[1:]  # `position` is given anew, gap-free from 1
insert_events = (
    f"INSERT INTO main.events SELECT rowid, {', '.join(event_columns)} FROM staging.events "
    "WHERE rowid BETWEEN ? AND ?"
)
insert_keys = "INSERT INTO main.resident_keys SELECT * FROM staging.resident_keys " \
    "WHERE rowid BETWEEN ? AND ?"

# The log: each commit stores a batch's residents' keys, then its events (one per complaint).
start = time.process_time()
for number, first in enumerate(range(1, count + 1, WRITER_BATCH)):
    last = min(count, first + WRITER_BATCH - 1)
    log.execute("BEGIN IMMEDIATE")
    log.execute(insert_keys, (first, last))
    log.execute(insert_events, (first, last))
    log.execute("COMMIT")
    if not BARE and number % CHECKPOINT_EVERY == CHECKPOINT_EVERY - 1:
        log.execute("PRAGMA wal_checkpoint(PASSIVE)")
log_cpu = time.process_time() - start

# The read models: each batch writes its complaints' rows, adds them to two counters and moves
# the checkpoint, in one transaction.
counter = upsert(
    "INSERT INTO main.handling_counters VALUES (?, ?, '2026-12', 0, ?)",
    "ON CONFLICT DO UPDATE SET count = count + excluded.count",
)
checkpoint = upsert(
    "INSERT INTO main.projection_checkpoints VALUES ('all', ?)",
    "ON CONFLICT DO UPDATE SET position = excluded.position",
)
per_table = dict.fromkeys(READ_MODELS, 0.0)
start = time.process_time()
for first in range(1, count + 1, PROJECTION_BATCH):
    last = min(count, first + PROJECTION_BATCH - 1)
    models.execute("BEGIN IMMEDIATE")
    for table in READ_MODELS:
        table_start = time.process_time()
        models.execute(
            f"INSERT INTO main.{table} SELECT * FROM staging.{table} WHERE rowid BETWEEN ? AND ?",
            (first, last),
        )
        per_table[table] += time.process_time() - table_start
    models.execute(counter, ("", "stage_one_received", last - first + 1))
    models.execute(counter, ("acme-retrofit", "complaints", last - first + 1))
    models.execute(checkpoint, (last,))
    models.execute("COMMIT")
models_cpu = time.process_time() - start

micros = 1e6 / count
print(
    f"{'bare' if BARE else 'floor'} (SQLite {sqlite3.sqlite_version}): {count} complaints, "
    f"CPU per complaint: log {log_cpu * micros:.1f} µs, read models {models_cpu * micros:.1f} µs, "
    f"total {(log_cpu + models_cpu) * micros:.1f} µs"
)
print(
    "  of the read models, each table's insert before the commit: "
    + ", ".join(f"{table} {cpu * micros:.1f} µs" for table, cpu in per_table.items())
)
