"""The trigger rule: when drift persists, or live performance falls below the version's test
metrics by a margin, ask for one retrain; then wait for it and cool down.

States: ok -> warning (a window flagged) -> drift (flags persisted) -> retraining (job queued
or running) -> cooldown -> ok. A retrain is asked for at most once at a time per model.
"""

from dataclasses import dataclass, field
from typing import Any

STATES = ("ok", "warning", "drift", "retraining", "cooldown")
LOWER_IS_BETTER = {"mae", "rmse"}


@dataclass
class RuleConfig:
    persistence: int = 2  # consecutive flagged windows that make drift
    performance_margin: float = 0.05  # how far below its test metric live may fall
    min_labels: int = 200  # labelled predictions needed to judge live performance
    cooldown_seconds: float = 600.0


@dataclass
class RuleState:
    state: str = "ok"
    flagged_windows: int = 0
    job_id: int | None = None
    cooldown_until: float = 0.0
    last_trigger: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "flagged_windows": self.flagged_windows,
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
        )


def performance_drop(metric: str, live: float, baseline: float, margin: float) -> float | None:
    """How far live is worse than baseline beyond the margin (positive), else None."""
    worse = (live - baseline) if metric in LOWER_IS_BETTER else (baseline - live)
    return worse if worse > margin else None


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


def wants_retrain(state: RuleState, perf_reason: str | None) -> str | None:
    """The reason to ask for a retrain now, or None."""
    if state.state in ("retraining", "cooldown"):
        return None
    if state.state == "drift":
        return "drift"
    if perf_reason is not None:
        return "performance"
    return None


def after_job(
    state: RuleState, job_status: str | None, now: float, config: RuleConfig
) -> RuleState:
    """Move out of retraining once the job ended, and out of cooldown once it is over."""
    if state.state == "retraining" and job_status not in ("queued", "running"):
        state.state = "cooldown"
        state.cooldown_until = now + config.cooldown_seconds
        state.flagged_windows = 0
        state.job_id = None
    if state.state == "cooldown" and now >= state.cooldown_until:
        state.state = "ok"
    return state
