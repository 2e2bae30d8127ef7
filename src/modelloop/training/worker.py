"""`modelloop trainer`: claims retrain jobs, runs them, renews the lease while it works.

A trainer killed mid-job leaves no version behind (the registry publishes atomically); its job
is claimed again once the lease runs out.
"""

import logging
import os
import platform
import signal
import threading
import time
from types import FrameType

from pydantic import Field
from threadpoolctl import threadpool_limits

from modelloop.heap import trim_heap
from modelloop.store.database import Database, open_database
from modelloop.store.errors import StoreError
from modelloop.store.events import Events
from modelloop.store.jobs import Job, JobQueue
from modelloop.store.log import PredictionLog
from modelloop.store.metadata import Trigger
from modelloop.store.registry import Registry, open_registry
from modelloop.store.settings import StoreSettings
from modelloop.training.errors import TrainingError
from modelloop.training.retrain import RetrainConfig, retrain

_TRIGGERS: dict[str, Trigger] = {
    "drift": "drift",
    "performance": "performance",
    "estimated_performance": "estimated_performance",
}
log = logging.getLogger("modelloop.trainer")


class TrainerSettings(StoreSettings):
    """`MODELLOOP_TRAINER_*` settings of the trainer worker."""

    trainer_poll: float = Field(default=2.0, gt=0, description="seconds between job claims")
    trainer_lease: float = Field(
        default=600.0,
        gt=1,
        description="a job is re-claimed this long after its trainer stopped renewing it",
    )
    trainer_base_share: float = Field(
        default=1.0,
        ge=0,
        description="base data and older traffic, together, count this much of the fresh traffic",
    )
    trainer_stale_base_share: float = Field(
        default=0.0,
        ge=0,
        description="the same once the concept has changed (the champion fell on fresh traffic)",
    )
    trainer_recent_rows: int = Field(
        default=2000, gt=0, description="newest labelled predictions trained on at full weight"
    )
    trainer_wait_seconds: float = Field(
        default=300.0,
        ge=0,
        description="how long a job waits "
        "for recent_rows predictions labelled after it was "
        "queued (fresh evidence) before it trains on what is "
        "there",
    )
    trainer_min_traffic_rows: int = Field(
        default=300, gt=0, description="fewer labelled predictions: judge on the test split only"
    )
    trainer_recent_share: float = Field(
        default=0.2,
        gt=0,
        lt=1,
        description="newest share of labelled traffic held out to judge both models",
    )
    trainer_max_test_regression: float = Field(
        default=0.05,
        ge=0,
        description="largest drop on the original test split a challenger "
        "may show (waived when the champion fell on recent data)",
    )
    trainer_min_gain: float = Field(
        default=0.0,
        ge=0,
        description="how much a challenger must beat the champion by on recent labelled data",
    )

    def retrain_config(self) -> RetrainConfig:
        return RetrainConfig(
            base_share=self.trainer_base_share,
            stale_base_share=self.trainer_stale_base_share,
            recent_rows=self.trainer_recent_rows,
            min_traffic_rows=self.trainer_min_traffic_rows,
            recent_share=self.trainer_recent_share,
            max_test_regression=self.trainer_max_test_regression,
            min_gain=self.trainer_min_gain,
        )


class Trainer:
    def __init__(self, settings: TrainerSettings, db: Database, registry: Registry) -> None:
        self.settings = settings
        self.db = db
        self.registry = registry
        self.jobs = JobQueue(db)
        self.events = Events(db)
        self.worker = f"trainer@{platform.node()}:{os.getpid()}"

    def _renew(self, job: Job, done: threading.Event) -> None:
        every = self.settings.trainer_lease / 3
        while not done.wait(every):
            try:
                if not self.jobs.renew(job.id, self.worker, self.settings.trainer_lease):
                    log.warning("job %d: lease lost", job.id)
                    return
            except StoreError as e:
                log.warning("job %d: lease renewal failed: %s", job.id, e)

    def _wait_for_labels(self, job: Job, stop: threading.Event) -> int:
        """Wait until enough predictions made after the job was queued are labelled."""
        log_ = PredictionLog(self.db)
        deadline = time.monotonic() + self.settings.trainer_wait_seconds
        need = self.settings.trainer_recent_rows
        while True:
            fresh = len(log_.labelled(job.model, since_ts=job.created_at, limit=need))
            if fresh >= need or time.monotonic() >= deadline or stop.is_set():
                return fresh
            log.info("job %d: %d of %d fresh labelled predictions; waiting", job.id, fresh, need)
            stop.wait(min(5.0, self.settings.trainer_wait_seconds))

    def run_job(self, job: Job, stop: threading.Event | None = None) -> None:
        log.info(
            "job %d: retrain %s (%s: %s), attempt %d",
            job.id,
            job.model,
            job.trigger,
            job.reason,
            job.attempts,
        )
        done = threading.Event()
        renewer = threading.Thread(target=self._renew, args=(job, done), daemon=True)
        renewer.start()
        try:
            fresh = self._wait_for_labels(job, stop or threading.Event())
            log.info("job %d: %d predictions labelled since it was queued", job.id, fresh)
            trigger: Trigger = _TRIGGERS.get(job.trigger, "admin")
            # One training thread: the trainer shares the machine with the service and the
            # monitor, and HistGradientBoosting's threads fight them for the cores.
            with threadpool_limits(limits=1):
                outcome = retrain(
                    self.registry,
                    self.db,
                    job.model,
                    trigger,
                    self.worker,
                    self.settings.retrain_config(),
                    progress=log.info,
                )
        except (TrainingError, StoreError, ValueError) as e:
            done.set()
            self.jobs.finish(job.id, self.worker, error=str(e))
            self.events.record(
                job.model, "retrain_failed", self.worker, {"job": job.id, "error": str(e)}
            )
            log.error("job %d failed: %s", job.id, e)
            return
        finally:
            done.set()
        result = {
            "labels": {
                "waited_for": self.settings.trainer_recent_rows,
                "since": job.created_at,
                "got": fresh,
            },
            "version": outcome.metadata.version,
            "promoted": outcome.promoted,
            "decision": outcome.decision,
            **outcome.numbers,
        }
        self.jobs.finish(job.id, self.worker, result=result)
        self.events.record(job.model, "retrain", self.worker, {"job": job.id, **result})
        if outcome.promoted:
            self.events.record(
                job.model,
                "promote",
                self.worker,
                {
                    "to_version": outcome.metadata.version,
                    "from_version": outcome.numbers["champion"]["version"],
                    "reason": outcome.decision,
                },
            )

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                job = self.jobs.claim(self.worker, self.settings.trainer_lease)
            except StoreError as e:
                log.warning("cannot claim jobs: %s", e)
                job = None
            if job is None:
                stop.wait(self.settings.trainer_poll)
                continue
            self.run_job(job, stop)
            trim_heap()  # the job's data and models are freed: give their memory back (heap.py)


def run_trainer(settings: TrainerSettings) -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    db = open_database(settings.database)
    trainer = Trainer(settings, db, open_registry(settings.registry_location))
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("trainer: stopping after the current job (signal %d)", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("trainer %s: waiting for jobs", trainer.worker)
    try:
        trainer.run(stop)
    finally:
        db.dispose()
