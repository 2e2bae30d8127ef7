"""Real processes racing to claim jobs, on SQLite and on PostgreSQL: one job, one winner."""

import json
import subprocess
import time
from collections.abc import Iterator

import pytest
from store_helpers import spawn_python

from modelloop.store.database import Database, open_database
from modelloop.store.jobs import JobQueue

# A claimer process. It prints "ready", then for each "claim T" or "drain T" line on stdin it
# waits until time T (so that every claimer starts at the same instant), claims one job (or
# claims until the queue is empty) and prints what it got as JSON.
CLAIMER = """
import json, sys, time
from modelloop.store.database import Database
from modelloop.store.jobs import JobQueue

url, name = sys.argv[1], sys.argv[2]
db = Database(url)
queue = JobQueue(db)
with db.engine.connect():
    pass  # connect now, not inside the race
print("ready", flush=True)
for line in sys.stdin:
    command, at = line.split()
    time.sleep(max(0.0, float(at) - time.time()))
    if command == "claim":
        job = queue.claim(name, lease_seconds=300)
        print(json.dumps(job.id if job else None), flush=True)
    else:
        got = []
        while (job := queue.claim(name, lease_seconds=300)) is not None:
            got.append(job.id)
        print(json.dumps(got), flush=True)
db.dispose()
"""

CLAIMERS = 3
ROUNDS = 12


@pytest.fixture
def claimers(db: Database, db_url: str) -> Iterator[list["subprocess.Popen[str]"]]:
    procs = [
        spawn_python(CLAIMER, db_url, f"worker-{i}", stdin=subprocess.PIPE) for i in range(CLAIMERS)
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            line = p.stdout.readline()
            assert line.strip() == "ready", p.communicate()[1]
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                assert p.stdin is not None
                p.stdin.close()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            for stream in (p.stdout, p.stderr):
                if stream is not None:
                    stream.close()


def _ask(procs: list["subprocess.Popen[str]"], command: str) -> list[object]:
    at = time.time() + 0.05
    for p in procs:
        assert p.stdin is not None
        p.stdin.write(f"{command} {at}\n")
        p.stdin.flush()
    answers = []
    for p in procs:
        assert p.stdout is not None
        line = p.stdout.readline()
        assert line, f"claimer died: {p.poll()}"
        answers.append(json.loads(line))
    return answers


def test_one_job_one_winner(db: Database, claimers: list["subprocess.Popen[str]"]) -> None:
    queue = JobQueue(db)
    winners: set[str] = set()
    for r in range(ROUNDS):
        job, new = queue.enqueue(f"race-{r}", "drift", "race")
        assert new
        answers = _ask(claimers, "claim")
        won = [(i, a) for i, a in enumerate(answers) if a is not None]
        assert len(won) == 1, f"round {r}: {answers}"
        index, job_id = won[0]
        assert job_id == job.id
        taken = queue.get(job.id)
        assert (taken.status, taken.worker, taken.attempts) == ("running", f"worker-{index}", 1)
        winners.add(f"worker-{index}")
    # Every round's job is running under exactly one worker; nothing is left to claim.
    assert all(j.status == "running" for j in queue.list())
    assert queue.claim("late", 60) is None
    assert winners  # at least one worker won; usually several do


def test_many_jobs_each_claimed_exactly_once(
    db: Database, claimers: list["subprocess.Popen[str]"]
) -> None:
    queue = JobQueue(db)
    ids = [queue.enqueue(f"drain-{i}", "drift", "race")[0].id for i in range(30)]
    answers = _ask(claimers, "drain")
    claimed = [job_id for got in answers for job_id in got]  # type: ignore[attr-defined]
    assert sorted(claimed) == sorted(ids)  # every job once: none lost, none twice
    for got, index in zip(answers, range(CLAIMERS), strict=True):
        for job_id in got:  # type: ignore[attr-defined]
            assert queue.get(job_id).worker == f"worker-{index}"


MIGRATOR = """
import sys, time
from modelloop.store.database import open_database
from modelloop.store.jobs import JobQueue

url, at = sys.argv[1], float(sys.argv[2])
time.sleep(max(0.0, at - time.time()))
db = open_database(url)
job, new = JobQueue(db).enqueue("m", "start", sys.argv[3])
print(job.id, new, flush=True)
db.dispose()
"""


def test_several_processes_starting_at_once_on_an_empty_database(empty_db_url: str) -> None:
    """`modelloop up` starts its components together on an empty database: every one of them
    migrates it without error, and they all see one schema (one queued job between them)."""
    n = 4
    at = time.time() + 1.5
    procs = [spawn_python(MIGRATOR, empty_db_url, str(at), f"p{i}") for i in range(n)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        job_id, new = out.split()
        results.append((int(job_id), new == "True"))
    assert len({job_id for job_id, _ in results}) == 1
    assert sum(new for _, new in results) == 1
    db = open_database(empty_db_url)
    try:
        assert len(JobQueue(db).list()) == 1
    finally:
        db.dispose()
