"""The retrain job queue. A claim is a compare-and-set, so two claimers never take one job."""

import time
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError

from modelloop.store.database import Database
from modelloop.store.errors import JobNotFound
from modelloop.store.schema import jobs

JobStatus = Literal["queued", "running", "succeeded", "failed"]
ACTIVE_STATUSES = ("queued", "running")


@dataclass(frozen=True)
class Job:
    id: int
    model: str
    kind: str
    status: str
    trigger: str
    reason: str
    created_at: float
    claimed_at: float | None
    lease_until: float | None
    worker: str | None
    attempts: int
    finished_at: float | None
    result: dict[str, Any] | None
    error: str | None

    @classmethod
    def from_row(cls, row: RowMapping) -> "Job":
        return cls(**{k: row[k] for k in cls.__dataclass_fields__})

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class JobQueue:
    def __init__(self, db: Database, max_attempts: int = 3) -> None:
        self.db = db
        self.max_attempts = max_attempts

    def enqueue(
        self, model: str, trigger: str, reason: str, kind: str = "retrain"
    ) -> tuple[Job, bool]:
        """Queue a job unless one for this model is already queued or running.

        Returns the job and whether it is new (False: the existing one is returned).
        """
        try:
            with self.db.engine.begin() as conn:
                job_id = conn.execute(
                    insert(jobs)
                    .values(
                        model=model,
                        kind=kind,
                        status="queued",
                        trigger=trigger,
                        reason=reason,
                        created_at=time.time(),
                        attempts=0,
                    )
                    .returning(jobs.c.id)
                ).scalar_one()
            return self.get(job_id), True
        except IntegrityError:
            pass
        with self.db.engine.connect() as conn:
            existing = (
                conn.execute(
                    select(jobs)
                    .where(jobs.c.model == model, jobs.c.kind == kind)
                    .where(jobs.c.status.in_(ACTIVE_STATUSES))
                    .order_by(jobs.c.id)
                    .limit(1)
                )
                .mappings()
                .first()
            )
        if existing is None:  # finished between our insert and this read: try once more
            return self.enqueue(model, trigger, reason, kind)
        return Job.from_row(existing), False

    def get(self, job_id: int) -> Job:
        with self.db.engine.connect() as conn:
            row = conn.execute(select(jobs).where(jobs.c.id == job_id)).mappings().first()
        if row is None:
            raise JobNotFound(job_id)
        return Job.from_row(row)

    def list(self, model: str | None = None, limit: int = 100) -> list[Job]:
        q = select(jobs).order_by(jobs.c.id.desc()).limit(limit)
        if model is not None:
            q = q.where(jobs.c.model == model)
        with self.db.engine.connect() as conn:
            return [Job.from_row(r) for r in conn.execute(q).mappings()]

    def _claimable(self, now: float) -> Any:
        return or_(
            jobs.c.status == "queued",
            and_(jobs.c.status == "running", jobs.c.lease_until < now),
        )

    def claim(self, worker: str, lease_seconds: float, kind: str = "retrain") -> Job | None:
        """Take the oldest queued job (or one whose lease ran out), or None if there is none."""
        for _ in range(20):
            now = time.time()
            with self.db.engine.begin() as conn:
                row = conn.execute(
                    select(jobs.c.id, jobs.c.attempts, jobs.c.status)
                    .where(jobs.c.kind == kind, self._claimable(now))
                    .order_by(jobs.c.id)
                    .limit(1)
                ).first()
                if row is None:
                    return None
                job_id, attempts, status = row
                if attempts >= self.max_attempts:
                    conn.execute(
                        update(jobs)
                        .where(jobs.c.id == job_id, jobs.c.status == status)
                        .values(
                            status="failed",
                            finished_at=now,
                            error=f"gave up after {attempts} attempts (lease expired each time)",
                        )
                    )
                    continue
                won = conn.execute(
                    update(jobs)
                    .where(
                        jobs.c.id == job_id,
                        jobs.c.attempts == attempts,
                        self._claimable(now),
                    )
                    .values(
                        status="running",
                        worker=worker,
                        claimed_at=now,
                        lease_until=now + lease_seconds,
                        attempts=attempts + 1,
                    )
                ).rowcount
            if won == 1:
                return self.get(job_id)
        return None

    def renew(self, job_id: int, worker: str, lease_seconds: float) -> bool:
        """Extend the lease; False if the job is no longer ours."""
        with self.db.engine.begin() as conn:
            n = conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.worker == worker, jobs.c.status == "running")
                .values(lease_until=time.time() + lease_seconds)
            ).rowcount
        return n == 1

    def finish(
        self,
        job_id: int,
        worker: str,
        result: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> bool:
        status = "failed" if error is not None else "succeeded"
        with self.db.engine.begin() as conn:
            n = conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.worker == worker, jobs.c.status == "running")
                .values(status=status, finished_at=time.time(), result=result, error=error)
            ).rowcount
        return n == 1
