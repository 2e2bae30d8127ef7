"""What only the S3 backend has: refusals named in one line, the object layout, cheap watches."""

import subprocess
import sys
from pathlib import Path

import obstore
import pytest

from modelloop.store.errors import RegistryUnavailable
from modelloop.store.metadata import ModelMetadata, ReferenceProfile
from modelloop.store.registry import open_registry
from modelloop.store.registry.s3 import S3Registry
from seaweed import BUCKET, Weed


def test_a_wrong_secret_is_refused_naming_the_bucket(
    weed: Weed, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in weed.env(secret="not-the-secret").items():
        monkeypatch.setenv(key, value)
    registry = open_registry(weed.url())
    with pytest.raises(RegistryUnavailable, match=f"access to bucket '{BUCKET}' refused"):
        registry.check()
    with pytest.raises(RegistryUnavailable, match="refused"):
        registry.models()


def test_a_missing_bucket_is_one_clear_error(s3_env: dict[str, str]) -> None:
    registry = open_registry("s3://no-such-bucket/x")
    with pytest.raises(RegistryUnavailable, match="bucket 'no-such-bucket' does not exist"):
        registry.check()
    with pytest.raises(RegistryUnavailable, match="does not exist"):
        registry.active("m")


def test_an_unreachable_store_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # discard: nothing listens
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    registry = S3Registry.from_url("s3://b/p", timeout_seconds=1)
    with pytest.raises(RegistryUnavailable, match="s3://b/p"):
        registry.models()


@pytest.mark.parametrize(
    "argv", [["models", "list"], ["models", "show", "m"], ["trainer"], ["monitor"], ["serve"]]
)
def test_the_cli_says_it_in_one_line_and_exits_2(
    s3_env: dict[str, str], argv: list[str], tmp_path: Path
) -> None:
    env = {**s3_env, "MODELLOOP_REGISTRY": "s3://no-such-bucket/p", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "modelloop.cli", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "no-such-bucket" in lines[0]
    assert "Traceback" not in done.stderr


def test_the_object_layout(s3_url: str, meta: ModelMetadata, reference: ReferenceProfile) -> None:
    registry = open_registry(s3_url)
    assert isinstance(registry, S3Registry)
    registry.publish("m", b"graph", meta, reference)
    registry.promote("m", 1, "t", "first")
    keys = sorted(m["path"] for batch in obstore.list(registry.store, None) for m in batch)
    assert keys == [
        "m/1/claim",
        "m/1/metadata.json",
        "m/1/model.onnx",
        "m/1/reference.json",
        "m/active",
        "m/history/0000000001.json",
    ]


def test_an_unchanged_pointer_costs_a_304(
    s3_url: str, meta: ModelMetadata, reference: ReferenceProfile
) -> None:
    writer = open_registry(s3_url)
    writer.publish("m", b"graph", meta, reference)
    writer.publish("m", b"graph", meta, reference)
    writer.promote("m", 1, "t", "first")
    reader = open_registry(s3_url)
    assert isinstance(reader, S3Registry)
    assert reader.active("m") == 1
    etag = reader._pointers["m"][0]
    assert etag
    with pytest.raises(obstore.exceptions.NotModifiedError):
        obstore.get(reader.store, "m/active", options={"if_none_match": etag})
    assert reader.active("m") == 1
    writer.promote("m", 2, "t", "second")
    assert reader.active("m") == 2
    assert reader._pointers["m"][0] != etag
