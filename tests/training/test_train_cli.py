"""`modelloop train` and `modelloop models` as a user runs them: real processes, real files."""

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from modelloop.cli import main
from modelloop.store.database import open_database
from modelloop.store.events import Events
from modelloop.store.registry import FolderRegistry

BIN = Path(sys.executable).parent / "modelloop"
COMMAND = [str(BIN)] if BIN.exists() else [sys.executable, "-m", "modelloop.cli"]
ERROR = re.compile(r"^modelloop: error: \S")
PROGRESS = re.compile(r"^\[(\d)/7\] (\w+) +(\d+\.\d\d) s  ")


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELLOOP_")}
    env["MODELLOOP_HOME"] = str(home)
    env["OMP_NUM_THREADS"] = "1"  # see _one_openmp_thread in conftest.py
    env.update(extra)
    return env


def modelloop(
    home: Path, *args: str, cwd: Path | None = None, **extra: str
) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(
        [*COMMAND, *args],
        env=_env(home, **extra),
        cwd=cwd or home,
        text=True,
        capture_output=True,
        timeout=120,
        check=False,
    )


def _good_rows(n: int = 80, seed: int = 0) -> list[str]:
    """CSV rows `x,colour,y` with a learnable target."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        x = round(float(rng.normal()), 3)
        colour = ["red", "green", "blue"][int(rng.integers(3))]
        y = "yes" if x + (0.8 if colour == "red" else 0) + rng.normal(0, 0.3) > 0.3 else "no"
        rows.append(f"{x},{colour},{y}")
    return rows


GOOD = "x,colour,y\n" + "\n".join(_good_rows()) + "\n"


@dataclass(frozen=True)
class BadCase:
    csv: str | None  # None: no file written
    args: tuple[str, ...]
    expected: str  # a fragment the one error line must contain
    env: tuple[tuple[str, str], ...] = ()


def _with_column(name: str, values: list[str]) -> str:
    lines = GOOD.strip().splitlines()
    out = [f"{lines[0]},{name}"] + [f"{row},{v}" for row, v in zip(lines[1:], values, strict=True)]
    return "\n".join(out) + "\n"


_N = len(_good_rows())
# Run by a real `modelloop` process each (all at once, see `bad_runs`).
BAD_CASES = {
    "missing target column": BadCase(
        GOOD, ("--target", "label"), "target column 'label' not found"
    ),
    "empty file": BadCase("", ("--target", "y"), "is empty"),
    "header only": BadCase("x,colour,y\n", ("--target", "y"), "has a header but no rows"),
    "single class": BadCase(
        "x,colour,y\n" + "\n".join(f"{i},red,yes" for i in range(60)) + "\n",
        ("--target", "y"),
        "single class",
    ),
    "all-missing column": BadCase(
        _with_column("empty", [""] * _N), ("--target", "y"), "column 'empty' has no values"
    ),
    "unparsable number": BadCase(
        _with_column("amount", [str(i * 1.5) for i in range(_N - 1)] + ["abc"]),
        ("--target", "y"),
        "column 'amount' is numeric",
    ),
    "registry under a file": BadCase(
        GOOD,
        ("--target", "y"),
        "is not writable",
        env=(("MODELLOOP_REGISTRY", "{tmp}/afile/registry"),),
    ),
    "estimator for another task": BadCase(
        GOOD,
        ("--target", "y", "--estimator", "linear"),
        "'linear' does not fit a classification task",
    ),
}
# The same checks through `modelloop.cli.main` in this process (a process each costs ~2 s).
MORE_BAD_CASES = {
    "blank file": BadCase("\n \n", ("--target", "y"), "is empty"),
    "unknown estimator": BadCase(
        GOOD, ("--target", "y", "--estimator", "xgboost"), "'xgboost' does not fit"
    ),
    "regression on labels": BadCase(
        GOOD, ("--target", "y", "--task", "regression"), "target 'y' is not numeric"
    ),
    "invalid model name": BadCase(
        GOOD, ("--target", "y", "--model", "../x"), "invalid model name '../x'"
    ),
    "no data file": BadCase(None, ("--target", "y"), "does not exist"),
    "no target option": BadCase(GOOD, (), "--target is required"),
    "categorical option names no column": BadCase(
        GOOD, ("--target", "y", "--categorical", "nope"), "column 'nope' named in an option"
    ),
    "unreadable registry path": BadCase(
        GOOD,
        ("--target", "y"),
        "is not writable",
        env=(("MODELLOOP_REGISTRY", "/dev/null/registry"),),
    ),
}


def _prepare(tmp: Path, case: BadCase) -> tuple[Path, Path, dict[str, str]]:
    home = tmp / "home"
    home.mkdir()
    (tmp / "afile").write_text("a regular file")
    data = tmp / "data.csv"
    if case.csv is not None:
        data.write_text(case.csv)
    return home, data, {k: v.format(tmp=tmp) for k, v in case.env}


@dataclass
class Ran:
    result: "subprocess.CompletedProcess[str]"
    home: Path
    registry: Path
    tmp: Path


@pytest.fixture(scope="module")
def bad_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Ran]:
    """Start every bad-input run at once (each is a full interpreter), then collect them."""
    started = {}
    for i, (name, case) in enumerate(BAD_CASES.items()):
        tmp = tmp_path_factory.mktemp(f"bad{i}")
        home, data, env = _prepare(tmp, case)
        proc = subprocess.Popen(
            [*COMMAND, "train", "--data", str(data), *case.args],
            env=_env(home, **env),
            cwd=home,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        registry = Path(env.get("MODELLOOP_REGISTRY", home / "registry"))
        started[name] = (proc, home, registry, tmp)
    runs = {}
    for name, (proc, home, registry, tmp) in started.items():
        out, err = proc.communicate(timeout=120)
        runs[name] = Ran(
            subprocess.CompletedProcess(proc.args, proc.returncode, out, err),
            home,
            registry,
            tmp,
        )
    return runs


def _check_bad_run(ran: Ran, case: BadCase) -> None:
    result = ran.result
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    errors = [line for line in lines if ERROR.match(line)]
    assert len(errors) == 1, result.stderr
    assert lines[-1] == errors[0]  # the error is the last word
    # Everything else on stderr is a stage's progress line.
    assert all(PROGRESS.match(line) for line in lines[:-1]), result.stderr
    assert case.expected in errors[0], errors[0]
    assert result.stdout == ""
    # Nothing half-written: no model folder, no version, no temporary folder.
    if ran.registry.is_dir():
        leftovers = [p for p in ran.registry.rglob("*") if not p.name.startswith(".probe")]
        assert leftovers == []
    assert (ran.tmp / "afile").read_text() == "a regular file"


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_input_is_one_clear_error_and_leaves_nothing(
    bad_runs: dict[str, Ran], case: str
) -> None:
    _check_bad_run(bad_runs[case], BAD_CASES[case])


@pytest.mark.parametrize("case", list(MORE_BAD_CASES))
def test_more_bad_input_in_process(
    case: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bad = MORE_BAD_CASES[case]
    home, data, env = _prepare(tmp_path, bad)
    for k in [k for k in os.environ if k.startswith("MODELLOOP_")]:
        monkeypatch.delenv(k)
    for k, v in {**env, "MODELLOOP_HOME": str(home)}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(home)
    code = main(["train", "--data", str(data), *bad.args])
    out, err = capsys.readouterr()
    registry = Path(env.get("MODELLOOP_REGISTRY", home / "registry"))
    _check_bad_run(
        Ran(subprocess.CompletedProcess([], code, out, err), home, registry, tmp_path), bad
    )


def test_unparsable_number_error_names_the_row_and_value(bad_runs: dict[str, Ran]) -> None:
    error = bad_runs["unparsable number"].result.stderr.splitlines()[-1]
    assert "'abc'" in error
    assert "1 values do not parse" in error
    assert "--categorical amount" in error  # and says how to proceed


def test_cleaning_is_reported_and_column_kinds_follow_the_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = _good_rows(120, seed=1)
    # a numeric-looking code column, duplicates, rows without a target
    coded = [f"{row},{100 + i % 4}" for i, row in enumerate(rows)]
    body = coded + coded[:5] + ["0.5,red,,101", "0.7,blue, ,102", "0.1,green,,103"]
    data = tmp_path / "churn.csv"
    data.write_text("x,colour,y,store\n" + "\n".join(body) + "\n")

    def train(*extra: str) -> dict[str, object]:
        args = [
            "train",
            "--data",
            str(data),
            "--target",
            "y",
            "--model",
            "c",
            "--estimator",
            "logreg",
            "--json",
            *extra,
        ]
        if not extra:  # a real process the first time, in this process the second
            r = modelloop(tmp_path, *args)
        else:
            monkeypatch.setenv("MODELLOOP_HOME", str(tmp_path))
            code = main(args)
            out, err = capsys.readouterr()
            r = subprocess.CompletedProcess(args, code, out, err)
        assert r.returncode == 0, r.stderr
        assert "[2/7] clean" in r.stderr
        clean_line = next(line for line in r.stderr.splitlines() if "[2/7] clean" in line)
        assert "dropped 5 (exact duplicate)" in clean_line
        assert "dropped 3 (missing target)" in clean_line
        meta: dict[str, object] = json.loads(r.stdout)
        return meta

    meta = train()
    assert meta["data"] == {
        **meta["data"],  # type: ignore[dict-item]
        "rows_raw": 128,
        "rows_clean": 120,
        "dropped": {"missing target": 3, "exact duplicate": 5},
    }
    kinds = {f["name"]: f["kind"] for f in meta["features"]}  # type: ignore[attr-defined]
    assert kinds == {"x": "numeric", "colour": "categorical", "store": "numeric"}

    forced = train("--categorical", "store")
    features = {f["name"]: f for f in forced["features"]}  # type: ignore[attr-defined]
    assert features["store"]["kind"] == "categorical"
    assert features["store"]["categories"] == ["100", "101", "102", "103"]
    assert features["colour"]["categories"] == ["blue", "green", "red"]
    assert forced["version"] == 2


def _progress(stderr: str) -> list[tuple[int, str, float]]:
    found = []
    for line in stderr.splitlines():
        m = PROGRESS.match(line)
        if m:
            found.append((int(m.group(1)), m.group(2), float(m.group(3))))
    return found


def test_train_then_models_list_show_promote_rollback(tmp_path: Path) -> None:
    home = tmp_path
    r = modelloop(home, "train", "--dataset", "iris", "--model", "iris")
    assert r.returncode == 0, r.stderr
    stages = _progress(r.stderr)
    assert [(n, name) for n, name, _ in stages] == [
        (1, "gather"),
        (2, "clean"),
        (3, "prepare"),
        (4, "train"),
        (5, "evaluate"),
        (6, "export"),
        (7, "publish"),
    ]
    assert all(0 <= t < 60 for _, _, t in stages)
    assert sum(t for _, _, t in stages) > 0
    assert "iris v1 (classification, hist_gradient_boosting) on sklearn:iris" in r.stdout
    assert re.search(r"^accuracy +0\.9\d{3}$|^accuracy +1\.0000$", r.stdout, re.M), r.stdout
    assert "confusion matrix" in r.stdout
    assert "parity with scikit-learn on 30 rows" in r.stdout
    assert "active: no active version yet" in r.stdout
    registry = FolderRegistry(home / "registry")
    assert registry.versions("iris") == [1]
    assert registry.active("iris") == 1

    r = modelloop(home, "models", "list")
    assert r.returncode == 0, r.stderr
    header, row = r.stdout.strip().splitlines()
    assert header.split()[:3] == ["model", "active", "versions"]
    assert row.split()[:5] == ["iris", "1", "1", "classification", "accuracy"]

    r = modelloop(home, "models", "list", "--json")
    listed = json.loads(r.stdout)
    assert listed[0]["model"] == "iris"
    assert listed[0]["active"] == 1
    assert listed[0]["versions"] == [1]

    # A second version (a copy of the first, published through the registry).
    v1 = registry.metadata("iris", 1)
    registry.publish("iris", registry.onnx_bytes("iris", 1), v1, registry.reference("iris", 1))

    r = modelloop(home, "models", "show", "iris")
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert out[0] == "model iris: active version 1"
    assert re.match(r"^\* +1 ", out[2])
    assert re.match(r"^  +2 ", out[3])
    assert re.search(
        r"^  \S+ \S+  promote  - -> 1  by \S+: no active version yet$", r.stdout, re.M
    ), r.stdout

    r = modelloop(home, "models", "promote", "iris", "2", "--reason", "try v2")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "iris: active version 1 -> 2"
    assert registry.active("iris") == 2

    r = modelloop(home, "models", "show", "iris", "--json")
    shown = json.loads(r.stdout)
    assert shown["active"] == 2
    assert [v["version"] for v in shown["versions"]] == [1, 2]
    assert shown["history"][-1]["reason"] == "try v2"

    r = modelloop(home, "models", "rollback", "iris")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "iris: active version 2 -> 1"
    assert registry.active("iris") == 1

    r = modelloop(home, "models", "rollback", "iris")
    assert r.returncode != 0
    assert r.stderr.strip().splitlines() == [
        "modelloop: error: model 'iris' has no earlier active version to roll back to"
    ]
    assert registry.active("iris") == 1

    r = modelloop(home, "models", "promote", "iris", "9")
    assert r.returncode != 0
    assert len(r.stderr.strip().splitlines()) == 1
    assert "no version 9" in r.stderr
    assert registry.active("iris") == 1

    r = modelloop(home, "models", "show", "nope")
    assert r.returncode != 0
    assert "model 'nope' not found" in r.stderr

    # Every step is in the audit log of the default SQLite database under MODELLOOP_HOME.
    db = open_database(f"sqlite:///{home / 'modelloop.db'}")
    try:
        kinds = [e["kind"] for e in reversed(Events(db).list(model="iris"))]
    finally:
        db.dispose()
    assert kinds == ["publish", "promote", "promote", "rollback"]


def test_models_list_on_an_empty_registry(tmp_path: Path) -> None:
    r = modelloop(tmp_path, "models", "list")
    assert r.returncode == 0
    assert "no models in" in r.stdout
    assert "modelloop train" in r.stdout


def test_default_home_is_var_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for k in [k for k in os.environ if k.startswith("MODELLOOP_")]:
        monkeypatch.delenv(k)
    monkeypatch.chdir(tmp_path)
    code = main(["train", "--dataset", "wine", "--estimator", "logreg", "--model", "w"])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "var" / "registry" / "w" / "1" / "model.onnx").is_file()
    assert (tmp_path / "var" / "modelloop.db").is_file()
    out = capsys.readouterr().out
    assert f"registry: {Path('var') / 'registry' / 'w' / '1'}" in out
