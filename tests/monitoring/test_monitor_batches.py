"""The monitor reading the log as batches (`PredictionLog.batches_since`), before the columnar
log is merged: the monitor tests on a real database run here with a TEMPORARY reader that
builds the batches from today's log rows.

TEMPORARY: when the log-store branch is merged, `PredictionLog.batches_since` is the store's;
delete `_batches_since` and the autouse fixture (test_monitor.py then runs on the real one).
"""

from typing import Any

import numpy as np
import orjson
import pytest

from modelloop.store.database import Database
from modelloop.store.log.batch import Batch
from modelloop.store.predictions import LogRow, PredictionLog
from modelloop.store.registry import Registry
from modelloop.store.reports import scan_log
from modelloop.training import synthetic

from . import test_monitor as tm
from .test_monitor import MODEL, Traffic, monitor, reports

# test_monitor's fixtures, and its tests of ingestion, run here on the temporary reader
trained = tm.trained
registry = tm.registry
test_restart_resumes_without_double_counting = tm.test_restart_resumes_without_double_counting
test_a_pass_cut_short_after_closing_windows_stores_nothing = (
    tm.test_a_pass_cut_short_after_closing_windows_stores_nothing
)
test_shift_is_flagged_within_two_windows = tm.test_shift_is_flagged_within_two_windows
test_steady_traffic_raises_no_flag_and_no_retrain = (
    tm.test_steady_traffic_raises_no_flag_and_no_retrain
)

RECORD_ROWS = 250  # rows per record, as the log writer flushes them


def _column(values: list[Any]) -> np.ndarray:
    numbers = all(v is None or type(v) in (int, float) for v in values)
    if numbers:
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    return np.array([*values, None], dtype=object)[:-1]


def _record(rows: list[tuple[int, float, int, str, str]]) -> Batch:
    feats = [orjson.loads(r[3]) for r in rows]
    outs = [orjson.loads(r[4]) for r in rows]
    names = sorted({k for f in feats for k in f})
    keys = sorted({k for o in outs for k in (o.get("probabilities") or {})})
    n = len(rows)
    return Batch(
        seq=rows[-1][0],  # the record's seq: its last row's (the watermark stays a row's seq)
        model=MODEL,
        version=rows[0][2],
        ts=np.array([r[1] for r in rows], dtype=np.float64),
        latency_ms=np.zeros(n),
        features={name: _column([f.get(name) for f in feats]) for name in names},
        labels=np.array([o.get("label") for o in outs] + [None], dtype=object)[:-1]
        if any("label" in o for o in outs)
        else None,
        probabilities={
            k: np.array(
                [(o.get("probabilities") or {}).get(k, np.nan) for o in outs], dtype=np.float64
            )
            for k in keys
        },
        values=np.array([o.get("value", np.nan) for o in outs], dtype=np.float64)
        if any("value" in o for o in outs)
        else None,
    )


def _batches_since(
    self: PredictionLog, model: str, after_seq: int, limit_rows: int, before_ts: float
) -> list[Batch]:
    """TEMPORARY: today's rows as records of up to RECORD_ROWS rows of one version, whole
    records until their rows reach `limit_rows` (at least one)."""
    rows = scan_log(self.db, model, after_seq, 10**9, before_ts)
    records: list[list[tuple[int, float, int, str, str]]] = []
    for r in rows:
        if records and records[-1][-1][2] == r[2] and len(records[-1]) < RECORD_ROWS:
            records[-1].append(r)
        else:
            records.append([r])
    out: list[Batch] = []
    read = 0
    for rec in records:
        if read >= limit_rows:
            break
        out.append(_record(rec))
        read += len(rec)
    return out


@pytest.fixture(autouse=True)
def _batch_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    if not hasattr(PredictionLog, "batches_since"):
        monkeypatch.setattr(PredictionLog, "batches_since", _batches_since, raising=False)


def test_other_versions_batches_are_skipped_and_windows_split_batches(
    db: Database, registry: Registry
) -> None:
    traffic = Traffic(registry, db)
    traffic.send(synthetic.generate(1100, 1))  # five records: the last one ends in window 2
    rows: list[LogRow] = [
        {
            "id": f"v2-{i}",
            "ts": 1.0,
            "model": MODEL,
            "version": 2,
            "features": {"nothing": None},
            "output": {"label": "yes"},
            "latency_ms": 1.0,
        }
        for i in range(300)
    ]
    PredictionLog(db).write(rows)
    traffic.send(synthetic.generate(1400, 2))
    m = monitor(db, registry, chunk_rows=600)  # chunks of whole records, 750 rows each
    m.run_once()
    ctx = m.contexts[MODEL]
    assert [r["rows"] for r in reports(db)] == [1000, 1000]  # version 2's 300 rows not judged
    assert ctx.window.rows == 500
    last = scan_log(db, MODEL, 0, 10**9, 10**12)[-1][0]
    assert ctx.watermark == last
