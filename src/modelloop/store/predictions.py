"""The prediction log and the feedback that labels it."""

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import chain
from typing import Any, TypedDict, cast

import orjson
from sqlalchemy import Connection, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DataError, IntegrityError

from modelloop.store.database import Database
from modelloop.store.errors import RowsRejected
from modelloop.store.schema import feedback, predictions


class LogRow(TypedDict):
    id: str
    ts: float
    model: str
    version: int
    features: dict[str, Any]
    output: dict[str, Any]
    latency_ms: float


# (item index, prediction id, label, model, version) -> the label to store; raises if bad
LabelCheck = Callable[[int, str, Any, str, int], Any]

LOG_COLUMNS = ("id", "ts", "model", "version", "features", "output", "latency_ms")
ROWS_PER_STATEMENT = 500  # 3,500 parameters: under SQLite's limit
STAGE = "predictions_stage"  # PostgreSQL: the COPY target, a temporary table per session

_LOG_KEYS = frozenset(LOG_COLUMNS)
_ROW_TYPES = (
    ("id", (str,)),
    ("ts", (float, int)),
    ("model", (str,)),
    ("version", (int,)),
    ("features", (dict,)),
    ("output", (dict,)),
    ("latency_ms", (float, int)),
)


def as_log_row(value: Any) -> LogRow | None:
    """`value` (decoded JSON) if it has a log row's keys and types, else None. The database
    still has the last word on values (an id's length, a number's range)."""
    if type(value) is not dict or value.keys() != _LOG_KEYS:
        return None
    if any(type(value[key]) not in types for key, types in _ROW_TYPES):
        return None
    return cast(LogRow, value)


def _encoded(rows: Iterable[LogRow]) -> Iterator[tuple[Any, ...]]:
    """Each row's values in LOG_COLUMNS order, its JSON documents encoded."""
    dumps = orjson.dumps
    for r in rows:
        yield (
            r["id"],
            r["ts"],
            r["model"],
            r["version"],
            dumps(r["features"]).decode(),
            dumps(r["output"]).decode(),
            r["latency_ms"],
        )


# Rows per INSERT statement on SQLite: every row count is its own SQL text, and SQLite's driver
# keeps the last 128 statements prepared on each connection, up to ~340 KiB each (500 rows).
# With a statement for each batch size seen, the serving process's writer connection held
# ~16 MiB of them (sqlite3_db_status STMT_USED, batches of 1-250 rows), re-preparing those the
# cache had dropped; with these sizes it holds 1 MiB and writes such batches ~15 % faster
# (4.95-5.28 -> 4.21-4.56 us/row).
# 250 is the service's default batch (log_batch_rows): a full batch is one statement.
STATEMENT_ROWS = (ROWS_PER_STATEMENT, 250, 128, 64, 32, 16, 8, 4, 2, 1)


def _statement_rows(n: int) -> Iterator[int]:
    """Rows per INSERT for a batch of `n`, largest of STATEMENT_ROWS first (249 = 128 + 64 +
    32 + 16 + 8 + 1)."""
    for size in STATEMENT_ROWS:
        while n >= size:
            yield size
            n -= size


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


ID_LOOKUP = 500  # ids per IN list when feedback is matched to the log


def _padded(ids: list[str]) -> list[str]:
    """`ids` with its last id repeated up to the next power of two (at most ID_LOOKUP): an IN
    list is one SQL text per length, each kept prepared by SQLite's driver (up to 128 per
    connection, ~100 KiB at 500 ids), so lookups use 10 lengths rather than 500."""
    size = min(1 << (len(ids) - 1).bit_length(), ID_LOOKUP)
    return ids + [ids[-1]] * (size - len(ids))


