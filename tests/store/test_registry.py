"""The registry on real folders: layout, numbering, hashes, names, promote / rollback, history."""

import json
import os
import shutil
from pathlib import Path

import pytest

from modelloop.store.errors import (
    CorruptVersion,
    InvalidModelName,
    ModelNotFound,
    NoActiveVersion,
    NothingToRollBack,
    RegistryNotWritable,
    VersionNotFound,
)
from modelloop.store.metadata import ModelMetadata, ReferenceProfile
from modelloop.store.names import check_model_name
from modelloop.store.registry import FolderRegistry, Registry, sha256_bytes
from modelloop.store.registry import folder as registry_module

ONNX = b"not really onnx, the registry only stores and hashes the bytes"


def publish(
    registry: Registry,
    meta: ModelMetadata,
    reference: ReferenceProfile,
    name: str = "m",
    payload: bytes = ONNX,
) -> ModelMetadata:
    return registry.publish(name, payload, meta, reference)


def test_layout_is_exactly_as_designed(
    registry: Registry, meta: ModelMetadata, reference: ReferenceProfile
) -> None:
    published = publish(registry, meta, reference, payload=b"graph-1")
    registry.promote("m", published.version, "tester", "first")

    model_dir = registry.root / "m"
    assert published.version == 1
    visible = sorted(p.name for p in model_dir.iterdir() if not p.name.startswith("."))
    assert visible == ["1", "active", "history.jsonl"]
    assert sorted(p.name for p in (model_dir / "1").iterdir()) == [
        "metadata.json",
        "model.onnx",
        "reference.json",
    ]
    assert (model_dir / "1" / "model.onnx").read_bytes() == b"graph-1"
    assert (model_dir / "active").read_text().strip() == "1"

    on_disk = json.loads((model_dir / "1" / "metadata.json").read_text())
    assert on_disk["name"] == "m"
    assert on_disk["version"] == 1
    assert on_disk["onnx_sha256"] == sha256_bytes(b"graph-1")
    assert on_disk["reference_file"] == "reference.json"
    ref = json.loads((model_dir / "1" / "reference.json").read_text())
    assert ref["rows"] == reference.rows
    assert ref["numeric"]["x"]["counts"] == [3, 3]

    lines = (model_dir / "history.jsonl").read_text().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["action"] == "promote"
    assert entry["from_version"] is None
    assert entry["to_version"] == 1
    assert entry["actor"] == "tester"
    assert entry["reason"] == "first"
    assert entry["time"] > 0

    # What the readers see matches the files.
    assert registry.models() == ["m"]
    assert registry.versions("m") == [1]
    assert registry.active("m") == 1
    assert registry.metadata("m", 1).onnx_sha256 == sha256_bytes(b"graph-1")
    assert registry.reference("m", 1) == reference
    assert registry.onnx_bytes("m", 1) == b"graph-1"


def test_versions_are_numbered_from_one_and_never_reused(
    registry: Registry, meta: ModelMetadata, reference: ReferenceProfile
) -> None:
    assert [publish(registry, meta, reference).version for _ in range(3)] == [1, 2, 3]
    # Someone deletes the newest version folder by hand: its number stays used.
    shutil.rmtree(registry.root / "m" / "3")
    assert registry.versions("m") == [1, 2]
    assert publish(registry, meta, reference).version == 4
    # Deleting every version folder does not reset the numbering either.
    for v in (1, 2, 4):
        shutil.rmtree(registry.root / "m" / str(v))
    assert registry.versions("m") == []
    assert publish(registry, meta, reference).version == 5
    assert registry.versions("m") == [5]


def test_numbering_survives_a_lost_counter_file(
    registry: Registry, meta: ModelMetadata, reference: ReferenceProfile
) -> None:
    """Promoted versions are in the history, so their numbers stay used even without the
    counter file."""
    for _ in range(2):
        v = publish(registry, meta, reference).version
        registry.promote("m", v, "t", "r")
    shutil.rmtree(registry.root / "m" / "2")
    (registry.root / "m" / ".last_version").unlink()
    assert publish(registry, meta, reference).version == 3


def test_models_are_independent(
    registry: Registry, meta: ModelMetadata, reference: ReferenceProfile
) -> None:
    assert publish(registry, meta, reference, name="a").version == 1
    assert publish(registry, meta, reference, name="b").version == 1
    assert publish(registry, meta, reference, name="a").version == 2
    assert registry.models() == ["a", "b"]
    assert registry.metadata("b", 1).name == "b"


