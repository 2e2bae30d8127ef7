"""The drift report page: reference vs current distributions, drift scores over time, the
performance estimated without labels next to the realized one (from feedback) over time, with
retrains and promotions marked. One self-contained HTML file."""

import datetime as dt
import time
from html import escape
from typing import Any

from modelloop.monitoring.charts import bar_pairs, line_chart
from modelloop.redact import actor_name, scrub
from modelloop.store.database import Database
from modelloop.store.events import Events
from modelloop.store.metadata import ReferenceProfile
from modelloop.store.registry import Registry
from modelloop.store.reports import DriftReports, MonitorStates, ReportPages

STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#111;background:#fff}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px}
.meta{color:#555;font-size:13px} .state{font-weight:600;padding:2px 8px;border-radius:4px}
.ok{background:#dcfce7}.warning{background:#fef9c3}.drift{background:#fee2e2}
.retraining{background:#dbeafe}.cooldown{background:#e5e7eb}
table{border-collapse:collapse;font-size:13px} td,th{border-bottom:1px solid #ddd;
padding:4px 10px;text-align:right} th:first-child,td:first-child{text-align:left}
.flag{color:#b91c1c;font-weight:600} .grid{display:flex;flex-wrap:wrap;gap:12px}
.chart .title{font-size:13px;font-weight:600} .chart .tick{font-size:10px;fill:#444}
.chart .axis{stroke:#888} .chart .ref{stroke:#16a34a;stroke-dasharray:4 3}
.chart .marker{stroke:#9333ea;stroke-dasharray:2 2} .chart .mark{font-size:9px;fill:#9333ea}
.chart .refbar{fill:#93c5fd} .chart .curbar{fill:#f97316} .chart .empty{fill:#888}
"""


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _shares(counts: list[int]) -> list[float]:
    total = sum(counts)
    return [c / total if total else 0.0 for c in counts]


def _distributions(ref: ReferenceProfile, window: dict[str, Any]) -> list[str]:
    out = []
    for name, prof in ref.numeric.items():
        cur = window.get("numeric", {}).get(name)
        labels = ["<" + f"{prof.edges[0]:.3g}"] if prof.edges else ["all"]
        labels += [f"≥{e:.3g}" for e in prof.edges]
        out.append(bar_pairs(name, labels, _shares(prof.counts), _shares(cur[0]) if cur else []))
    for name, cprof in ref.categorical.items():
        cur = window.get("categorical", {}).get(name)
        labels = [*cprof.categories, "(other)"]
        ref_counts = [*cprof.counts, cprof.other]
        cur_counts = [*cur[0], cur[1]] if cur else []
        out.append(bar_pairs(name, labels, _shares(ref_counts), _shares(cur_counts)))
    return out


def _estimate_table(rep: dict[str, Any], test: dict[str, float | None]) -> list[str]:
    est = rep.get("estimate")
    if not est:
        return []
    live = rep.get("live", {})
    verdict = (
        "benign drift: the inputs moved, the estimated performance held"
        if rep.get("benign_drift")
        else (
            "the estimated primary metric fell beyond its noise"
            if est.get("dropped")
            else "the estimated primary metric holds"
        )
    )
    out = [
        f'<p class="meta">estimated without labels ({escape(str(est.get("method")))}): '
        f"{escape(verdict)}</p>",
        "<table><tr><th>metric</th><th>estimated</th><th>± s.e.</th><th>merged windows</th>"
        "<th>live (feedback)</th><th>test split</th></tr>",
    ]
    merged = (est.get("merged") or {}).get("metrics", {})
    for name, (value, stderr) in est["latest"]["metrics"].items():
        m = merged.get(name)
        lv, tv = live.get(name), test.get(name)
        out.append(
            f"<tr><td>{escape(name)}</td><td>{value:.4f}</td><td>{stderr:.4f}</td>"
            f"<td>{'-' if m is None else f'{m[0]:.4f}'}</td>"
            f"<td>{'-' if lv is None else f'{lv:.4f}'}</td>"
            f"<td>{'-' if tv is None else f'{tv:.4f}'}</td></tr>"
        )
    out.append("</table>")
    return out


def render(model: str, registry: Registry, db: Database, history: int = 200) -> str:
    active = registry.active(model)
    reports = list(reversed(DriftReports(db).list(model, limit=history)))
    state = MonitorStates(db).get(model)
    events = Events(db).list(model, limit=200)
    marks = [
        (e["ts"], f"{e['kind']} {e['details'].get('to_version', '')}".strip())
        for e in events
        if e["kind"] in ("promote", "rollback", "trigger")
    ]
    latest = reports[-1] if reports else None
    meta = registry.metadata(model, active) if active is not None else None
    body = [f"<h1>modelloop · {escape(model)}</h1>"]
    st = state.state if state else "ok"
    body.append(
        f'<div class="meta">active version {active if active is not None else "-"} · state '
        f'<span class="state {escape(st)}">{escape(st)}</span> · page written '
        f"{_when(time.time())}</div>"
    )
    if meta is not None:
        metric = meta.primary_metric
        live = (state.data.get("live", {}) if state else {}).get(metric)
        labels = state.data.get("live_labels", 0) if state else 0
        live_text = (
            f"{live:.4f} over {labels} labelled predictions"
            if live is not None
            else ("no feedback yet")
        )
        body.append(
            f'<div class="meta">{escape(metric)}: test split '
            f"{meta.metrics.get(metric) or 0:.4f} · live {live_text}</div>"
        )
        fig = meta.estimation.calibration_figures if meta.estimation else None
        if fig is not None:
            body.append(
                f'<div class="meta">calibration on {fig.rows} test rows: ECE '
                f"{fig.ece_before:.4f} → {fig.ece_after:.4f}, Brier {fig.brier_before:.4f} → "
                f"{fig.brier_after:.4f} ({'map applied' if fig.applied else 'map not needed'})"
                "</div>"
            )
    # drift scores over time
    series: dict[str, list[tuple[float, float]]] = {}
    for r in reports:
        for d in r["report"].get("features", []):
            key = "wasserstein" if d["kind"] == "numeric" else "linf"
            value = d.get(key)
            if value is not None:
                series.setdefault(d["feature"], []).append((r["window_end"], float(value)))
    body.append("<h2>Drift scores over time</h2>")
    body.append(
        line_chart("W1/std (numeric) and L-infinity (categorical) per window", series, marks)
    )
    # estimated and realized performance over time
    if meta is not None:
        metric = meta.primary_metric
        live_pts = [
            (r["window_end"], float(r["report"]["live"][metric]))
            for r in reports
            if r["report"].get("live", {}).get(metric) is not None
        ]
        est_pts, band = [], []
        for r in reports:
            found = ((r["report"].get("estimate") or {}).get("latest") or {}).get("metrics", {})
            if metric in found:
                value, stderr = found[metric]
                est_pts.append((r["window_end"], float(value)))
                band.append((r["window_end"], value - 2 * stderr, value + 2 * stderr))
        baseline = meta.metrics.get(metric)
        body.append("<h2>Performance over time: estimated (no labels) and realized</h2>")
        body.append(
            line_chart(
                f"estimated {metric} per window (±2 s.e.) and live {metric} from feedback",
                {f"estimated {metric}": est_pts, f"live {metric}": live_pts},
                marks,
                hline=(baseline, "test split") if baseline is not None else None,
                bands={f"estimated {metric}": band},
            )
        )
    # latest window
    body.append("<h2>Latest window</h2>")
    if latest is None or meta is None or active is None:
        body.append('<p class="meta">no window judged yet</p>')
    else:
        rep = latest["report"]
        body.append(
            f'<p class="meta">{latest["rows"]} rows, {_when(latest["window_start"])} to '
            f"{_when(latest['window_end'])}, version {latest['version']}: verdict "
            f"<b>{escape(latest['verdict'])}</b></p>"
        )
        body.extend(_estimate_table(rep, meta.metrics))
        rows = [
            "<table><tr><th>feature</th><th>statistic</th><th>score</th>"
            "<th>threshold</th><th>missing</th><th>flag</th></tr>"
        ]
        for d in rep.get("features", []):
            stat = "wasserstein" if d["kind"] == "numeric" else "linf"
            score = d.get(stat)
            limit = rep.get("thresholds", {}).get(d["feature"], {}).get(stat)
            flag = ", ".join(d.get("flagged", []))
            rows.append(
                f"<tr><td>{escape(d['feature'])}</td><td>{stat}</td>"
                f"<td>{'-' if score is None else f'{score:.4f}'}</td>"
                f"<td>{'-' if limit is None else f'{limit:.4f}'}</td>"
                f"<td>{(d.get('missing_rate') or 0):.3f}</td>"
                f'<td class="flag">{escape(flag)}</td></tr>'
            )
        rows.append("</table>")
        body.extend(rows)
        if latest["version"] == active:
            ref = registry.reference(model, active)
            body.append("<h2>Reference (blue) vs latest window (orange)</h2>")
            body.append(
                '<div class="grid">'
                + "".join(_distributions(ref, rep.get("window", {})))
                + "</div>"
            )
    body.append(
        "<h2>Events</h2><table><tr><th>time</th><th>event</th><th>by</th><th>details</th></tr>"
    )
    for e in events[:30]:
        details = e["details"]
        text = details.get("text") or details.get("decision") or details.get("reason") or ""
        body.append(
            f"<tr><td>{_when(e['ts'])}</td><td>{escape(e['kind'])}</td>"
            f"<td>{escape(actor_name(e['actor']))}</td><td>{escape(scrub(str(text)))[:200]}</td>"
            "</tr>"
        )
    body.append("</table>")
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>modelloop · '
        f"{escape(model)} drift report</title><style>{STYLE}</style></head><body>"
        + "".join(body)
        + "</body></html>"
    )


def write_page(db: Database, registry: Registry, model: str) -> None:
    ReportPages(db).put(model, render(model, registry, db))
