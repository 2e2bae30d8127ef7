"""The monitor worker: reads the prediction log incrementally, judges windows for drift,
computes live performance, and asks for a retrain when the rule fires.

Its watermark, the window being filled, the rule's state and the reports of the windows closed
in the pass are saved in one transaction after every pass, so a restart (even after SIGKILL)
resumes exactly where it stopped, counting no row twice.
"""

import collections
import contextlib
import gc
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from modelloop.heap import trim_heap
from modelloop.monitoring import rules
from modelloop.monitoring.check import (
    CheckResult,
    PreparedReference,
    calibrate_reference,
    check,
)
from modelloop.monitoring.columns import join
from modelloop.monitoring.estimate import judge
from modelloop.monitoring.estimate.estimator import Estimator
from modelloop.monitoring.live import live_metrics
from modelloop.monitoring.metrics import MonitorMetrics
from modelloop.monitoring.noise import NoiseCalibration
from modelloop.monitoring.settings import MonitorSettings
from modelloop.monitoring.window import Folder, Window
from modelloop.store.database import Database
from modelloop.store.errors import StoreError
from modelloop.store.events import Events
from modelloop.store.jobs import JobQueue
from modelloop.store.log import Batch, PredictionLog
from modelloop.store.metadata import ModelMetadata, ReferenceProfile
from modelloop.store.registry import Registry
from modelloop.store.reports import MonitorStates, ReportRow
from modelloop.store.retention import Retention

