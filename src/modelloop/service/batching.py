"""Adaptive batching: rows from concurrent requests for one version go into one ONNX call.

A request's rows join the pending list and a flush is scheduled with `call_soon`, so it runs
right after every request already parsed in this turn of the event loop has joined: under load
requests merge, and a lone request adds no wait. `max_wait` can add a short wait on purpose.
Small batches run on the event loop (a thread hop costs more than the call); large ones run in
a worker thread so the loop keeps accepting requests.
"""

import asyncio
from typing import Any

from modelloop.service.served import Outputs, ServedModel


class Batcher:
    def __init__(
        self,
        served: ServedModel,
        max_rows: int,
        max_wait: float,
        inline_rows: int,
        enabled: bool = True,
    ) -> None:
        self.served = served
        self.max_rows = max_rows
        self.max_wait = max_wait
        self.inline_rows = inline_rows
        self.enabled = enabled
        self._pending: list[tuple[list[list[Any]], int, asyncio.Future[Outputs]]] = []
        self._pending_rows = 0
        self._scheduled: asyncio.Handle | asyncio.TimerHandle | None = None

    async def predict(self, columns: list[list[Any]], rows: int) -> Outputs:
        if not self.enabled or rows >= self.max_rows:
            return await self._run(columns, rows)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outputs] = loop.create_future()
        self._pending.append((columns, rows, future))
        self._pending_rows += rows
        if self._pending_rows >= self.max_rows:
            self._flush()
        elif self._scheduled is None:
            self._scheduled = (
                loop.call_later(self.max_wait, self._flush)
                if self.max_wait > 0
                else loop.call_soon(self._flush)
            )
        return await future

    async def _run(self, columns: list[list[Any]], rows: int) -> Outputs:
        if rows <= self.inline_rows:
            return self.served.run(columns, rows)
        return await asyncio.to_thread(self.served.run, columns, rows)

    def _flush(self) -> None:
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        pending, self._pending = self._pending, []
        rows, self._pending_rows = self._pending_rows, 0
        if not pending:
            return
        if len(pending) == 1:
            columns = pending[0][0]
        else:
            columns = [[] for _ in pending[0][0]]
            for cols, _, _ in pending:
                for merged, col in zip(columns, cols, strict=True):
                    merged.extend(col)
        if rows <= self.inline_rows:
            try:
                outputs = self.served.run(columns, rows)
            except Exception as e:
                for _, _, fut in pending:
                    if not fut.done():
                        fut.set_exception(e)
                return
            self._resolve(pending, outputs)
        else:
            task = asyncio.ensure_future(asyncio.to_thread(self.served.run, columns, rows))
            task.add_done_callback(lambda t: self._resolved_from(t, pending))

    def _resolved_from(
        self,
        task: "asyncio.Future[Outputs]",
        pending: list[tuple[list[list[Any]], int, asyncio.Future[Outputs]]],
    ) -> None:
        error = task.exception()
        if error is not None:
            for _, _, fut in pending:
                if not fut.done():
                    fut.set_exception(error)
            return
        self._resolve(pending, task.result())

    @staticmethod
    def _resolve(
        pending: list[tuple[list[list[Any]], int, asyncio.Future[Outputs]]], outputs: Outputs
    ) -> None:
        if len(pending) == 1:
            if not pending[0][2].done():
                pending[0][2].set_result(outputs)
            return
        start = 0
        for _, n, fut in pending:
            if not fut.done():
                fut.set_result(outputs.slice(start, start + n))
            start += n
