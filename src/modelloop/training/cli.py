"""`modelloop train`."""

import argparse
from pathlib import Path

import orjson

from modelloop.cli_output import EXIT_REFUSED, default_actor, fail, progress
from modelloop.store.database import DatabaseError, open_database
from modelloop.store.errors import StoreError
from modelloop.store.events import Events
from modelloop.store.registry import open_registry
from modelloop.store.settings import StoreSettings
from modelloop.training.errors import ParityError, TrainingError
from modelloop.training.evaluate import format_table
from modelloop.training.pipeline import TrainRequest, TrainResult, run_training


def _split(text: str) -> tuple[str, ...]:
    return tuple(c.strip() for c in text.split(",") if c.strip())


def record_events(settings: StoreSettings, result: TrainResult, actor: str) -> str | None:
    """Write the publish (and promote) decision to the audit log; return a warning on failure."""
    meta = result.metadata
    details = {
        "version": meta.version,
        "promoted": result.promoted,
        "decision": result.decision,
        "metrics": meta.metrics,
        "champion": result.champion,
        "trigger": meta.trigger,
    }
    try:
        db = open_database(settings.database)
        try:
            events = Events(db)
            events.record(meta.name, "publish", actor, details)
            if result.promoted:
                events.record(meta.name, "promote", actor, details)
        finally:
            db.dispose()
    except (DatabaseError, StoreError) as e:
        return f"the version is published, but the audit log could not be written: {e}"
    return None


def train_command(args: argparse.Namespace, settings: StoreSettings | None = None) -> int:
    settings = settings or StoreSettings()
    actor = default_actor()
    req = TrainRequest(
        model=args.model,
        dataset=args.dataset,
        data=Path(args.data) if args.data else None,
        target=args.target,
        task=args.task,
        categorical=_split(args.categorical),
        numeric=_split(args.numeric),
        estimator=args.estimator,
        seed=args.seed,
        rows=args.rows,
        promote=args.promote,
        actor=actor,
    )
    if req.data is None and args.target:
        return fail("--target goes with --data; built-in data sets know their target")
    if args.rows < 100:
        return fail("--rows must be at least 100")
    try:
        registry = open_registry(settings.registry_location)
        result = run_training(req, registry, progress=progress)
    except ParityError as e:
        return fail(f"not published: {e}", EXIT_REFUSED)
    except (TrainingError, StoreError) as e:
        return fail(str(e))
    warning = record_events(settings, result, actor)
    if warning:
        progress(f"warning: {warning}")
    meta = result.metadata
    if args.json:
        print(orjson.dumps(meta.model_dump(mode="json"), option=orjson.OPT_INDENT_2).decode())
        return 0
    print(f"\n{meta.name} v{meta.version} ({meta.task}, {meta.estimator}) on {meta.data.source}")
    print(f"test split: {meta.data.rows_test} rows\n")
    print(format_table(meta.task, result.evaluation, meta.classes))
    print(
        f"\nparity with scikit-learn on {meta.parity.rows} rows: "
        f"max difference {meta.parity.max_abs_diff:.2g}"
    )
    state = "active" if result.promoted else "published, not active"
    print(f"{state}: {result.decision}")
    print(f"registry: {registry.location}/{meta.name}/{meta.version}")
    return 0
