"""The trigger rule: when drift persists, or live performance falls below the version's test
metrics by a margin, or the performance estimated without labels falls below them beyond its
noise for as many windows as drift must persist, ask for one retrain; then wait for it and cool
down. Drift whose estimate held steady is benign: with `drift_retrain="unless_benign"` it asks
for no retrain.

States: ok -> warning (a window flagged) -> drift (flags persisted) -> retraining (job queued
or running) -> cooldown -> ok. A retrain is asked for at most once at a time per model.
"""

from dataclasses import dataclass, field
from typing import Any, Literal

STATES = ("ok", "warning", "drift", "retraining", "cooldown")
LOWER_IS_BETTER = {"mae", "rmse"}
DriftRetrain = Literal["always", "unless_benign"]


@dataclass
class RuleConfig:
    persistence: int = 2  # consecutive flagged windows that make drift
    performance_margin: float = 0.05  # how far below its test metric live may fall
    min_labels: int = 200  # labelled predictions needed to judge live performance
    cooldown_seconds: float = 600.0
    estimate_multiplier: float = 3.0  # an estimated drop must exceed this many standard errors
    drift_retrain: DriftRetrain = "always"


@dataclass
class RuleState:
    state: str = "ok"
    flagged_windows: int = 0
    job_id: int | None = None
    cooldown_until: float = 0.0
    last_trigger: dict[str, Any] = field(default_factory=dict)
    estimated_windows: int = 0  # windows in a row whose estimate fell beyond its noise
    benign: bool = False  # the last judged window drifted while its estimate held

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "flagged_windows": self.flagged_windows,
            "estimated_windows": self.estimated_windows,
            "benign": self.benign,
            "job_id": self.job_id,
            "cooldown_until": self.cooldown_until,
            "last_trigger": self.last_trigger,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RuleState":
        return cls(
            state=d.get("state", "ok"),
            flagged_windows=int(d.get("flagged_windows", 0)),
            job_id=d.get("job_id"),
            cooldown_until=float(d.get("cooldown_until", 0.0)),
            last_trigger=dict(d.get("last_trigger") or {}),
            estimated_windows=int(d.get("estimated_windows", 0)),
            benign=bool(d.get("benign", False)),
        )


def performance_drop(metric: str, live: float, baseline: float, margin: float) -> float | None:
    """How far live is worse than baseline beyond the margin (positive), else None."""
    worse = (live - baseline) if metric in LOWER_IS_BETTER else (baseline - live)
    return worse if worse > margin else None


def estimated_drop(
    metric: str, estimate: float, stderr: float, baseline: float, config: RuleConfig
) -> tuple[float, float]:
    """(how far the estimate is worse than baseline, the limit it must exceed to count): the
    limit is the larger of the performance margin and `estimate_multiplier` standard errors of
    the estimate at the window's size."""
    worse = (estimate - baseline) if metric in LOWER_IS_BETTER else (baseline - estimate)
    return worse, max(config.performance_margin, config.estimate_multiplier * stderr)


def on_estimate(
    state: RuleState, dropped: bool | None, drifted: bool, config: RuleConfig
) -> RuleState:
    """Count a judged window's estimate (None: no estimate for this version)."""
    state.benign = drifted and dropped is False
    if state.state in ("retraining", "cooldown"):
        return state
    state.estimated_windows = state.estimated_windows + 1 if dropped else 0
    return state


def on_window(state: RuleState, drifted: bool, config: RuleConfig) -> RuleState:
    """Count a judged window. Returns the new state (flags only move ok/warning/drift)."""
    if state.state in ("retraining", "cooldown"):
        return state
    if drifted:
        state.flagged_windows += 1
        state.state = "drift" if state.flagged_windows >= config.persistence else "warning"
    else:
        state.flagged_windows = 0
        state.state = "ok"
    return state


def wants_retrain(
    state: RuleState, perf_reason: str | None, config: RuleConfig | None = None
) -> str | None:
    """The reason to ask for a retrain now, or None: live performance (labels are the truth),
    then the estimated performance (it says the drift hurts), then drift (unless it is benign
    and the config says so)."""
    config = config or RuleConfig()
    if state.state in ("retraining", "cooldown"):
        return None
    if perf_reason is not None:
        return "performance"
    if state.estimated_windows >= config.persistence:
        return "estimated_performance"
    if state.state == "drift" and not (config.drift_retrain == "unless_benign" and state.benign):
        return "drift"
    return None


def after_job(
    state: RuleState, job_status: str | None, now: float, config: RuleConfig
) -> RuleState:
    """Move out of retraining once the job ended, and out of cooldown once it is over."""
    if state.state == "retraining" and job_status not in ("queued", "running"):
        state.state = "cooldown"
        state.cooldown_until = now + config.cooldown_seconds
        state.flagged_windows = 0
        state.estimated_windows = 0
        state.job_id = None
    if state.state == "cooldown" and now >= state.cooldown_until:
        state.state = "ok"
    return state