log = logging.getLogger("modelloop.monitor")


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector (and restore it after). A chunk is read as batches
    of columns (object arrays of text among them) and folded through many small arrays: none
    holds a reference cycle, so reference counting frees them all, but their allocations
    could trigger collections that walk every live object (with the JSON rows this was, ~15 %
    of a pass's time). Free the chunk before the end of the block, or the first allocation
    after it walks the chunk."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@dataclass
class Context:
    """What the monitor holds for one model and the version it judges traffic against."""

    model: str
    version: int
    meta: ModelMetadata
    ref: ReferenceProfile
    folder: Folder
    calibration: NoiseCalibration
    prepared: PreparedReference  # ref and calibration, prepared once for every check
    watermark: int
    window: Window
    recent: collections.deque[Window]
    rule: rules.RuleState
    estimator: Estimator
    live: dict[str, float] = field(default_factory=dict)
    live_labels: int = 0
    last_check: dict[str, Any] | None = None
    last_result: CheckResult | None = None
    # closed windows' reports, stored with the state in one transaction per pass
    pending_reports: list[ReportRow] = field(default_factory=list)


class Monitor:
    def __init__(
        self, settings: MonitorSettings, db: Database, registry: Registry, metrics: MonitorMetrics
    ) -> None:
        self.settings = settings
        self.db = db
        self.registry = registry
        self.metrics = metrics
        self.log = PredictionLog(db)
        self.states = MonitorStates(db)
        self.jobs = JobQueue(db)
        self.events = Events(db)
        self.contexts: dict[str, Context] = {}
        self._calibrations: dict[tuple[str, int], NoiseCalibration] = {}
        self.rule_config = rules.RuleConfig(
            persistence=settings.persistence,
            performance_margin=settings.performance_margin,
            min_labels=settings.min_labels,
            cooldown_seconds=settings.cooldown_seconds,
            estimate_multiplier=settings.estimate_multiplier,
            drift_retrain=settings.drift_retrain,
        )
        self._report_written: dict[str, float] = {}
        self.retention = Retention(db, settings.retention_days * 86_400.0, settings.retention_rows)
        self._pruned_at: float | None = None

    # -- contexts ----------------------------------------------------------------------------

    def _calibration(self, model: str, version: int, ref: ReferenceProfile) -> NoiseCalibration:
        key = (model, version)
        if key not in self._calibrations:
            # one per model: each is ~1 MiB (tracemalloc, the default model's reference) and
            # a monitor that sees a retrain every few minutes would keep them all
            for old in [k for k in self._calibrations if k[0] == model]:
                del self._calibrations[old]
            start = time.perf_counter()
            self._calibrations[key] = calibrate_reference(ref)
            log.info(
                "model %s v%d: noise calibrated on its reference in %.2f s",
                model,
                version,
                time.perf_counter() - start,
            )
        return self._calibrations[key]

    def _context(self, model: str, version: int) -> Context:
        meta = self.registry.metadata(model, version)
        ref = self.registry.reference(model, version)
        saved = self.states.get(model)
        data = saved.data if saved else {}
        watermark = saved.watermark if saved else 0
        same = data.get("version") == version
        window = (
            Window.from_dict(data["window"]) if same and data.get("window") else (Window.empty(ref))
        )
        recent: collections.deque[Window] = collections.deque(
            [Window.from_dict(w) for w in data.get("recent", [])] if same else [],
            maxlen=max(self.settings.merge_windows - 1, 0) or 1,
        )
        if self.settings.merge_windows <= 1:
            recent.clear()
        rule = rules.RuleState.from_dict(data.get("rule", {}))
        if not same and saved is not None:
            log.info("model %s: now judging traffic against version %d", model, version)
            if rule.state in ("ok", "warning", "drift"):
                rule = rules.RuleState(cooldown_until=rule.cooldown_until)
        calibration = self._calibration(model, version, ref)
        ctx = Context(
            model,
            version,
            meta,
            ref,
            Folder(meta, ref),
            calibration,
            PreparedReference(ref, calibration),
            watermark,
            window,
            recent,
            rule,
            Estimator(meta),
        )
        self.metrics.active_version.labels(model).set(version)
        for metric, value in meta.metrics.items():
            if value is not None:
                self.metrics.baseline.labels(model, str(version), metric).set(value)
        return ctx

    def _save(self, ctx: Context) -> None:
        """Store the watermark, the open window, the rule's state and the reports of the windows
        closed since the last save, all in one transaction."""
        data = {
            "version": ctx.version,
            "window": ctx.window.to_dict(),
            "recent": [w.to_dict() for w in ctx.recent],
            "rule": ctx.rule.to_dict(),
            "live": ctx.live,
            "live_labels": ctx.live_labels,
        }
        self.states.save(ctx.model, ctx.watermark, ctx.rule.state, data, ctx.pending_reports)
        ctx.pending_reports = []

    # -- one pass ----------------------------------------------------------------------------

    def run_once(self) -> None:
        for model in self.registry.models():
            try:
                self.check_model(model)
            except (StoreError, OSError, ValueError) as e:
                self.metrics.errors.inc()
                log.error("model %s: monitor pass failed: %s", model, e)

    def check_model(self, model: str) -> Context | None:
        version = self.registry.active(model)
        if version is None:
            return None
        ctx = self.contexts.get(model)
        if ctx is None or ctx.version != version:
            if ctx is not None:
                self._save(ctx)
            ctx = self._context(model, version)
            self.contexts[model] = ctx
        self._ingest(ctx)
        self._live(ctx)
        self._rule(ctx)
        closed = ctx.pending_reports
        # The windows' reports go with the watermark that covers their rows: a monitor killed
        # anywhere in the pass has stored both or neither.
        self._save(ctx)
        if closed:
            for _version, *_, verdict, _report in closed:
                self.metrics.checks.labels(model, verdict).inc()
            assert ctx.last_result is not None
            self._export(ctx, ctx.last_result)
        self._page(ctx)
        self.metrics.set_state(model, ctx.rule.state)
        self.metrics.pending_rows.labels(model).set(ctx.window.rows)
        self.metrics.last_check.labels(model).set(time.time())
        return ctx

    def _ingest(self, ctx: Context) -> None:
        s = self.settings
        before = time.time() - s.settle_seconds
        while True:
            with _gc_paused():
                n = self._read_chunk(ctx, before)
            if not n:
                break
            self.metrics.rows_ingested.labels(ctx.model).inc(n)
            if n < s.chunk_rows:
                break
        w = ctx.window
        if w.rows >= s.min_window_rows and time.time() - w.start >= s.window_seconds:
            self._close(ctx)

    def _read_chunk(self, ctx: Context, before: float) -> int:
        """Fold the next records of the log into the window (closing the windows they fill);
        return the number of rows read. Its batches are freed on return."""
        batches = self.log.batches_since(ctx.model, ctx.watermark, self.settings.chunk_rows, before)
        if not batches:
            return 0
        # another version's traffic is not judged here; the rest is folded at once
        mine = [b for b in batches if b.version == ctx.version]
        if mine:
            self._fold(ctx, join(mine))
        ctx.watermark = batches[-1].seq
        return sum(b.rows for b in batches)

    def _fold(self, ctx: Context, batch: Batch) -> None:
        """Fold a batch's rows into the window: a window closes at `window_rows`, the rest of
        the batch goes to the next."""
        size = self.settings.window_rows
        i = 0
        while i < batch.rows:
            take = size - ctx.window.rows
            part = ctx.folder.fold_batch(batch, i, i + take)
            ctx.window = ctx.window.merge(part) if ctx.window.rows else part
            i += take
            if ctx.window.rows >= size:
                self._close(ctx)

    def _close(self, ctx: Context) -> CheckResult:
        s = self.settings
        windows = [*ctx.recent, ctx.window] if s.merge_windows > 1 else [ctx.window]
        result = check(windows, ctx.ref, ctx.calibration, s.drift_multiplier, prepared=ctx.prepared)
        estimate = (
            judge.judge(ctx.estimator, windows, ctx.meta, self.rule_config)
            if result.verdict != "not judged"
            else None
        )
        if result.verdict != "not judged":
            drifted = result.verdict == "drift"
            ctx.rule = rules.on_window(ctx.rule, drifted, self.rule_config)
            dropped = None if estimate is None else bool(estimate["dropped"])
            ctx.rule = rules.on_estimate(ctx.rule, dropped, drifted, self.rule_config)
        report = result.as_dict()
        report["estimate"] = estimate
        report["benign_drift"] = ctx.rule.benign if result.verdict != "not judged" else False
        report["live"] = dict(ctx.live)
        report["live_labels"] = ctx.live_labels
        report["window"] = ctx.window.to_dict()
        ctx.pending_reports.append(
            (
                ctx.version,
                ctx.window.start,
                ctx.window.end,
                ctx.window.rows,
                ctx.rule.state,
                result.verdict,
                report,
            )
        )
        ctx.last_result = result
        if result.verdict == "drift":
            log.info(
                "model %s v%d: drift in a window of %d rows: %s (state %s)",
                ctx.model,
                ctx.version,
                ctx.window.rows,
                ", ".join(result.flagged),
                ctx.rule.state,
            )
        ctx.last_check = report
        if s.merge_windows > 1:
            ctx.recent.append(ctx.window)
        ctx.window = Window.empty(ctx.ref)
        return result

    def _export(self, ctx: Context, result: CheckResult) -> None:
        m, model = self.metrics, ctx.model
        estimate = (ctx.last_check or {}).get("estimate")
        if estimate is not None:
            version = str(ctx.version)
            for metric, (value, stderr) in estimate["latest"]["metrics"].items():
                m.estimated.labels(model, version, metric).set(value)
                m.estimated_stderr.labels(model, version, metric).set(stderr)
        m.window_rows.labels(model).set(result.rows)
        m.drift_detected.labels(model).set(1.0 if result.verdict == "drift" else 0.0)
        flagged = set(result.flagged)
        for d in result.features:
            m.feature_drifted.labels(model, d.feature).set(1.0 if d.feature in flagged else 0.0)
            for stat in d.statistics:
                value = d.score(stat)
                if value is not None:
                    m.drift_score.labels(model, d.feature, stat).set(value)
                limit = result.thresholds.get(d.feature, {}).get(stat)
                if limit is not None:
                    m.drift_threshold.labels(model, d.feature, stat).set(limit)

    def _live(self, ctx: Context) -> None:
        rows = [
            r
            for r in self.log.labelled(ctx.model, limit=self.settings.live_rows * 4)
            if r["version"] == ctx.version
        ][: self.settings.live_rows]
        ctx.live_labels = len(rows)
        ctx.live = live_metrics(ctx.meta.task, rows) if rows else {}
        version = str(ctx.version)
        self.metrics.live_labels.labels(ctx.model, version).set(len(rows))
        for metric, value in ctx.live.items():
            self.metrics.live.labels(ctx.model, version, metric).set(value)

    def _performance_reason(self, ctx: Context) -> tuple[str, dict[str, Any]] | None:
        metric = ctx.meta.primary_metric
        live, baseline = ctx.live.get(metric), ctx.meta.metrics.get(metric)
        if live is None or baseline is None or ctx.live_labels < self.settings.min_labels:
            return None
        drop = rules.performance_drop(metric, live, baseline, self.settings.performance_margin)
        if drop is None:
            return None
        return (
            f"live {metric} {live:.3f} is {drop:.3f} worse than the test split's "
            f"{baseline:.3f} over {ctx.live_labels} labelled predictions",
            {"metric": metric, "live": live, "baseline": baseline, "labels": ctx.live_labels},
        )

    def _rule(self, ctx: Context) -> None:
        now = time.time()
        if ctx.rule.state == "retraining" and ctx.rule.job_id is not None:
            try:
                status = self.jobs.get(ctx.rule.job_id).status
            except StoreError:
                status = None
            ctx.rule = rules.after_job(ctx.rule, status, now, self.rule_config)
        else:
            ctx.rule = rules.after_job(ctx.rule, None, now, self.rule_config)
        perf = self._performance_reason(ctx)
        reason = rules.wants_retrain(ctx.rule, perf[0] if perf else None, self.rule_config)
        if reason is None:
            return
        numbers: dict[str, Any]
        if reason == "estimated_performance":
            text, numbers = judge.reason(
                (ctx.last_check or {}).get("estimate") or {},
                ctx.rule.estimated_windows,
                ctx.version,
                ctx.live_labels,
                now,
            )
        elif reason == "drift":
            last = ctx.last_check or {}
            text = f"drift persisted over {ctx.rule.flagged_windows} windows: " + ", ".join(
                last.get("flagged", [])
            )
            numbers = {
                "flagged": last.get("flagged", []),
                "scores": {
                    d["feature"]: {
                        "wasserstein": d.get("wasserstein"),
                        "linf": d.get("linf"),
                        "psi": d.get("psi"),
                    }
                    for d in last.get("features", [])
                    if d["feature"] in set(last.get("flagged", []))
                },
            }
        else:
            assert perf is not None
            text, numbers = perf
        job, created = self.jobs.enqueue(ctx.model, reason, text)
        ctx.rule.state = "retraining"
        ctx.rule.job_id = job.id
        ctx.rule.last_trigger = {"reason": reason, "text": text, "time": now, "job": job.id}
        self.metrics.triggers.labels(ctx.model, reason).inc()
        self.events.record(
            ctx.model,
            "trigger",
            "monitor",
            {
                "reason": reason,
                "text": text,
                "job": job.id,
                "new_job": created,
                "version": ctx.version,
                **numbers,
            },
        )
        log.warning(
            "model %s v%d: retrain asked for (%s): %s; job %d",
            ctx.model,
            ctx.version,
            reason,
            text,
            job.id,
        )

    def _page(self, ctx: Context) -> None:
        now = time.time()
        if now - self._report_written.get(ctx.model, 0.0) < self.settings.report_seconds:
            return
        from modelloop.monitoring.report_page import write_page

        write_page(self.db, self.registry, ctx.model)
        self._report_written[ctx.model] = now

    def prune(self) -> None:
        """Apply the retention setting, at most once per `retention_interval`."""
        now = time.monotonic()
        if self._pruned_at is not None and now - self._pruned_at < self.settings.retention_interval:
            return
        self._pruned_at = now
        started = time.perf_counter()
        pruned = self.retention.prune()
        self.metrics.pruned.labels("predictions").inc(pruned.predictions)
        self.metrics.pruned.labels("feedback").inc(pruned.feedback)
        self.metrics.pruned.labels("drift_reports").inc(pruned.reports)
        if pruned:
            log.info(
                "retention: deleted %d logged predictions, %d feedback labels, %d drift reports"
                " in %.2f s",
                pruned.predictions,
                pruned.feedback,
                pruned.reports,
                time.perf_counter() - started,
            )

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                self.run_once()
                self.prune()
            except Exception:  # keep the worker alive whatever one pass hit
                self.metrics.errors.inc()
                log.exception("monitor pass failed")
            trim_heap()  # the pass's chunks are freed: give their memory back (see heap.py)
            stop.wait(max(0.0, self.settings.monitor_interval - (time.monotonic() - started)))
