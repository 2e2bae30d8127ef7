"""The database goes away for a minute under load: predictions keep being served, the log rows
go to the spool on local disk and come back when the database does. None lost, none doubled.

PostgreSQL "goes away" behind a TCP proxy that is cut (to the service this is the same as a
stopped server: connections refused and reset), so the machine's shared server stays up for
the other tests; SQLite is held under another connection's exclusive lock."""

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from service_helpers import Load, running_server, sample_sum

import log_helpers
from modelloop.store.database import open_database

OUTAGE_SECONDS = 60.0


class TcpProxy:
    """A loopback TCP proxy the test can cut and restore: the database 'goes away'."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.loop = asyncio.new_event_loop()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.port = 0
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def _call(self, coro: object) -> object:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)  # type: ignore[arg-type]

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self.writers.update({writer, up_writer})
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _cut(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()
        for w in list(self.writers):
            w.transport.abort()
        self.writers.clear()

    def start(self) -> "TcpProxy":
        self._call(self._start())
        return self

    def cut(self) -> None:
        self._call(self._cut())

    def restore(self) -> None:
        """Listen again on the same port."""
        self._call(self._start())

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.cut()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@contextlib.contextmanager
def sqlite_outage(home: Path) -> Iterator[None]:
    """Another connection holds SQLite's exclusive lock: every write is refused."""
    conn = sqlite3.connect(home / "modelloop.db", timeout=30, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_database_outage_loses_and_doubles_nothing(
    backend: str, home: Path, request: pytest.FixtureRequest
) -> None:
    env = {"MODELLOOP_LOG_FLUSH_SECONDS": "0.1"}
    proxy = None
    if backend == "postgresql":
        url: str = request.getfixturevalue("pg_url")
        db = open_database(url)
        with db.engine.begin() as conn:
            log_helpers.empty_log(conn)
        db.dispose()
        proxy = TcpProxy(5432).start()
        proxied = url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        env["MODELLOOP_DATABASE_URL"] = proxied
    else:
        url = f"sqlite:///{home / 'modelloop.db'}"
    try:
        with running_server(home, env) as server, Load(server.url, threads=4) as load:
            load.wait_ok(300)
            if proxy is not None:
                proxy.cut()
                outage: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
            else:
                outage = sqlite_outage(home)
            with outage:
                served_before = load.result.ok
                time.sleep(OUTAGE_SECONDS)
                served_during = load.result.ok - served_before
                spooled = sample_sum(server.metrics(), "modelloop_log_rows_spooled_total")
            if proxy is not None:
                proxy.restore()
            time.sleep(1.0)
            result = load.stop()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if sample_sum(server.metrics(), "modelloop_log_rows_replayed_total") >= spooled:
                    break
                time.sleep(0.2)
            assert server.stop() == 0
        assert served_during > 100, "predictions stopped while the database was away"
        assert spooled > 0, "nothing was spooled: the outage did not happen"
        assert result.failures == 0, result.errors[:5]
        assert not list((home / "spool").glob("*.jsonl")), "spool not replayed"
        db = open_database(url)
        try:
            ids = log_helpers.logged_ids(db)
        finally:
            db.dispose()
        assert len(ids) == len(set(ids))  # none doubled
        assert set(ids) == set(result.acknowledged_ids)  # none lost
    finally:
        if proxy is not None:
            proxy.close()
