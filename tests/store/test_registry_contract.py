"""The registry contract, run on both backends: a folder and a real S3 store (SeaweedFS)."""

import itertools
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import obstore
import pytest
from store_helpers import make_metadata

from modelloop.store.errors import (
    CorruptVersion,
    InvalidModelName,
    ModelNotFound,
    NoActiveVersion,
    NothingToRollBack,
    VersionNotFound,
)
from modelloop.store.metadata import ModelMetadata, ReferenceProfile
from modelloop.store.registry import FolderRegistry, Registry, open_registry, sha256_bytes
from modelloop.store.registry.s3 import S3Registry

ONNX = b"graph bytes: the registry stores and hashes them, it does not parse them"


def put_raw(registry: Registry, key: str, data: bytes) -> None:
    """Write a file behind the registry's back, as a stray tool or a bit flip would."""
    if isinstance(registry, S3Registry):
        obstore.put(registry.store, key, data)
    else:
        assert isinstance(registry, FolderRegistry)
        path = registry.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def test_publish_then_read_back(
    any_registry: Registry, meta: ModelMetadata, reference: ReferenceProfile
) -> None:
    assert any_registry.models() == []
    published = any_registry.publish("m", ONNX, meta, reference)
    assert published.version == 1
    assert published.onnx_sha256 == sha256_bytes(ONNX)
    assert any_registry.models() == ["m"]
    assert any_registry.versions("m") == [1]
    assert any_registry.metadata("m", 1) == published
    assert any_registry.onnx_bytes("m", 1) == ONNX
    assert any_registry.reference("m", 1) == reference
    assert any_registry.active("m") is None
    with pytest.raises(NoActiveVersion):
        any_registry.require_active("m")
    with pytest.raises(VersionNotFound):
        any_registry.metadata("m", 7)
    with pytest.raises(ModelNotFound):
        any_registry.metadata("other", 1)
    with pytest.raises(ModelNotFound):
        any_registry.require_active("other")


def test_a_polling_reader_never_sees_a_partial_version(
    any_registry: Registry, meta: ModelMetadata, reference: ReferenceProfile
) -> None:
    payloads = [bytes([i]) * 2_000_000 for i in range(1, 6)]
    errors: list[str] = []
    seen: set[int] = set()
    done = threading.Event()
    reader = open_registry(any_registry.location)  # its own client, as another process has

    def poll() -> None:
        while not done.is_set():
            for v in reader.versions("m"):
                try:
                    data = reader.onnx_bytes("m", v)
                except Exception as e:
                    errors.append(f"v{v}: {e!r}")
                    continue
                if data != payloads[v - 1]:
                    errors.append(f"v{v}: other bytes")
                seen.add(v)

    thread = threading.Thread(target=poll)
    thread.start()
    try:
        for payload in payloads:
            any_registry.publish("m", payload, meta, reference)
    finally:
        done.set()
        thread.join()
    assert errors == []
    assert reader.versions("m") == [1, 2, 3, 4, 5]


def test_concurrent_publishers_get_distinct_numbers(
    any_registry: Registry, reference: ReferenceProfile
) -> None:
    location = any_registry.location
    barrier = threading.Barrier(8)

    def publish(i: int) -> int:
        own = open_registry(location)  # each publisher its own client
        barrier.wait()
        return own.publish("m", ONNX + bytes([i]), make_metadata(), reference).version

    with ThreadPoolExecutor(8) as pool:
        numbers = list(pool.map(publish, range(8)))
    assert sorted(numbers) == list(range(1, 9))
    assert any_registry.versions("m") == list(range(1, 9))


def test_concurrent_promoters_lose_no_history_entry(
    any_registry: Registry, meta: ModelMetadata, reference: ReferenceProfile
) -> None:
    for _ in range(6):
        any_registry.publish("m", ONNX, meta, reference)
    location = any_registry.location
    barrier = threading.Barrier(6)

    def promote(version: int) -> None:
        own = open_registry(location)
        barrier.wait()
        for _ in range(3):
            own.promote("m", version, f"promoter-{version}", "race")

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(promote, range(1, 7)))
    history = open_registry(location).history("m")
    assert len(history) == 18
    expected = sorted(f"promoter-{v}" for v in range(1, 7) for _ in range(3))
    assert sorted(h.actor for h in history) == expected
    # Each entry starts where the one before it ended: no update was lost in between.
    assert history[0].from_version is None
    for before, after in itertools.pairwise(history):
        assert after.from_version == before.to_version
    assert any_registry.active("m") == history[-1].to_version


