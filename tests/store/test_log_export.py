"""`modelloop log export`: the log with its labels as Parquet or CSV, one row per prediction,
read back by pandas and DuckDB, on SQLite and PostgreSQL."""

import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest

from modelloop.cli import main
from modelloop.store.database import Database
from modelloop.store.log import LogRow, PredictionLog
from modelloop.store.log import ids as log_ids

DAY = 86_400.0
T0 = 1_764_547_200.0  # 2025-12-01T00:00:00Z


def _rows() -> list[LogRow]:
    token, tag = log_ids.new_token(), log_ids.new_tag()
    rid = log_ids.request_id(token, 0, tag)
    rows: list[LogRow] = []
    for i in range(6):  # generated ids: days 0 (3 rows) and 1 (3 rows), version 1
        rows.append(
            {
                "id": f"{rid}:{i}",
                "ts": T0 + (i // 3) * DAY + i,
                "model": "m",
                "version": 1,
                "features": {"x": float(i), "colour": "red" if i % 2 else None, "id": i},
                "output": {
                    "label": "yes" if i % 2 else "no",
                    "probabilities": {"no": 0.25, "yes": 0.75},
                },
                "latency_ms": 0.5,
            }
        )
    rows.append(  # a caller id on day 2, of version 2, with a feature version 1 lacks
        {
            "id": "order-17",
            "ts": T0 + 2 * DAY,
            "model": "m",
            "version": 2,
            "features": {"x": 9.5, "colour": "blue", "id": 7, "extra": 1.0},
            "output": {"label": "yes", "probabilities": {"no": 0.5, "yes": 0.5}},
            "latency_ms": 1.5,
        }
    )
    return rows


@pytest.fixture
def logged(db: Database) -> list[LogRow]:
    rows = _rows()
    log = PredictionLog(db)
    log.write(rows)
    matched, unknown = log.add_feedback([(rows[1]["id"], "no"), ("order-17", "yes")])
    assert (matched, unknown) == (2, [])
    return rows


def _export(db_url: str, *args: str, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv("MODELLOOP_DATABASE_URL", db_url)
    return main(["log", "export", "--model", "m", *args])


def test_parquet_holds_every_prediction_with_its_label(
    db_url: str, logged: list[LogRow], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "log.parquet"
    assert _export(db_url, "-o", str(out), monkeypatch=monkeypatch) == 0
    frame = pd.read_parquet(out)
    assert list(frame["id"]) == [r["id"] for r in logged]  # the ids the callers got
    assert list(frame.columns) == [
        "id",
        "time",
        "version",
        "x",
        "colour",
        "feature_id",  # a feature named like a fixed column
        "prediction",
        "probability_no",
        "probability_yes",
        "latency_ms",
        "label",
        "label_time",
        "extra",  # version 2's feature: empty for version 1's rows
    ]
    assert list(frame["x"]) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 9.5]
    assert list(frame["colour"].fillna("-")) == ["-", "red", "-", "red", "-", "red", "blue"]
    assert list(frame["version"]) == [1] * 6 + [2]
    assert list(frame["prediction"]) == ["no", "yes", "no", "yes", "no", "yes", "yes"]
    assert list(frame["probability_yes"]) == [0.75] * 6 + [0.5]
    assert list(frame["label"].fillna("-")) == ["-", "no", "-", "-", "-", "-", "yes"]
    assert frame["extra"].isna().sum() == 6
    assert str(frame["time"].dt.tz) == "UTC"
    assert frame["time"].iloc[0] == pd.Timestamp(T0, unit="s", tz="UTC")
    # DuckDB reads the same file with SQL, no decoding of JSON
    con = duckdb.connect()
    got = con.execute(
        f"SELECT count(*), count(label), avg(x) FROM read_parquet('{out}')"
    ).fetchone()
    assert got == (7, 2, pytest.approx((15 + 9.5) / 7))


def test_csv_and_a_time_range(
    db_url: str, logged: list[LogRow], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "day1.csv"
    args = ["--since", "2025-12-02", "--until", "2025-12-03T00:00:00+00:00", "-o", str(out)]
    assert _export(db_url, *args, monkeypatch=monkeypatch) == 0
    frame = pd.read_csv(out)
    assert list(frame["id"]) == [r["id"] for r in logged[3:6]]
    assert list(frame["x"]) == [3.0, 4.0, 5.0]
    assert duckdb.connect().execute(f"SELECT count(*) FROM read_csv('{out}')").fetchone() == (3,)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["-o", "log.txt"], "--format"),
        (["--since", "2025-12-03", "--until", "2025-12-02", "-o", "x.csv"], "later than"),
        (["--since", "2030-01-01", "-o", "x.parquet"], "no logged predictions"),
    ],
)
def test_bad_requests_say_what_is_wrong_and_write_nothing(
    db_url: str,
    logged: list[LogRow],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    words: str,
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.chdir(out)
    assert _export(db_url, *args, monkeypatch=monkeypatch) == 2
    assert words in capsys.readouterr().err
    assert list(out.iterdir()) == []


def test_the_command_runs_as_its_own_process(
    db_url: str, logged: list[LogRow], tmp_path: Path
) -> None:
    out = tmp_path / "log.parquet"
    env: dict[str, Any] = {"MODELLOOP_DATABASE_URL": db_url, "PATH": "/usr/bin:/bin"}
    command = [str(Path(sys.executable).parent / "modelloop"), "log", "export", "--model", "m"]

    def run(*args: str) -> "subprocess.CompletedProcess[str]":
        return subprocess.run(
            [*command, *args], env=env, capture_output=True, text=True, timeout=120, check=False
        )

    bad = run("--since", "yesterday", "-o", str(out))
    assert bad.returncode == 2
    assert "ISO 8601" in bad.stderr
    done = run("-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "wrote 7 predictions of m (2 with a label)" in done.stderr
    assert len(pd.read_parquet(out)) == 7
