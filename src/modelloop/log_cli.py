"""`modelloop log export`: the prediction log with its feedback labels, as Parquet or CSV."""

import argparse
import datetime as dt
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelloop.cli_output import fail, progress

if TYPE_CHECKING:
    import pyarrow as pa

FORMATS = {".parquet": "parquet", ".csv": "csv"}


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("log", help="the prediction log: export it")
    lsub = p.add_subparsers(dest="log_command", required=True)
    ex = lsub.add_parser(
        "export",
        help="predictions of a model with their feedback labels, one row per prediction",
        description="Write the logged predictions of a model (id, time, version, every "
        "feature, the prediction, latency and the feedback label, empty where none came) "
        "to a Parquet or CSV file that pandas, DuckDB or Polars read directly.",
    )
    ex.add_argument("--model", required=True)
    ex.add_argument("--since", type=_instant, help="ISO 8601 date or time (UTC unless it says)")
    ex.add_argument("--until", type=_instant, help="ISO 8601 date or time, exclusive")
    ex.add_argument(
        "--format", choices=sorted(set(FORMATS.values())), help="default: from the file's suffix"
    )
    ex.add_argument("-o", "--output", required=True, type=Path, help="the file to write")


def _instant(text: str) -> float:
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is no ISO 8601 date or time (e.g. 2026-12-01 or 2026-12-01T08:30:00Z)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def log_command(args: argparse.Namespace, settings: Any = None) -> int:
    from modelloop.store.database import DatabaseError, open_database
    from modelloop.store.settings import StoreSettings

    fmt = args.format or FORMATS.get(args.output.suffix.lower())
    if fmt is None:
        return fail(f"say --format parquet or csv ({args.output.name} has no known suffix)")
    if args.since is not None and args.until is not None and args.until <= args.since:
        return fail("--until must be later than --since")
    if args.output.is_dir():
        return fail(f"{args.output} is a folder; name a file")
    settings = settings or StoreSettings()
    try:
        db = open_database(settings.database)
    except DatabaseError as e:
        return fail(str(e))
    try:
        return _export(db, args, fmt)
    finally:
        db.dispose()


def _export(db: Any, args: argparse.Namespace, fmt: str) -> int:
    import pyarrow as pa

    from modelloop.store.log import PredictionLog

    tables: list[pa.Table] = []
    rows = 0
    since = -math.inf if args.since is None else args.since
    until = math.inf if args.until is None else args.until
    for table in PredictionLog(db).export(args.model, since, until):
        tables.append(table)
        rows += table.num_rows
        if len(tables) % 200 == 0:
            progress(f"read {rows:,} predictions")
    if not tables:
        return fail(f"no logged predictions of model {args.model!r} in that time")
    # versions may differ in features: columns missing from a version are empty (null)
    whole = pa.concat_tables(tables, promote_options="permissive")
    partial = args.output.with_name(f".{args.output.name}.partial-{os.getpid()}")
    try:
        _write(whole, partial, fmt)
        partial.replace(args.output)
    except OSError as e:
        partial.unlink(missing_ok=True)
        return fail(f"cannot write {args.output}: {e.strerror or e}")
    finally:
        partial.unlink(missing_ok=True)
    labelled = whole.num_rows - whole.column("label").null_count
    progress(
        f"wrote {whole.num_rows:,} predictions of {args.model} ({labelled:,} with a label) "
        f"to {args.output} ({fmt})"
    )
    return 0


def _write(table: "pa.Table", path: Path, fmt: str) -> None:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, path, compression="zstd")
    else:
        import pyarrow.csv as pcsv

        pcsv.write_csv(table, path)
