"""Schema 3: the row-per-prediction log of schemas 1 and 2 becomes columnar records.

Rows go into records per model and version, in log order, RECORD_ROWS each, their ids indexed
as caller ids (schema 2's generated ids name no record); feedback learns each label's record;
the monitor's watermarks move from row seqs to record seqs (records are cut at each model's
watermark, so no row is read twice or skipped); the old table goes. The step runs inside the
migration's transaction: all of it or nothing."""

from collections import defaultdict

import orjson
from sqlalchemy import Connection, inspect, text

from modelloop.store.log.rows import LogRow
from modelloop.store.log.writer import Writer

RECORD_ROWS = 250
READ_ROWS = 5_000

_FEEDBACK_COLUMNS = (("model", "VARCHAR(63)"), ("token", "VARCHAR(16)"), ("row_n", "INTEGER"))


def to_columnar_log(conn: Connection) -> None:
    """Idempotent: on a database created at schema 3 it adds nothing and converts nothing."""
    found = inspect(conn)
    have = {c["name"] for c in found.get_columns("feedback")}
    for name, kind in _FEEDBACK_COLUMNS:
        if name not in have:
            conn.execute(text(f"ALTER TABLE feedback ADD COLUMN {name} {kind}"))
    conn.execute(
        text(
            "CREATE INDEX IF NOT EXISTS ix_feedback_model_token_row "
            "ON feedback (model, token, row_n)"
        )
    )
    if not found.has_table("predictions"):
        return
    _convert(conn)
    for name, _ in _FEEDBACK_COLUMNS:
        conn.execute(
            text(
                f"UPDATE feedback SET {name} = (SELECT p.{name} FROM prediction_ids AS p "
                "WHERE p.id = feedback.prediction_id) WHERE model IS NULL OR token IS NULL "
                "OR row_n IS NULL"
            )
        )
    conn.execute(text("DROP TABLE predictions"))


class _Records:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.writer = Writer(conn.dialect.name)
        self.open: dict[tuple[str, int], list[LogRow]] = defaultdict(list)
        self.last: dict[str, int] = {}  # model -> its newest record's seq

    def add(self, row: LogRow) -> None:
        rows = self.open[(row["model"], row["version"])]
        rows.append(row)
        if len(rows) >= RECORD_ROWS:
            self.flush(row["model"], row["version"])

    def flush(self, model: str, version: int) -> None:
        rows = self.open.pop((model, version), [])
        if rows and self.writer.write(self.conn, rows):
            seq = self.conn.execute(text("SELECT max(seq) FROM prediction_batches")).scalar_one()
            self.last[model] = int(seq)

    def flush_model(self, model: str) -> None:
        for key in [k for k in self.open if k[0] == model]:
            self.flush(*key)


def _convert(conn: Connection) -> None:
    watermarks: dict[str, int] = {
        m: int(w) for m, w in conn.execute(text("SELECT model, watermark FROM monitor_state"))
    }
    records = _Records(conn)
    moved: dict[str, int] = {}  # model -> its watermark in record seqs
    after = 0
    while True:
        chunk = conn.execute(
            text(
                "SELECT seq, id, ts, model, version, CAST(features AS TEXT), "
                "CAST(output AS TEXT), latency_ms FROM predictions WHERE seq > :after "
                "ORDER BY seq LIMIT :n"
            ),
            {"after": after, "n": READ_ROWS},
        ).all()
        for seq, pid, ts, model, version, features, output, latency in chunk:
            mark = watermarks.get(model)
            if mark is not None and seq > mark and model not in moved:
                records.flush_model(model)  # the rows the monitor has read end a record
                moved[model] = records.last.get(model, 0)
            records.add(
                LogRow(
                    id=pid,
                    ts=float(ts),
                    model=model,
                    version=int(version),
                    features=orjson.loads(features),
                    output=orjson.loads(output),
                    latency_ms=float(latency),
                )
            )
        if len(chunk) < READ_ROWS:
            break
        after = chunk[-1][0]
    for model, version in list(records.open):
        records.flush(model, version)
    for model in watermarks:
        new = moved.get(model, records.last.get(model, 0))
        conn.execute(
            text("UPDATE monitor_state SET watermark = :w WHERE model = :m"),
            {"w": new, "m": model},
        )
