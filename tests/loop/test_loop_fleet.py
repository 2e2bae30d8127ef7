"""A fleet in real processes, as in Kubernetes: two service replicas, the monitor and the
trainer, each with its own home, sharing nothing but PostgreSQL and a bucket (SeaweedFS).

A concept change from traffic is detected, retrained, promoted, and both replicas swap with no
failed request; then the object store stops for 30 s under load: no request fails and no log
row is lost."""

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from loop_helpers import LOOP_SETTINGS, MODEL, Client, Processes, free_port, instances, wait_for

from modelloop.store.database import open_database
from modelloop.store.log import PredictionLog
from modelloop.store.registry import open_registry
from modelloop.training import synthetic
from seaweed import Weed, upload_registry

OUTAGE_SECONDS = 30.0
PG_ADMIN_URL = os.environ.get("MODELLOOP_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def fleet_db() -> Iterator[str]:
    name = f"modelloop_fleet_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as e:
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {e}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Fleet(Processes):
    def __init__(self, root: Path, env: dict[str, str]) -> None:
        super().__init__(root)
        self.root = root
        base = {k: v for k, v in os.environ.items() if not k.startswith("MODELLOOP_")}
        self.env = {**base, **LOOP_SETTINGS, **env}
        self.ports = {"serve-a": free_port(), "serve-b": free_port(), "monitor": free_port()}

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def start(self) -> "Fleet":
        exe = str(Path(sys.executable).with_name("modelloop"))
        for name in ("serve-a", "serve-b", "monitor", "trainer"):
            home = self.root / name
            home.mkdir(parents=True)
            env = {**self.env, "MODELLOOP_HOME": str(home)}
            if name.startswith("serve"):
                env["MODELLOOP_PORT"] = str(self.ports[name])
                env["MODELLOOP_GRPC_PORT"] = str(free_port())  # each replica its own
            env["MODELLOOP_MONITOR_PORT"] = str(self.ports["monitor"])
            with open(self.root / f"{name}.log", "wb") as out:
                self.procs[name] = subprocess.Popen(
                    [exe, name.split("-")[0]],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=home,
                )
        for name in ("serve-a", "serve-b"):
            self._wait(self.url(name) + "/v2/health/ready")
        self._wait(self.url("monitor") + "/metrics")
        return self


class Load:
    """Threads sending 1-row predictions to both replicas until stopped."""

    def __init__(self, urls: list[str]) -> None:
        rows, _ = instances(synthetic.generate(2000, 500))
        self.rows = rows
        self.urls = urls
        self.ok = 0
        self.failed: list[str] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(u,)) for u in urls]

    def _run(self, url: str) -> None:
        i = 0
        with httpx.Client(base_url=url, timeout=60.0) as http:
            while not self.stopping.is_set():
                row = self.rows[i % len(self.rows)]
                i += 1
                try:
                    r = http.post(f"/v1/models/{MODEL}/predict", json={"instances": [row]})
                except httpx.TransportError as e:
                    with self.lock:
                        self.failed.append(repr(e))
                    continue
                with self.lock:
                    if r.status_code == 200:
                        self.ok += 1
                    else:
                        self.failed.append(f"{r.status_code} {r.text[:200]}")

    def __enter__(self) -> "Load":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(60)


def _logged(db_url: str) -> int:
    db = open_database(db_url)
    try:
        return PredictionLog(db).count(MODEL)
    finally:
        db.dispose()


@pytest.mark.slow
@pytest.mark.postgres
def test_a_fleet_on_a_bucket_retrains_swaps_and_rides_out_a_store_outage(
    loop_template: Path, tmp_path: Path, weed: Weed, s3_env: dict[str, str], fleet_db: str
) -> None:
    url = weed.url()
    upload_registry(loop_template / "registry", url)
    fleet = Fleet(
        tmp_path, {**s3_env, "MODELLOOP_REGISTRY": url, "MODELLOOP_DATABASE_URL": fleet_db}
    ).start()
    sent = 0
    try:
        a, b = Client(fleet.url("serve-a")), Client(fleet.url("serve-b"))
        for i, client in enumerate((a, b)):
            client.send(synthetic.generate(1500, 40 + i), batch=250, feedback=True)
            sent += 1500
        changed = synthetic.Shift(concept=1)
        seed, start = 100, time.monotonic()
        served: dict[str, int] = {}
        while len(served) < 2 or 1 in served.values():
            assert time.monotonic() - start < 300, (
                f"no promotion on both replicas in 300 s: {served}\n{fleet.log('monitor')}\n"
                f"{fleet.log('trainer')}"
            )
            for name, client in (("a", a), ("b", b)):
                _, versions = client.send(
                    synthetic.generate(200, seed, changed), batch=200, feedback=True
                )
                seed += 1
                sent += 200
                served[name] = versions[-1]
        assert served == {"a": 2, "b": 2}, served
        registry = open_registry(url)
        assert registry.active(MODEL) == 2
        assert registry.metadata(MODEL, 2).trigger != "manual"

        with Load([fleet.url("serve-a"), fleet.url("serve-b")]) as load:
            wait_for(lambda: load.ok > 200, 30, "load running")
            weed.pause()
            try:
                time.sleep(OUTAGE_SECONDS)
                during = load.ok
            finally:
                weed.resume()
            time.sleep(3)
        assert load.failed == [], load.failed[:5]
        assert during > 500
        sent += load.ok
        for name in ("serve-a", "serve-b"):
            metrics = httpx.get(fleet.url(name) + "/metrics", timeout=10).text
            assert "modelloop_registry_errors_total{" in metrics
        wait_for(lambda: _logged(fleet_db) == sent, 60, f"all {sent} rows logged", every=1)
        print(
            f"\nfleet: promoted v2 {time.monotonic() - start:.0f} s after the change; "
            f"{load.ok} requests under load, {during} of them before the store came back"
        )
        a.close()
        b.close()
    finally:
        weed.resume()
        fleet.stop()
