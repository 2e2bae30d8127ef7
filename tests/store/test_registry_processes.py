"""The registry under real concurrent processes: distinct versions, and kills leave nothing."""

import fcntl
import json
import os
import signal
import time
from pathlib import Path

import pytest
from store_helpers import make_metadata, make_reference, spawn_python

from modelloop.store.registry import FolderRegistry, Registry, sha256_bytes

# A child publisher: waits for a common start time so all publish at once, then publishes a
# payload of its own and prints the version it got.
PUBLISHER = """
import sys, time
sys.path.insert(0, sys.argv[4])
from store_helpers import make_metadata, make_reference
from modelloop.store.registry import FolderRegistry, Registry

root, index, start = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
payload = (f"payload of publisher {index};" * 40_000).encode()
meta, reference = make_metadata(), make_reference()
while time.time() < start:
    time.sleep(0.001)
published = FolderRegistry(root).publish("m", payload, meta, reference)
print(published.version, flush=True)
"""

# A child publisher that stalls at a chosen point (announcing it through a marker file) so the
# test can SIGKILL it there.
STALLING_PUBLISHER = """
import os, sys, time
sys.path.insert(0, sys.argv[4])
from store_helpers import make_metadata, make_reference
from modelloop.store.registry import FolderRegistry, Registry

root, marker, phase = sys.argv[1], sys.argv[2], sys.argv[3]

def stall(*args, **kwargs):
    open(marker, "w").close()
    time.sleep(120)

if phase == "writing":  # model.onnx written, the rest of the temporary folder not yet
    os.fsync = stall
elif phase == "renaming":  # everything written, the lock held, the rename not yet done
    os.rename = stall
FolderRegistry(root).publish("m", b"x" * 5_000_000, make_metadata(), make_reference())
print("published although it should have been killed", flush=True)
"""

HERE = str(Path(__file__).resolve().parent)


def _check_complete(registry: Registry, version: int) -> bytes:
    meta = registry.metadata("m", version)
    assert meta.version == version
    data = registry.onnx_bytes("m", version)  # raises if the hash does not match
    assert sha256_bytes(data) == meta.onnx_sha256
    assert registry.reference("m", version).rows == make_reference().rows
    return data


def test_concurrent_publishers_get_distinct_versions(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    registry = FolderRegistry(root)
    n = 6
    start = time.time() + 1.5  # time for every interpreter to start and import
    children = [spawn_python(PUBLISHER, str(root), str(i), str(start), HERE) for i in range(n)]

    # Meanwhile read the registry as a server would: every visible version is complete.
    checked: set[int] = set()
    while any(c.poll() is None for c in children):
        for v in registry.versions("m"):
            if v not in checked:
                _check_complete(registry, v)
                checked.add(v)
        time.sleep(0.005)

    versions: dict[int, int] = {}
    for i, child in enumerate(children):
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        versions[i] = int(out.strip())
    assert sorted(versions.values()) == list(range(1, n + 1))
    assert registry.versions("m") == list(range(1, n + 1))
    for i, v in versions.items():
        data = _check_complete(registry, v)
        assert data == (f"payload of publisher {i};" * 40_000).encode()
    model_dir = root / "m"
    assert [p.name for p in model_dir.iterdir() if p.name.startswith(".tmp-")] == []


@pytest.mark.parametrize("phase", ["writing", "renaming"])
def test_a_publisher_killed_midway_leaves_nothing_visible(tmp_path: Path, phase: str) -> None:
    root = tmp_path / "registry"
    registry = FolderRegistry(root)
    first = registry.publish("m", b"v1", make_metadata(), make_reference())
    registry.promote("m", first.version, "t", "r")
    marker = tmp_path / "stalled"

    child = spawn_python(STALLING_PUBLISHER, str(root), str(marker), phase, HERE)
    try:
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline, "the publisher never reached the stall point"
            time.sleep(0.01)
        model_dir = root / "m"
        # The child is mid-publish: its temporary folder exists, but no new version shows.
        assert [p for p in model_dir.iterdir() if p.name.startswith(".tmp-")]
        assert registry.versions("m") == [1]
        os.kill(child.pid, signal.SIGKILL)
        out, _ = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == -signal.SIGKILL
    assert "published" not in out

    # Nothing visible: no new version folder, the active pointer and history untouched.
    assert registry.versions("m") == [1]
    assert sorted(p.name for p in model_dir.iterdir() if not p.name.startswith(".")) == [
        "1",
        "active",
        "history.jsonl",
    ]
    assert registry.active("m") == 1
    assert len(registry.history("m")) == 1

    # The dead publisher's lock is gone with it ...
    fd = os.open(model_dir / ".lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
    # ... and the next publish succeeds with the next number.
    later = registry.publish("m", b"v2", make_metadata(), make_reference())
    assert later.version == 2
    assert registry.onnx_bytes("m", 2) == b"v2"
    meta_text = (model_dir / "2" / "metadata.json").read_text()
    assert json.loads(meta_text)["version"] == 2
