"""The Python `eventsourcing` peer of doorstep-bench's intake phase (issue 18).

One thread, no network, one `save` per complaint on a SQLite file in WAL mode (the library's own
SQLite persistence, `synchronous` left at SQLite's default, FULL): each complaint is a new
aggregate whose first event carries what a `LogComplaint` carries (contractor, property, visit,
standards, description, the resident's contact details, deadlines). It is the floor Doorstep's
intake is held to: the issue asks for at least five times this figure, measured on the same
machine in the same hour.

    python3 -m venv /tmp/peer && /tmp/peer/bin/pip install -r requirements.txt
    /tmp/peer/bin/python eventsourcing_peer.py --seconds 10 --runs 2

Prints one line per run and a JSON line with every run's complaints per second.
"""

import argparse
import datetime
import json
import os
import tempfile
import time
import uuid

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

STANDARDS = ["GATES_SECURED", "PARKING_CONSIDERATE", "NO_SMOKING", "WELFARE_FACILITIES"]


class Complaint(Aggregate):
    @event("Received")
    def __init__(
        self,
        idempotency_key,
        contractor_id,
        uprn,
        visit_id,
        standards,
        description,
        resident,
        received_at,
        acknowledge_by,
        respond_by,
    ):
        self.idempotency_key = idempotency_key
        self.contractor_id = contractor_id
        self.uprn = uprn
        self.visit_id = visit_id
        self.standards = standards
        self.description = description
        self.resident = resident
        self.received_at = received_at
        self.acknowledge_by = acknowledge_by
        self.respond_by = respond_by


class Complaints(Application):
    def log(self, index):
        now = datetime.datetime.now(datetime.timezone.utc)
        complaint = Complaint(
            idempotency_key=f"bench-{index}",
            contractor_id=f"contractor-{index % 5}",
            uprn=str(100000000000 + index),
            visit_id=str(uuid.uuid4()),
            standards=[STANDARDS[index % len(STANDARDS)]],
            description="The gate was left open after the loft insulation visit.",
            resident={
                "name": "A Resident",
                "phone": "07700 900123",
                "email": "resident@example.org",
                "address": "1 Example Street, Exampletown, EX1 1AA",
            },
            received_at=now.isoformat(),
            acknowledge_by=(now + datetime.timedelta(days=7)).date().isoformat(),
            respond_by=(now + datetime.timedelta(days=14)).date().isoformat(),
        )
        self.save(complaint)
        return complaint.id


def run(seconds, directory):
    path = os.path.join(directory, f"peer-{uuid.uuid4()}.db")
    app = Complaints(env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": path})
    for index in range(200):  # warm-up: tables created, caches filled
        app.log(index)
    logged = 0
    started = time.perf_counter()
    cpu_started = time.process_time()
    while time.perf_counter() - started < seconds:
        app.log(1000 + logged)
        logged += 1
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    app.close()
    return logged / elapsed, cpu / logged * 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--dir", default=None, help="where the SQLite files go (default: a temp dir)")
    args = parser.parse_args()
    rates = []
    with tempfile.TemporaryDirectory(dir=args.dir) as directory:
        for number in range(1, args.runs + 1):
            rate, cpu_us = run(args.seconds, directory)
            rates.append(rate)
            print(f"run {number}: {rate:,.0f} complaints/s, {cpu_us:,.0f} µs CPU per complaint")
    print(json.dumps({"peer": "eventsourcing", "complaints_per_second": rates}))


if __name__ == "__main__":
    main()