def test_rollback_walks_back_the_promotions(
    any_registry: Registry, meta: ModelMetadata, reference: ReferenceProfile
) -> None:
    for _ in range(3):
        any_registry.publish("m", ONNX, meta, reference)
    with pytest.raises(NothingToRollBack):
        any_registry.rollback("m", "t", "nothing yet")
    for v in (1, 2, 3):
        any_registry.promote("m", v, "t", f"to {v}")
    assert any_registry.rollback_target("m") == 2
    entry = any_registry.rollback("m", "t", "bad")
    assert (entry.action, entry.from_version, entry.to_version) == ("rollback", 3, 2)
    assert any_registry.active("m") == 2
    assert any_registry.rollback("m", "t", "worse").to_version == 1
    with pytest.raises(NothingToRollBack):
        any_registry.rollback("m", "t", "no more")
    any_registry.promote("m", 3, "t", "again")
    assert any_registry.rollback_target("m") == 1
    actions = [(h.action, h.to_version) for h in any_registry.history("m")]
    assert actions == [
        ("promote", 1),
        ("promote", 2),
        ("promote", 3),
        ("rollback", 2),
        ("rollback", 1),
        ("promote", 3),
    ]
    with pytest.raises(ModelNotFound):
        any_registry.rollback("nope", "t", "no such model")


def test_a_corrupt_graph_is_detected_and_never_promoted(
    any_registry: Registry, meta: ModelMetadata, reference: ReferenceProfile
) -> None:
    any_registry.publish("m", ONNX, meta, reference)
    any_registry.promote("m", 1, "t", "good")
    any_registry.publish("m", ONNX, meta, reference)
    put_raw(any_registry, "m/2/model.onnx", b"flipped bits")
    with pytest.raises(CorruptVersion, match="sha256"):
        any_registry.onnx_bytes("m", 2)
    with pytest.raises(CorruptVersion):
        any_registry.promote("m", 2, "t", "corrupt")
    assert any_registry.active("m") == 1


@pytest.mark.parametrize("name", ["", "A", "../etc", "a/b", "-x", "x" * 64, "a b", "lost+found"])
def test_names_are_validated_before_they_touch_the_store(
    any_registry: Registry, meta: ModelMetadata, reference: ReferenceProfile, name: str
) -> None:
    with pytest.raises(InvalidModelName):
        any_registry.publish(name, ONNX, meta, reference)
    with pytest.raises(InvalidModelName):
        any_registry.versions(name)
    with pytest.raises(InvalidModelName):
        any_registry.active(name)


def test_a_stray_non_model_entry_is_skipped_and_logged_once(
    any_registry: Registry,
    meta: ModelMetadata,
    reference: ReferenceProfile,
    caplog: pytest.LogCaptureFixture,
) -> None:
    any_registry.publish("m", ONNX, meta, reference)
    put_raw(any_registry, "lost+found/junk", b"fsck left this")
    put_raw(any_registry, "Not A Model/1/metadata.json", b"{}")
    put_raw(any_registry, "empty-model/readme.txt", b"no versions here")
    with caplog.at_level(logging.WARNING, logger="modelloop.store"):
        assert any_registry.models() == ["m"]
        assert any_registry.models() == ["m"]
    skipped = [r.getMessage() for r in caplog.records if "skipping" in r.getMessage()]
    assert len(skipped) == 2
    assert any("lost+found" in m for m in skipped)


def test_a_version_number_is_never_reused(
    any_registry: Registry, meta: ModelMetadata, reference: ReferenceProfile
) -> None:
    any_registry.publish("m", ONNX, meta, reference)
    # A publisher died after taking number 2 (S3: its claim; a folder: its temporary folder
    # never renamed, so 2 is still free there and is taken next — what matters is that a
    # published number is never given out again).
    if isinstance(any_registry, S3Registry):
        put_raw(any_registry, "m/2/claim", b"")
        assert any_registry.versions("m") == [1]
        assert any_registry.publish("m", ONNX, meta, reference).version == 3
    else:
        assert any_registry.publish("m", ONNX, meta, reference).version == 2
    again = open_registry(any_registry.location)
    numbers = [again.publish("m", ONNX, meta, reference).version for _ in range(2)]
    assert len(set(numbers + again.versions("m")[:-2])) == len(again.versions("m"))


def test_writability_probe_passes_on_a_writable_store(any_registry: Registry) -> None:
    any_registry.check()
    any_registry.check_writable()
    assert any_registry.models() == []


def test_open_registry_picks_the_backend(tmp_path: Path, s3_url: str) -> None:
    assert isinstance(open_registry(tmp_path), FolderRegistry)
    assert isinstance(open_registry(str(tmp_path)), FolderRegistry)
    s3 = open_registry(s3_url)
    assert isinstance(s3, S3Registry)
    assert s3.location == s3_url
