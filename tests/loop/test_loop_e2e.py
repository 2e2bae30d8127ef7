"""The loop closed end to end with real processes: service, monitor and trainer.

1. Steady traffic (200k rows, many windows): no drift flag, no retrain.
2. A 0.25-std shift in one numeric feature, or 10 points of one category's share: flagged
   within two windows of 1,000 rows.
3. A change of labelling concept: retrained and promoted with no human action, recovering at
   least 80 % of the lost accuracy.
"""

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from loop_helpers import MODEL, Client, Loop, wait_for

from chromium import CHROMIUM_FLAGS
from conftest import fresh_home
from modelloop.store.database import open_database
from modelloop.store.events import Events
from modelloop.store.jobs import JobQueue
from modelloop.store.reports import DriftReports
from modelloop.training import synthetic


def _reports(home: Path) -> list[dict[str, Any]]:
    db = open_database(f"sqlite:///{home / 'modelloop.db'}")
    try:
        return list(reversed(DriftReports(db).list(MODEL, limit=100_000)))
    finally:
        db.dispose()


def _jobs(home: Path) -> list[Any]:
    db = open_database(f"sqlite:///{home / 'modelloop.db'}")
    try:
        return JobQueue(db).list(MODEL)
    finally:
        db.dispose()


def _ingested(loop: Loop) -> float:
    text = httpx.get(loop.monitor_url + "/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith("modelloop_monitor_rows_ingested_total{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture
def loop(loop_template: Path, tmp_path: Path) -> Iterator[Loop]:
    running = Loop(fresh_home(loop_template, tmp_path / "home")).start()
    try:
        yield running
    finally:
        running.stop()


def test_steady_traffic_raises_no_flag_and_no_retrain(loop: Loop) -> None:
    client = Client(loop.url)
    sent = 0
    for seed in range(20):
        frame = synthetic.generate(10_000, 1000 + seed)
        client.send(frame, batch=1000, feedback=seed % 5 == 0)
        sent += len(frame)
    wait_for(lambda: _ingested(loop) >= sent, 120, "the monitor to read every row")
    wait_for(lambda: len(_reports(loop.home)) >= 200, 60, "200 windows judged")
    reports = _reports(loop.home)
    flagged = [(r["id"], r["report"]["flagged"]) for r in reports if r["verdict"] == "drift"]
    assert flagged == []
    assert all(r["state"] == "ok" for r in reports)
    assert _jobs(loop.home) == []
    client.close()


@pytest.mark.parametrize(
    ("shift", "feature"),
    [
        (synthetic.Shift(numeric={"tenure_months": 0.25}), "tenure_months"),
        (synthetic.Shift(categorical={"region": ("west", 0.10)}), "region"),
    ],
    ids=["numeric-0.25-std", "category-10-points"],
)
def test_a_shift_is_flagged_within_two_windows(
    loop: Loop, shift: synthetic.Shift, feature: str
) -> None:
    client = Client(loop.url)
    client.send(synthetic.generate(5000, 7), batch=500)
    client.send(synthetic.generate(2000, 8, shift), batch=500)
    wait_for(lambda: len(_reports(loop.home)) >= 7, 60, "seven windows judged")
    reports = _reports(loop.home)[:7]
    flags = [feature in r["report"]["flagged"] for r in reports]
    assert not any(flags[:5]), flags
    assert flags[5] or flags[6], flags
    drift = httpx.get(f"{loop.url}/v1/models/{MODEL}/drift", timeout=5).json()
    assert drift["rows"] == 1000
    client.close()


@pytest.fixture(scope="module")
def concept_change(
    loop_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """Run the concept-change scenario once; the report-page test reuses its service."""
    home = fresh_home(loop_template, tmp_path_factory.mktemp("concept") / "home")
    loop = Loop(home).start()
    client = Client(loop.url)
    try:
        before, _ = client.send(synthetic.generate(3000, 40), batch=200, feedback=True)
        changed = synthetic.Shift(concept=1)
        dropped: list[float] = []
        start = time.monotonic()
        seed = 41
        while time.monotonic() - start < 240:
            acc, versions = client.send(
                synthetic.generate(400, seed, changed), batch=200, feedback=True
            )
            seed += 1
            if versions[-1] != 1:
                break
            dropped.append(acc)
        else:
            raise AssertionError(
                f"no promotion in 240 s:\n{loop.log('monitor')}\n{loop.log('trainer')}"
            )
        promoted_after = time.monotonic() - start
        after, versions = client.send(
            synthetic.generate(3000, 99, changed), batch=200, feedback=True
        )
        yield {
            "loop": loop,
            "before": before,
            "dropped": sum(dropped) / len(dropped),
            "after": after,
            "versions": versions,
            "seconds": promoted_after,
        }
    finally:
        client.close()
        loop.stop()


def test_a_concept_change_is_retrained_and_promoted_on_its_own(
    concept_change: dict[str, Any],
) -> None:
    c = concept_change
    before, dropped, after = c["before"], c["dropped"], c["after"]
    assert before - dropped >= 0.10, c  # the change costs at least 10 points
    recovered = (after - dropped) / (before - dropped)
    print(
        f"\naccuracy before {before:.3f}, after the change {dropped:.3f}, after the "
        f"retrain {after:.3f}: {recovered:.0%} recovered, promoted {c['seconds']:.0f} s "
        "after the change"
    )
    assert recovered >= 0.8, c
    assert set(c["versions"]) == {2}
    loop: Loop = c["loop"]
    db = open_database(f"sqlite:///{loop.home / 'modelloop.db'}")
    try:
        kinds = [e["kind"] for e in reversed(Events(db).list(MODEL))]
        jobs = JobQueue(db).list(MODEL)
    finally:
        db.dispose()
    for kind in ("trigger", "retrain", "promote"):
        assert kind in kinds, kinds
    assert jobs[-1].status == "succeeded"
    assert jobs[-1].result is not None
    assert jobs[-1].result["promoted"] is True
    # the job says what the trainer waited for: labels of predictions made since it was queued
    waited = jobs[-1].result["labels"]
    assert waited["since"] == pytest.approx(jobs[-1].created_at)
    assert waited["waited_for"] > 0
    assert waited["got"] > 0


def test_the_report_page_renders_its_charts_in_a_browser(
    concept_change: dict[str, Any], tmp_path: Path
) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (CI installs it: .ci/tools.sh)")
    loop: Loop = concept_change["loop"]
    page = wait_for(
        lambda: (
            (r := httpx.get(f"{loop.url}/v1/models/{MODEL}/report", timeout=5)).status_code == 200
            and 'class="curbar"' in r.text
            and r.text
        ),
        30,
        "the report page",
    )
    html = tmp_path / "report.html"
    html.write_text(page)
    flags = [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(
        [chromium, *flags, "--dump-dom", html.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert dom.count("<svg") >= 10  # time charts and one distribution per feature
    for mark in ("<polyline", 'class="refbar"', 'class="curbar"'):
        assert mark in dom
    shot = tmp_path / "report.png"
    subprocess.run(
        [chromium, *flags, "--window-size=1280,2400", f"--screenshot={shot}", html.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    from PIL import Image

    image = Image.open(shot).convert("RGB")
    colours = image.getcolors(maxcolors=1_000_000) or []
    assert len(colours) > 50  # charts drawn, not a blank page
