"""The database schema: one place for every table the components share."""

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)

# 1: the first schema. 2: one label per prediction id (feedback's unique index; the upgrade keeps
# the latest of an id's labels). Upgrades: store/database.py, UPGRADES.
SCHEMA_VERSION = 2

metadata = MetaData()

# Surrogate keys are BIGINT on PostgreSQL and INTEGER (the rowid alias) on SQLite.
_BigId = BigInteger().with_variant(Integer(), "sqlite")

schema_info = Table(
    "modelloop_schema",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("version", Integer, nullable=False),
)

predictions = Table(
    "predictions",
    metadata,
    Column("seq", _BigId, primary_key=True, autoincrement=True),
    Column("id", String(128), nullable=False, unique=True),
    Column("ts", Float, nullable=False),
    Column("model", String(63), nullable=False),
    Column("version", Integer, nullable=False),
    Column("features", JSON, nullable=False),
    Column("output", JSON, nullable=False),
    Column("latency_ms", Float, nullable=False),
    Index("ix_predictions_model_seq", "model", "seq"),
)

feedback = Table(
    "feedback",
    metadata,
    Column("seq", _BigId, primary_key=True, autoincrement=True),
    Column("prediction_id", String(128), nullable=False),
    Column("label", JSON, nullable=False),
    Column("ts", Float, nullable=False),
    # One label per prediction: written with an upsert, the latest label wins.
    Index("ux_feedback_prediction_id", "prediction_id", unique=True),
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