class PredictionLog:
    def __init__(self, db: Database) -> None:
        self.db = db
        # The log is the one table written at request rate; its JSON is encoded by orjson and
        # duplicates of a logged id are skipped by the database. Measured cheapest for the
        # serving process: on SQLite, multi-row INSERTs (one driver call per 500 rows); on
        # PostgreSQL, COPY into a per-session staging table, then one INSERT ... SELECT ... ON
        # CONFLICT DO NOTHING (40 % less client CPU per row than a pipelined executemany).
        self._copy = db.engine.dialect.name == "postgresql"
        self._head = f"INSERT INTO {predictions.name} ({', '.join(LOG_COLUMNS)}) VALUES "
        self._group = "(" + ",".join(["?"] * len(LOG_COLUMNS)) + ")"
        self._statements: dict[int, str] = {}
        # The driver's own errors about values (COPY runs on the driver's cursor, so
        # SQLAlchemy does not wrap them): PEP 249's DataError and IntegrityError.
        dbapi = db.engine.dialect.dbapi
        self._rejections: tuple[type[Exception], ...] = (
            DataError,
            IntegrityError,
            *(
                getattr(dbapi, name)
                for name in ("DataError", "IntegrityError")
                if hasattr(dbapi, name)
            ),
        )

    def _statement(self, n: int) -> str:
        sql = self._statements.get(n)
        if sql is None:
            sql = self._head + ",".join([self._group] * n) + " ON CONFLICT DO NOTHING"
            self._statements[n] = sql
        return sql

    def write(self, rows: Sequence[LogRow]) -> int:
        """Commit a batch; rows whose id is already logged are skipped (replays are safe).
        Returns the rows inserted. Raises RowsRejected when the database (or its driver)
        refuses a value in the batch; any other error says nothing about the rows."""
        if not rows:
            return 0
        try:
            return self._write(rows)
        except self._rejections as e:
            raise RowsRejected(_first_line(e)) from e
        except (TypeError, ValueError, KeyError, OverflowError) as e:
            # a value orjson cannot encode or the driver cannot send (an integer past 64 bits)
            raise RowsRejected(f"{type(e).__name__}: {_first_line(e)}") from e

    def writable(self) -> bool:
        return self.db.writable()

    def _write(self, rows: Sequence[LogRow]) -> int:
        inserted = 0
        with self.db.engine.begin() as conn:
            if self._copy:
                return self._copy_rows(conn, rows)
            start = 0
            for n in _statement_rows(len(rows)):
                chunk = rows[start : start + n]
                start += n
                params = tuple(chain.from_iterable(_encoded(chunk)))
                result = conn.exec_driver_sql(self._statement(n), params)
                inserted += int(result.rowcount)
        return inserted

    def _copy_rows(self, conn: Connection, rows: Sequence[LogRow]) -> int:
        """PostgreSQL: COPY the batch into a temporary table of this session (emptied at
        commit), then move it over in log order, skipping ids already logged."""
        raw = conn.connection.driver_connection
        assert raw is not None  # a checked-out connection always has its driver connection
        columns = ", ".join(LOG_COLUMNS)
        with raw.cursor() as cur:
            # every time (~35 us): a session that lost the table (DISCARD, a pooler) gets it back
            cur.execute(
                f"CREATE TEMPORARY TABLE IF NOT EXISTS {STAGE} (n integer, id text, "
                "ts double precision, model text, version integer, features text, "
                "output text, latency_ms double precision) ON COMMIT DELETE ROWS"
            )
            with cur.copy(f"COPY {STAGE} (n, {columns}) FROM STDIN") as copy:
                write = copy.write_row
                for n, values in enumerate(_encoded(rows)):
                    write((n, *values))
            cur.execute(
                f"INSERT INTO {predictions.name} ({columns}) SELECT id, ts, model, version, "
                f"features::json, output::json, latency_ms FROM {STAGE} ORDER BY n "
                "ON CONFLICT DO NOTHING"
            )
            return int(cur.rowcount)

    def count(self, model: str | None = None) -> int:
        q = select(func.count()).select_from(predictions)
        if model is not None:
            q = q.where(predictions.c.model == model)
        with self.db.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())

    def read_since(self, model: str, after_seq: int, limit: int) -> list[dict[str, Any]]:
        q = (
            select(predictions)
            .where(predictions.c.model == model, predictions.c.seq > after_seq)
            .order_by(predictions.c.seq)
            .limit(limit)
        )
        with self.db.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]

    def origins(self, ids: Iterable[str]) -> dict[str, tuple[str, int]]:
        """The model and version that made each logged prediction of `ids` (unlogged ids are
        left out)."""
        unique = list(dict.fromkeys(ids))
        found: dict[str, tuple[str, int]] = {}
        c = predictions.c
        with self.db.engine.connect() as conn:
            for start in range(0, len(unique), ID_LOOKUP):
                chunk = _padded(unique[start : start + ID_LOOKUP])
                q = select(c.id, c.model, c.version).where(c.id.in_(chunk))
                found.update((pid, (model, version)) for pid, model, version in conn.execute(q))
        return found

    def add_feedback(
        self, items: Iterable[tuple[str, Any]], check: LabelCheck | None = None
    ) -> tuple[int, list[str]]:
        """Store labels for logged predictions; return (items matched, ids not in the log).

        One label per prediction id: the latest wins, over labels stored before and, within
        `items`, the last item for an id. `check(index, id, label, model, version)` sees every
        item of a logged prediction first (with the model and version that made it) and
        returns the label to store, or raises: then nothing of `items` is stored."""
        pairs = list(items)
        origins = self.origins(pid for pid, _ in pairs)
        latest: dict[str, Any] = {}
        matched = 0
        for index, (pid, label) in enumerate(pairs):
            origin = origins.get(pid)
            if origin is None:
                continue
            matched += 1
            latest[pid] = label if check is None else check(index, pid, label, *origin)
        if latest:
            now = time.time()
            self._upsert([{"prediction_id": p, "label": v, "ts": now} for p, v in latest.items()])
        unknown = [pid for pid in dict.fromkeys(pid for pid, _ in pairs) if pid not in origins]
        return matched, unknown

    def _upsert(self, rows: list[dict[str, Any]]) -> None:
        """INSERT ... ON CONFLICT (prediction_id) DO UPDATE, on SQLite and PostgreSQL alike
        (`rows` hold each id once: PostgreSQL refuses to update a row twice in a statement)."""
        dialect = postgresql if self.db.backend == "postgresql" else sqlite
        insert = dialect.insert(feedback)
        statement = insert.on_conflict_do_update(
            index_elements=[feedback.c.prediction_id],
            set_={"label": insert.excluded.label, "ts": insert.excluded.ts},
        )
        with self.db.engine.begin() as conn:
            conn.execute(statement, rows)

    def labelled(
        self, model: str, since_ts: float = 0.0, limit: int = 100_000
    ) -> list[dict[str, Any]]:
        """Logged predictions of `model` that have feedback, with their label (one per
        prediction: the feedback table's unique index keeps it so)."""
        q = (
            select(
                predictions.c.id,
                predictions.c.ts,
                predictions.c.version,
                predictions.c.features,
                predictions.c.output,
                feedback.c.label,
                feedback.c.ts.label("label_ts"),
            )
            .join(feedback, feedback.c.prediction_id == predictions.c.id)
            .where(predictions.c.model == model, predictions.c.ts >= since_ts)
            .order_by(predictions.c.ts.desc())
            .limit(limit)
        )
        with self.db.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]
