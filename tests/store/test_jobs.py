"""The retrain job queue on SQLite and PostgreSQL."""

import time

import pytest
from sqlalchemy import update

from modelloop.store.database import Database
from modelloop.store.errors import JobNotFound
from modelloop.store.jobs import JobQueue
from modelloop.store.schema import jobs


def test_enqueue_returns_the_existing_job_for_the_same_model(db: Database) -> None:
    q = JobQueue(db)
    job, new = q.enqueue("m", "drift", "psi over threshold")
    assert new is True
    assert (job.model, job.kind, job.status, job.trigger) == ("m", "retrain", "queued", "drift")
    assert job.reason == "psi over threshold"
    assert job.attempts == 0
    assert job.worker is None
    assert job.created_at <= time.time()

    again, new = q.enqueue("m", "admin", "someone asked")
    assert new is False
    assert again.id == job.id
    assert again.reason == "psi over threshold"  # the existing job, untouched

    other, new = q.enqueue("n", "admin", "another model")
    assert new is True
    assert other.id != job.id
    assert [j.id for j in q.list()] == [other.id, job.id]
    assert [j.id for j in q.list(model="m")] == [job.id]

    # While the job runs, a new request still joins it.
    claimed = q.claim("w1", lease_seconds=60)
    assert claimed is not None
    assert claimed.id == job.id
    running, new = q.enqueue("m", "drift", "again")
    assert (running.id, running.status, new) == (job.id, "running", False)

    # Once it is finished a new job can be queued.
    assert q.finish(job.id, "w1", result={"version": 2})
    fresh, new = q.enqueue("m", "drift", "later")
    assert new is True
    assert fresh.id not in (job.id, other.id)


def test_claim_renew_finish(db: Database) -> None:
    q = JobQueue(db)
    assert q.claim("w1", lease_seconds=30) is None
    job, _ = q.enqueue("m", "manual", "r")
    before = time.time()
    claimed = q.claim("w1", lease_seconds=30)
    assert claimed is not None
    assert claimed.id == job.id
    assert claimed.status == "running"
    assert claimed.worker == "w1"
    assert claimed.attempts == 1
    assert claimed.claimed_at is not None
    assert claimed.lease_until is not None
    assert before <= claimed.claimed_at <= time.time()
    assert claimed.lease_until == pytest.approx(claimed.claimed_at + 30, abs=0.01)

    assert q.claim("w2", lease_seconds=30) is None  # taken and its lease is live

    assert q.renew(job.id, "w1", lease_seconds=120)
    renewed = q.get(job.id)
    assert renewed.lease_until is not None
    assert renewed.lease_until > claimed.lease_until + 60
    assert not q.renew(job.id, "w2", lease_seconds=120)  # not w2's job

    assert not q.finish(job.id, "w2", result={"no": 1})
    assert q.finish(job.id, "w1", result={"version": 3, "promoted": True})
    done = q.get(job.id)
    assert done.status == "succeeded"
    assert done.result == {"version": 3, "promoted": True}
    assert done.error is None
    assert done.finished_at is not None
    assert not q.renew(job.id, "w1", lease_seconds=10)  # finished jobs are not renewed
    assert not q.finish(job.id, "w1")  # nor finished twice
    assert q.claim("w1", lease_seconds=30) is None


def test_finish_with_an_error_fails_the_job(db: Database) -> None:
    q = JobQueue(db)
    job, _ = q.enqueue("m", "manual", "r")
    assert q.claim("w1", 30) is not None
    assert q.finish(job.id, "w1", error="parity failed")
    failed = q.get(job.id)
    assert (failed.status, failed.error) == ("failed", "parity failed")


def test_jobs_are_claimed_oldest_first_and_by_kind(db: Database) -> None:
    q = JobQueue(db)
    a, _ = q.enqueue("a", "t", "r")
    b, _ = q.enqueue("b", "t", "r")
    c, _ = q.enqueue("c", "t", "r", kind="backfill")
    claims = [q.claim(f"w{i}", 30) for i in range(3)]
    assert [j.id if j else None for j in claims] == [a.id, b.id, None]
    other = q.claim("w9", 30, kind="backfill")
    assert other is not None
    assert other.id == c.id


def _expire(db: Database, job_id: int) -> None:
    """Move a lease into the past (rather than sleep until it runs out)."""
    with db.engine.begin() as conn:
        conn.execute(update(jobs).where(jobs.c.id == job_id).values(lease_until=time.time() - 1))


def test_an_expired_lease_is_claimed_again(db: Database) -> None:
    q = JobQueue(db)
    job, _ = q.enqueue("m", "t", "r")
    first = q.claim("w1", lease_seconds=60)
    assert first is not None
    assert q.claim("w2", lease_seconds=60) is None
    _expire(db, job.id)
    second = q.claim("w2", lease_seconds=60)
    assert second is not None
    assert (second.id, second.worker, second.attempts) == (job.id, "w2", 2)
    # The first worker lost it: it can neither renew nor finish it.
    assert not q.renew(job.id, "w1", 60)
    assert not q.finish(job.id, "w1", result={})
    assert q.finish(job.id, "w2", result={"ok": True})
    assert q.get(job.id).status == "succeeded"


def test_a_lease_runs_out_by_the_clock(db: Database) -> None:
    q = JobQueue(db)
    job, _ = q.enqueue("m", "t", "r")
    first = q.claim("w1", lease_seconds=0.3)
    assert first is not None
    assert first.lease_until is not None
    time.sleep(max(0.0, first.lease_until - time.time()) + 0.05)
    second = q.claim("w2", lease_seconds=60)
    assert second is not None
    assert (second.id, second.worker) == (job.id, "w2")


def test_a_job_whose_lease_keeps_expiring_fails_after_max_attempts(db: Database) -> None:
    q = JobQueue(db, max_attempts=2)
    job, _ = q.enqueue("m", "t", "r")
    # Expire leases by moving them into the past rather than sleeping.
    for attempt in (1, 2):
        claimed = q.claim(f"w{attempt}", lease_seconds=60)
        assert claimed is not None
        assert claimed.attempts == attempt
        _expire(db, job.id)
    assert q.claim("w3", lease_seconds=60) is None
    failed = q.get(job.id)
    assert failed.status == "failed"
    assert failed.error is not None
    assert "2 attempts" in failed.error
    assert failed.finished_at is not None
    # A failed job frees the model for a new one, and the queue moves on to other jobs.
    nxt, new = q.enqueue("m", "t", "again")
    assert new is True
    claimed = q.claim("w4", 60)
    assert claimed is not None
    assert claimed.id == nxt.id


def test_a_job_past_max_attempts_does_not_block_the_next(db: Database) -> None:
    q = JobQueue(db, max_attempts=1)
    stuck, _ = q.enqueue("a", "t", "r")
    waiting, _ = q.enqueue("b", "t", "r")
    assert q.claim("w1", 60) is not None
    _expire(db, stuck.id)
    got = q.claim("w2", 60)
    assert got is not None
    assert got.id == waiting.id
    assert q.get(stuck.id).status == "failed"


def test_unknown_job(db: Database) -> None:
    with pytest.raises(JobNotFound):
        JobQueue(db).get(123456)


def test_job_as_dict_round_trips(db: Database) -> None:
    q = JobQueue(db)
    job, _ = q.enqueue("m", "t", "r")
    d = job.as_dict()
    assert d["id"] == job.id
    assert d["status"] == "queued"
    assert set(d) >= {"model", "kind", "trigger", "reason", "attempts", "result", "error"}
