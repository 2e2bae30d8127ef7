"""The log's interface: what the service writes, feedback labels, the monitor and trainer read."""

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from sqlalchemy import func, select
from sqlalchemy.exc import DataError, IntegrityError

from modelloop.store.errors import RowsRejected
from modelloop.store.log import feedback, lookup, reader
from modelloop.store.log.batch import Batch
from modelloop.store.log.chunk import Entry
from modelloop.store.log.export import export_tables
from modelloop.store.log.rows import LabelCheck
from modelloop.store.log.writer import Writer
from modelloop.store.schema import prediction_batches

if TYPE_CHECKING:
    from modelloop.store.database import Database


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


class PredictionLog:
    def __init__(self, db: "Database") -> None:
        self.db = db
        self._writer = Writer(db.backend)
        # The driver's own errors about values: PEP 249's DataError and IntegrityError.
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

    def write(self, rows: Sequence[Entry], *, fresh: bool = False) -> int:
        """Commit a batch of rows and chunks (store/log/chunk.py) in one transaction; rows
        already logged are skipped (replays are safe). `fresh`: the rows were never sent to
        the database before (a batch's first attempt), so none can be logged yet and the look
        for them is skipped. Returns the rows inserted. Raises RowsRejected when a value in
        the batch cannot be stored; any other error says nothing about the rows."""
        if not rows:
            return 0
        try:
            with self.db.engine.begin() as conn:
                return self._writer.write(conn, rows, fresh)
        except self._rejections as e:
            raise RowsRejected(_first_line(e)) from e
        except (
            TypeError,
            ValueError,
            KeyError,
            AttributeError,
            OverflowError,
            pa.ArrowException,
        ) as e:
            # a value no column can hold (an integer past 64 bits), or no log row at all
            raise RowsRejected(f"{type(e).__name__}: {_first_line(e)}") from e

    def writable(self) -> bool:
        return self.db.writable()

    def count(self, model: str | None = None) -> int:
        """Logged predictions (rows), of `model` or of all models."""
        c = prediction_batches.c
        q = select(func.coalesce(func.sum(c.rows), 0))
        if model is not None:
            q = q.where(c.model == model)
        with self.db.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())

    def origins(self, ids: Iterable[str]) -> dict[str, tuple[str, int]]:
        """The model and version that made each logged prediction of `ids` (unlogged ids are
        left out)."""
        with self.db.engine.connect() as conn:
            return {pid: (f.model, f.version) for pid, f in lookup.find(conn, ids).items()}

    def add_feedback(
        self, items: Iterable[tuple[str, Any]], check: LabelCheck | None = None
    ) -> tuple[int, list[str]]:
        """Store labels for logged predictions; return (items matched, ids not in the log).

        One label per prediction id: the latest wins, over labels stored before and, within
        `items`, the last item for an id. `check(index, id, label, model, version)` sees every
        item of a logged prediction first (with the model and version that made it) and
        returns the label to store, or raises: then nothing of `items` is stored."""
        return feedback.add_feedback(self.db.engine, items, check)

    def labelled(
        self, model: str, since_ts: float = 0.0, limit: int = 100_000
    ) -> list[dict[str, Any]]:
        """Logged predictions of `model` that have feedback, with their label, newest first:
        id, ts, version, features, output, label, label_ts."""
        return feedback.labelled(self.db.engine, model, since_ts, limit)

    def batches_since(
        self, model: str, after_seq: int, limit_rows: int, before_ts: float
    ) -> list[Batch]:
        return reader.batches_since(self.db.engine, model, after_seq, limit_rows, before_ts)

    def latest_features(self, model: str, limit: int) -> list[tuple[float, dict[str, Any]]]:
        return reader.latest_features(self.db.engine, model, limit)

    def rows_between(self, model: str, since: float, until: float) -> Iterator[pa.Table]:
        return reader.rows_between(self.db.engine, model, since, until)

    def export(self, model: str, since: float, until: float) -> Iterator[pa.Table]:
        """Flat tables for `modelloop log export` (store/log/export.py)."""
        return export_tables(self.db.engine, model, since, until)
