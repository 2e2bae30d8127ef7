"""Engine set-up and schema management for SQLite (WAL) and PostgreSQL on one code path."""

from typing import Any

import orjson
from sqlalchemy import Engine, create_engine, event, insert, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from modelloop.store.errors import SchemaTooNew, StoreError
from modelloop.store.schema import SCHEMA_VERSION, metadata, schema_info


class DatabaseError(StoreError):
    """The database could not be reached or refused a statement."""


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def normalise_url(url: str) -> str:
    """Accept postgres:// and postgresql:// and use psycopg 3 for both."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def create_db_engine(url: str) -> Engine:
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            from pathlib import Path

            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            json_serializer=_json_dumps,
            json_deserializer=orjson.loads,
            connect_args={"timeout": 30, "check_same_thread": False},
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(
        url,
        json_serializer=_json_dumps,
        json_deserializer=orjson.loads,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=5,
    )


class Database:
    """An engine whose schema is created and upgraded by `migrate()`."""

    def __init__(self, url: str) -> None:
        self.url = normalise_url(url)
        self.engine = create_db_engine(self.url)

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    def migrate(self) -> int:
        """Create missing tables and record the schema version; refuse a newer schema."""
        try:
            metadata.create_all(self.engine, checkfirst=True)
            with self.engine.begin() as conn:
                found = conn.execute(select(schema_info.c.version)).scalar()
                if found is None:
                    conn.execute(insert(schema_info).values(id=1, version=SCHEMA_VERSION))
                elif found > SCHEMA_VERSION:
                    raise SchemaTooNew(
                        f"database schema version {found} is newer than this modelloop "
                        f"understands ({SCHEMA_VERSION}): upgrade modelloop"
                    )
                elif found < SCHEMA_VERSION:
                    # Future upgrades run here, one step at a time.
                    conn.execute(update(schema_info).values(version=SCHEMA_VERSION))
        except SQLAlchemyError as e:
            raise DatabaseError(f"cannot prepare database {self.safe_url}: {e}") from e
        return SCHEMA_VERSION

    @property
    def safe_url(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)

    def dispose(self) -> None:
        self.engine.dispose()


def open_database(url: str) -> Database:
    db = Database(url)
    db.migrate()
    return db
