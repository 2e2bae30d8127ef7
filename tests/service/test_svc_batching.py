"""The batcher with a real ONNX session: merged calls, and a request that fails alone.

Input checks keep what ONNX Runtime refuses out of a batch (see test_svc_hostile.py); these
tests hand the batcher such a value directly (a lone surrogate, which the runtime cannot
encode as UTF-8), to prove that a failing merged call costs only the faulty request.
"""

import asyncio
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from service_helpers import FEATURES, MODEL, row

from modelloop.service.batching import Batcher
from modelloop.service.errors import Unprocessable
from modelloop.service.loading import load_version
from modelloop.service.metrics import ServiceMetrics
from modelloop.service.served import Outputs, ServedModel
from modelloop.store.registry import FolderRegistry

POISON = "\ud800"


@pytest.fixture
def metrics() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def served(template_home: Path, metrics: CollectorRegistry) -> ServedModel:
    loaded = load_version(FolderRegistry(template_home / "registry"), MODEL, 1)
    return ServedModel(loaded, ServiceMetrics(metrics))


def onnx_calls(metrics: CollectorRegistry) -> tuple[float, float]:
    """(calls, rows) of the ONNX Runtime calls that succeeded so far."""
    count = metrics.get_sample_value("modelloop_batch_rows_count", {"model": MODEL}) or 0.0
    rows = metrics.get_sample_value("modelloop_batch_rows_sum", {"model": MODEL}) or 0.0
    return count, rows


def columns(rows: list[dict[str, Any]]) -> list[list[Any]]:
    return [[r[name] for r in rows] for name in FEATURES]


async def score_together(batcher: Batcher, requests: list[list[dict[str, Any]]]) -> list[Any]:
    """Every request submitted in one turn of the event loop (so they merge), and what each
    got back: its outputs or its exception."""
    return await asyncio.gather(
        *(batcher.predict(columns(rows), len(rows)) for rows in requests),
        return_exceptions=True,
    )


def assert_same(got: Outputs, expected: Outputs) -> None:
    assert got.labels == expected.labels
    assert got.probabilities is not None
    assert expected.probabilities is not None
    for g, e in zip(got.probabilities, expected.probabilities, strict=True):
        assert g == pytest.approx(e, abs=1e-6)


@pytest.mark.parametrize("inline_rows", [1000, 1], ids=["on the loop", "in a thread"])
def test_a_poisoned_request_fails_alone_in_a_merged_batch(
    served: ServedModel, metrics: CollectorRegistry, inline_rows: int
) -> None:
    good = [[row(i), row(i + 100)] for i in range(20)]
    bad = [row(7), dict(row(8), region=POISON)]
    with pytest.raises(UnicodeEncodeError):  # the runtime does refuse it
        served.loaded.session.run(None, served.feeds(columns(bad)))
    requests = [*good[:10], bad, *good[10:]]
    batcher = Batcher(served, max_rows=256, max_wait=0.0, inline_rows=inline_rows)
    results = asyncio.run(score_together(batcher, requests))

    assert isinstance(results[10], Unprocessable), results[10]
    assert results[10].status == 422
    assert results[10].message.startswith("the model cannot score this input: "), results[10]
    assert "surrogates not allowed" in results[10].message
    for rows, result in zip(good, results[:10] + results[11:], strict=True):
        assert isinstance(result, Outputs), result
        assert_same(result, served.run(columns(rows), len(rows)))
    # The merged call failed; each request then ran alone (20 good calls of 2 rows), and the
    # checks above ran each good request once more.
    assert onnx_calls(metrics) == (20 + 20, 40 + 40)


def test_requests_merge_into_one_call_when_all_are_good(
    served: ServedModel, metrics: CollectorRegistry
) -> None:
    batcher = Batcher(served, max_rows=256, max_wait=0.0, inline_rows=1000)
    results = asyncio.run(score_together(batcher, [[row(i)] for i in range(30)]))
    assert onnx_calls(metrics) == (1, 30)  # one ONNX call for the 30 requests
    for i, result in enumerate(results):
        assert isinstance(result, Outputs)
        assert_same(result, served.run(columns([row(i)]), 1))


@pytest.mark.parametrize("enabled", [True, False], ids=["alone in its batch", "batching off"])
def test_a_request_refused_on_its_own_is_422(served: ServedModel, enabled: bool) -> None:
    batcher = Batcher(served, max_rows=256, max_wait=0.0, inline_rows=1000, enabled=enabled)
    (result,) = asyncio.run(score_together(batcher, [[dict(row(1), plan=POISON)]]))
    assert isinstance(result, Unprocessable), result
    assert "the model cannot score this input" in result.message
