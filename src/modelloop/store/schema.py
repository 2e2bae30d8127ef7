"""The database schema: one place for every table the components share."""

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    text,
)

# 1: the first schema. 2: one label per prediction id (feedback's unique index; the upgrade keeps
# the latest of an id's labels). 3: the log in columnar records (prediction_batches), caller ids
# indexed in prediction_ids, feedback knowing its prediction's record (model, token, row).
# Upgrades: store/database.py, UPGRADES.
SCHEMA_VERSION = 3

metadata = MetaData()

# Surrogate keys are BIGINT on PostgreSQL and INTEGER (the rowid alias) on SQLite.
_BigId = BigInteger().with_variant(Integer(), "sqlite")

schema_info = Table(
    "modelloop_schema",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("version", Integer, nullable=False),
)

# The prediction log: one record per written batch of one model version and token, its rows
# column by column in one Arrow IPC stream (store/log/encoding.py). A generated id names its
# record by (token, row); (token, first_row) is the exactly-once key of a replayed write.
prediction_batches = Table(
    "prediction_batches",
    metadata,
    Column("seq", _BigId, primary_key=True, autoincrement=True),  # the monitor's watermark
    Column("model", String(63), nullable=False),
    Column("version", Integer, nullable=False),
    Column("token", String(16), nullable=False),
    Column("first_row", Integer, nullable=False),
    Column("last_row", Integer, nullable=False),
    Column("rows", Integer, nullable=False),
    Column("ts_min", Float, nullable=False),
    Column("ts_max", Float, nullable=False),
    # generated rows only: their row numbers (uint32) then their tags (8 bytes each), so a
    # lookup reads neither the record (SQLite stops short of a blob it is not asked for)
    # nor decodes it; empty for caller rows
    Column("row_tags", LargeBinary, nullable=False),
    Column("data", LargeBinary, nullable=False),
    Index("ux_prediction_batches_token_first", "token", "first_row", unique=True),
    Index("ix_prediction_batches_model_seq", "model", "seq"),
    # never reuse a seq, not even the newest after retention deleted it: a watermark past it
    # would skip the record that took it
    sqlite_autoincrement=True,
)

# Caller ids (any id that is not a generated one): where their row is.
prediction_ids = Table(
    "prediction_ids",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("model", String(63), nullable=False),
    Column("token", String(16), nullable=False),
    Column("row_n", Integer, nullable=False),
    Index("ix_prediction_ids_token", "token", "row_n"),
    sqlite_with_rowid=False,
)

feedback = Table(
    "feedback",
    metadata,
    Column("seq", _BigId, primary_key=True, autoincrement=True),
    Column("prediction_id", String(128), nullable=False),
    Column("label", JSON, nullable=False),
    Column("ts", Float, nullable=False),
    # the labelled prediction's record: its model, token and row (schema 3; null for labels
    # an older schema kept for predictions it no longer had)
    Column("model", String(63)),
    Column("token", String(16)),
    Column("row_n", Integer),
    # One label per prediction: written with an upsert, the latest label wins.
    Index("ux_feedback_prediction_id", "prediction_id", unique=True),
    Index("ix_feedback_model_token_row", "model", "token", "row_n"),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("model", String(63), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("trigger", String(32), nullable=False),
    Column("reason", Text, nullable=False, default=""),
    Column("created_at", Float, nullable=False),
    Column("claimed_at", Float),
    Column("lease_until", Float),
    Column("worker", String(128)),
    Column("attempts", Integer, nullable=False, default=0),
    Column("finished_at", Float),
    Column("result", JSON),
    Column("error", Text),
    Index("ix_jobs_status", "status", "id"),
    Index("ix_jobs_model_status", "model", "status"),
    # At most one queued or running job per model and kind, enforced by the database.
    Index(
        "ux_jobs_one_active",
        "model",
        "kind",
        unique=True,
        sqlite_where=text("status IN ('queued', 'running')"),
        postgresql_where=text("status IN ('queued', 'running')"),
    ),
)

drift_reports = Table(
    "drift_reports",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("model", String(63), nullable=False),
    Column("version", Integer, nullable=False),
    Column("ts", Float, nullable=False),
    Column("window_start", Float, nullable=False),
    Column("window_end", Float, nullable=False),
    Column("rows", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("verdict", String(16), nullable=False),
    Column("report", JSON, nullable=False),
    Index("ix_drift_reports_model_ts", "model", "ts"),
)

events = Table(
    "events",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("ts", Float, nullable=False),
    Column("model", String(63), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("details", JSON, nullable=False),
    Index("ix_events_model_ts", "model", "ts"),
)

report_pages = Table(
    "report_pages",
    metadata,
    Column("model", String(63), primary_key=True),
    Column("updated_at", Float, nullable=False),
    Column("html", Text, nullable=False),
)

monitor_state = Table(
    "monitor_state",
    metadata,
    Column("model", String(63), primary_key=True),
    Column("watermark", _BigId, nullable=False, default=0),
    Column("state", String(16), nullable=False, default="ok"),
    Column("updated_at", Float, nullable=False),
    Column("data", JSON, nullable=False),
)
