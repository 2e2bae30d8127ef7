"""`modelloop models list | show | promote | rollback`."""

import argparse
import datetime as dt
from typing import Any

import orjson

from modelloop.cli_output import EXIT_REFUSED, default_actor, fail
from modelloop.store.database import DatabaseError, open_database
from modelloop.store.errors import StoreError
from modelloop.store.events import Events
from modelloop.store.registry import HistoryEntry, Registry, open_registry
from modelloop.store.settings import StoreSettings


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _dump(value: Any) -> None:
    print(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


def _list(registry: Registry, as_json: bool) -> int:
    rows: list[dict[str, Any]] = []
    for name in registry.models():
        active = registry.active(name)
        versions = registry.versions(name)
        meta = registry.metadata(name, active if active is not None else versions[-1])
        rows.append(
            {
                "model": name,
                "active": active,
                "versions": versions,
                "task": meta.task,
                "metric": meta.primary_metric,
                "value": meta.metrics.get(meta.primary_metric),
            }
        )
    if as_json:
        _dump(rows)
        return 0
    if not rows:
        print(f"no models in {registry.location}; train one with: modelloop train")
        return 0
    print(f"{'model':<24} {'active':>6} {'versions':>8}  {'task':<14} metric")
    for r in rows:
        value = "n/a" if r["value"] is None else f"{r['value']:.4f}"
        print(
            f"{r['model']:<24} {r['active'] if r['active'] is not None else '-':>6} "
            f"{len(r['versions']):>8}  {r['task']:<14} {r['metric']} {value}"
        )
    return 0


def _show(registry: Registry, name: str, version: int | None, as_json: bool) -> int:
    versions = registry.versions(name)
    if not versions:
        return fail(f"model {name!r} not found in {registry.location}")
    if version is not None:
        _dump(registry.metadata(name, version).model_dump(mode="json"))
        return 0
    active = registry.active(name)
    metas = [registry.metadata(name, v) for v in versions]
    history = registry.history(name)
    if as_json:
        _dump(
            {
                "model": name,
                "active": active,
                "versions": [m.model_dump(mode="json") for m in metas],
                "history": [h.model_dump(mode="json") for h in history],
            }
        )
        return 0
    print(f"model {name}: active version {active if active is not None else '-'}")
    print(f"{'version':>7}  {'created (UTC)':<19}  {'estimator':<22} {'trigger':<11} metric")
    for m in metas:
        mark = "*" if m.version == active else " "
        value = m.metrics.get(m.primary_metric)
        shown = "n/a" if value is None else f"{value:.4f}"
        print(
            f"{mark}{m.version:>6}  {_when(m.created_at):<19}  {m.estimator:<22} "
            f"{m.trigger:<11} {m.primary_metric} {shown}"
        )
    if history:
        print("\nhistory")
        for h in history:
            before = "-" if h.from_version is None else h.from_version
            print(
                f"  {_when(h.time)}  {h.action:<8} {before} -> {h.to_version}  "
                f"by {h.actor}: {h.reason}"
            )
    return 0


def _audit(settings: StoreSettings, name: str, entry: HistoryEntry) -> None:
    try:
        db = open_database(settings.database)
        try:
            Events(db).record(name, entry.action, entry.actor, entry.model_dump(mode="json"))
        finally:
            db.dispose()
    except (DatabaseError, StoreError) as e:
        print(f"warning: the audit log could not be written: {e}")


def models_command(args: argparse.Namespace, settings: StoreSettings | None = None) -> int:
    settings = settings or StoreSettings()
    try:
        registry = open_registry(settings.registry_location)
        if args.models_command == "list":
            return _list(registry, args.json)
        if args.models_command == "show":
            return _show(registry, args.model, args.version, args.json)
        if args.models_command == "promote":
            from modelloop.service.loading import LoadFailed, load_version

            try:
                load_version(registry, args.model, args.version)
            except LoadFailed as e:
                return fail(f"not promoted: {e}", EXIT_REFUSED)
            entry = registry.promote(args.model, args.version, default_actor(), args.reason)
        else:
            entry = registry.rollback(args.model, default_actor(), args.reason)
    except StoreError as e:
        return fail(str(e))
    _audit(settings, args.model, entry)
    print(f"{args.model}: active version {entry.from_version} -> {entry.to_version}")
    return 0