def test_publish_overrides_name_version_and_hash_from_the_caller(
    registry: Registry, meta: ModelMetadata, reference: ReferenceProfile
) -> None:
    lying = meta.model_copy(update={"name": "other", "version": 99, "onnx_sha256": "f" * 64})
    published = publish(registry, lying, reference, name="m", payload=b"abc")
    assert (published.name, published.version) == ("m", 1)
    assert published.onnx_sha256 == sha256_bytes(b"abc")
    assert registry.metadata("m", 1) == published


def test_sha256_is_checked_on_load(
    registry: Registry, meta: ModelMetadata, reference: ReferenceProfile
) -> None:
    publish(registry, meta, reference, payload=b"good graph")
    path = registry.root / "m" / "1" / "model.onnx"
    path.write_bytes(b"good grapH")
    with pytest.raises(CorruptVersion, match="sha256"):
        registry.onnx_bytes("m", 1)
    # A corrupt version cannot be promoted: the active pointer is not written.
    with pytest.raises(CorruptVersion):
        registry.promote("m", 1, "t", "r")
    assert registry.active("m") is None
    assert registry.history("m") == []
    # Truncated to nothing is corrupt too.
    path.write_bytes(b"")
    with pytest.raises(CorruptVersion):
        registry.onnx_bytes("m", 1)


@pytest.mark.parametrize(
    "name", ["../x", "A", "", "a" * 64, "a/b", "-a", "_a", "a b", "a.b", "..", "/etc", "a\n"]
)
def test_invalid_model_names_are_rejected_before_touching_a_path(
    tmp_path: Path, name: str, meta: ModelMetadata, reference: ReferenceProfile
) -> None:
    registry = FolderRegistry(tmp_path / "registry")
    with pytest.raises(InvalidModelName):
        check_model_name(name)
    with pytest.raises(InvalidModelName):
        registry.publish(name, ONNX, meta, reference)
    with pytest.raises(InvalidModelName):
        registry.versions(name)
    with pytest.raises(InvalidModelName):
        registry.promote(name, 1, "t", "r")
    with pytest.raises(InvalidModelName):
        registry.rollback(name, "t", "r")
    with pytest.raises(InvalidModelName):
        registry.metadata(name, 1)
    # Nothing was created anywhere: not the registry, not a path outside it.
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["a", "a-b_1", "0", "default", "a" * 63, "9lives"])
def test_valid_model_names_are_accepted(
    registry: Registry, name: str, meta: ModelMetadata, reference: ReferenceProfile
) -> None:
    assert check_model_name(name) == name
    assert publish(registry, meta, reference, name=name).version == 1
    assert (registry.root / name / "1" / "model.onnx").is_file()


def test_promote_rollback_and_history(
    registry: Registry, meta: ModelMetadata, reference: ReferenceProfile
) -> None:
    for expected in (1, 2, 3):
        v = publish(registry, meta, reference).version
        assert v == expected
        entry = registry.promote("m", v, "alice", f"promote {v}")
        assert (entry.from_version, entry.to_version) == (v - 1 or None, v)
    assert registry.active("m") == 3
    assert registry.rollback_target("m") == 2

    back = registry.rollback("m", "bob", "v3 is bad")
    assert (back.action, back.from_version, back.to_version) == ("rollback", 3, 2)
    assert registry.active("m") == 2
    back = registry.rollback("m", "bob", "v2 is bad too")
    assert (back.from_version, back.to_version) == (2, 1)
    assert registry.active("m") == 1
    with pytest.raises(NothingToRollBack):
        registry.rollback("m", "bob", "again")
    assert registry.active("m") == 1

    history = registry.history("m")
    assert [(h.action, h.from_version, h.to_version) for h in history] == [
        ("promote", None, 1),
        ("promote", 1, 2),
        ("promote", 2, 3),
        ("rollback", 3, 2),
        ("rollback", 2, 1),
    ]
    assert [h.actor for h in history] == ["alice"] * 3 + ["bob"] * 2
    assert history[3].reason == "v3 is bad"
    times = [h.time for h in history]
    assert times == sorted(times)
    # The file has one JSON object per line, one line per action.
    assert len((registry.root / "m" / "history.jsonl").read_text().splitlines()) == 5

    # Promoting again after the rollbacks starts a new stack: rollback returns to 1.
    registry.promote("m", 3, "alice", "fixed")
    assert registry.rollback("m", "bob", "no").to_version == 1


