"""A window's estimate judged against the version's test figure, and the words of a trigger."""

import time
from collections.abc import Sequence
from typing import Any

from modelloop.monitoring import rules
from modelloop.monitoring.estimate.estimator import Estimator
from modelloop.monitoring.window import Window
from modelloop.store.metadata import ModelMetadata


def judge(
    estimator: Estimator, windows: Sequence[Window], meta: ModelMetadata, config: rules.RuleConfig
) -> dict[str, Any] | None:
    """The estimated metrics of the latest window and of the windows merged, and whether the
    primary one fell below the version's test figure beyond its noise in either (`dropped`;
    `drop` and `limit` of the one furthest beyond its limit). None: no estimate."""
    latest = estimator.estimate(windows[-1])
    if latest is None:
        return None
    merged = None
    if len(windows) > 1:
        whole = windows[0]
        for w in windows[1:]:
            whole = whole.merge(w)
        merged = estimator.estimate(whole)
    metric = meta.primary_metric
    baseline = meta.metrics.get(metric)
    out: dict[str, Any] = {
        "method": latest["method"],
        "metric": metric,
        "baseline": baseline,
        "latest": latest,
        "merged": merged,
        "dropped": False,
        "drop": None,
        "limit": None,
        "rows": latest["rows"],
    }
    if baseline is None:
        return out
    for est in (latest, merged):
        found = None if est is None else est["metrics"].get(metric)
        if est is None or found is None:
            continue
        drop, limit = rules.estimated_drop(metric, found[0], found[1], baseline, config)
        if out["drop"] is None or drop - limit > out["drop"] - out["limit"]:
            out.update(drop=drop, limit=limit, rows=est["rows"])
        out["dropped"] = out["dropped"] or drop > limit
    return out


def reason(
    estimate: dict[str, Any], windows: int, version: int, labels: int, now: float
) -> tuple[str, dict[str, Any]]:
    """The text and numbers of an `estimated_performance` trigger: it says what the retrain
    waits for (labels of the traffic that fell), as the trainer trains on labelled traffic."""
    metric, baseline = estimate.get("metric"), estimate.get("baseline") or 0.0
    value, stderr = (estimate.get("latest") or {}).get("metrics", {}).get(metric, (0.0, 0.0))
    since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now))
    text = (
        f"estimated {metric} {value:.3f} ± {stderr:.3f} ({estimate.get('method')}, no labels) is "
        f"{estimate.get('drop') or 0.0:.3f} worse than the test split's {baseline:.3f} (limit "
        f"{estimate.get('limit') or 0.0:.3f}) for {windows} windows; the retrain waits for "
        f"labels of predictions made since {since} ({labels} labelled for v{version} so far)"
    )
    numbers = {
        "metric": metric,
        "estimate": value,
        "stderr": stderr,
        "baseline": baseline,
        "drop": estimate.get("drop"),
        "limit": estimate.get("limit"),
        "windows": windows,
        "waiting_for_labels_since": now,
    }
    return text, numbers
