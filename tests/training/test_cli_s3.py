"""`modelloop train` and `modelloop models …` on an S3 registry, as a user runs them."""

import json
from pathlib import Path

from test_train_cli import modelloop

from modelloop.store.registry import open_registry


def test_train_list_show_promote_rollback_on_the_bucket(
    tmp_path: Path, s3_url: str, s3_env: dict[str, str]
) -> None:
    env = {**s3_env, "MODELLOOP_REGISTRY": s3_url}
    first = modelloop(tmp_path, "train", "--dataset", "iris", "--model", "iris", **env)
    assert first.returncode == 0, first.stderr
    assert f"registry: {s3_url}/iris/1" in first.stdout
    second = modelloop(
        tmp_path,
        "train",
        "--dataset",
        "iris",
        "--model",
        "iris",
        "--seed",
        "1",
        "--estimator",
        "logreg",
        "--promote",
        "never",
        **env,
    )
    assert second.returncode == 0, second.stderr
    registry = open_registry(s3_url)
    assert registry.versions("iris") == [1, 2]
    assert registry.active("iris") == 1
    assert not (tmp_path / "registry").exists()  # nothing went to the default folder

    listed = modelloop(tmp_path, "models", "list", "--json", **env)
    assert listed.returncode == 0, listed.stderr
    assert [(m["model"], m["active"], m["versions"]) for m in json.loads(listed.stdout)] == [
        ("iris", 1, [1, 2])
    ]
    promoted = modelloop(tmp_path, "models", "promote", "iris", "2", **env)
    assert promoted.returncode == 0, promoted.stderr
    assert "iris: active version 1 -> 2" in promoted.stdout
    rolled = modelloop(tmp_path, "models", "rollback", "iris", **env)
    assert rolled.returncode == 0, rolled.stderr
    assert "iris: active version 2 -> 1" in rolled.stdout
    shown = modelloop(tmp_path, "models", "show", "iris", "--json", **env)
    assert shown.returncode == 0, shown.stderr
    body = json.loads(shown.stdout)
    assert body["active"] == 1
    assert [h["action"] for h in body["history"]] == ["promote", "promote", "rollback"]


def test_train_into_a_missing_bucket_is_one_line_and_exit_2(
    tmp_path: Path, s3_env: dict[str, str]
) -> None:
    env = {**s3_env, "MODELLOOP_REGISTRY": "s3://no-such-bucket/models"}
    r = modelloop(tmp_path, "train", "--dataset", "iris", "--rows", "200", **env)
    assert r.returncode == 2
    errors = [line for line in r.stderr.splitlines() if line.startswith("modelloop: error:")]
    assert len(errors) == 1, r.stderr
    assert "no-such-bucket" in errors[0]
    assert "Traceback" not in r.stderr