def test_rollback_with_nothing_earlier(
    registry: Registry, meta: ModelMetadata, reference: ReferenceProfile
) -> None:
    with pytest.raises(ModelNotFound):
        registry.rollback("m", "t", "r")
    publish(registry, meta, reference)
    with pytest.raises(NothingToRollBack):
        registry.rollback("m", "t", "r")
    registry.promote("m", 1, "t", "r")
    with pytest.raises(NothingToRollBack):
        registry.rollback("m", "t", "r")
    assert registry.active("m") == 1


def test_missing_models_and_versions(
    registry: Registry, meta: ModelMetadata, reference: ReferenceProfile
) -> None:
    assert registry.models() == []
    assert registry.versions("nope") == []
    assert registry.active("nope") is None
    with pytest.raises(ModelNotFound):
        registry.metadata("nope", 1)
    with pytest.raises(ModelNotFound):
        registry.require_active("nope")
    publish(registry, meta, reference)
    with pytest.raises(NoActiveVersion):
        registry.require_active("m")
    with pytest.raises(VersionNotFound):
        registry.metadata("m", 7)
    with pytest.raises(VersionNotFound):
        registry.promote("m", 7, "t", "r")
    assert registry.active("m") is None


def test_active_is_replaced_atomically(
    registry: Registry,
    meta: ModelMetadata,
    reference: ReferenceProfile,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`active` is never written in place: a new file is written, then renamed over it."""
    for _ in range(2):
        publish(registry, meta, reference)
    registry.promote("m", 1, "t", "r")
    active = registry.root / "m" / "active"
    inode_before = active.stat().st_ino

    seen: list[tuple[str, str, str]] = []
    real_replace = os.replace

    def watching_replace(src: str | Path, dst: str | Path) -> None:
        # At the moment of the swap the old pointer is still whole and the new one is complete.
        seen.append((Path(dst).read_text(), Path(src).read_text(), Path(src).name))
        real_replace(src, dst)

    monkeypatch.setattr(registry_module.os, "replace", watching_replace)
    registry.promote("m", 2, "t", "r")

    assert seen == [("1\n", "2\n", seen[0][2])]
    assert seen[0][2].startswith(".")  # the new pointer was a hidden temporary file
    assert active.read_text() == "2\n"
    assert active.stat().st_ino != inode_before
    leftovers = [p.name for p in (registry.root / "m").iterdir() if p.name.startswith(".active")]
    assert leftovers == []


def test_a_failed_publish_leaves_nothing(
    registry: Registry,
    meta: ModelMetadata,
    reference: ReferenceProfile,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken_rename(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(registry_module.os, "rename", broken_rename)
    with pytest.raises(OSError, match="No space"):
        publish(registry, meta, reference)
    monkeypatch.undo()
    model_dir = registry.root / "m"
    assert [p.name for p in model_dir.iterdir() if p.name.startswith(".tmp-")] == []
    assert registry.versions("m") == []
    assert publish(registry, meta, reference).version == 1


def test_registry_under_a_regular_file_is_not_writable(
    tmp_path: Path, meta: ModelMetadata, reference: ReferenceProfile
) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("I am a file, not a folder")
    registry = FolderRegistry(blocker / "registry")
    with pytest.raises(RegistryNotWritable, match="not writable"):
        registry.publish("m", ONNX, meta, reference)
    assert blocker.read_text() == "I am a file, not a folder"


def test_stale_temporary_folders_are_swept(
    registry: Registry, meta: ModelMetadata, reference: ReferenceProfile
) -> None:
    publish(registry, meta, reference)
    model_dir = registry.root / "m"
    stale, fresh = model_dir / ".tmp-stale", model_dir / ".tmp-fresh"
    for d in (stale, fresh):
        d.mkdir()
        (d / "model.onnx").write_bytes(b"half")
    two_hours_ago = os.stat(stale).st_mtime - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    publish(registry, meta, reference)
    assert not stale.exists()
    assert fresh.exists()  # may belong to a publisher still at work
    assert registry.versions("m") == [1, 2]
