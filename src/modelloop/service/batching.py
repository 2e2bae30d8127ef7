"""Adaptive batching: rows from concurrent requests for one version go into one ONNX call.

A request's rows join the pending list and a flush is scheduled with `call_soon`, so it runs
right after every request already parsed in this turn of the event loop has joined: under load
requests merge, and a lone request adds no wait. `max_wait` can add a short wait on purpose.
Small batches run on the event loop (a thread hop costs more than the call); large ones run in
a worker thread so the loop keeps accepting requests.

A request fails alone: input is checked before it joins, but if a merged call still fails,
each request's rows are run again by themselves, so only the request ONNX Runtime refuses
gets an error. On a version that passed its smoke test that refusal is about the input: 422.
"""

import asyncio
import logging
from typing import Any

from modelloop.service.errors import Unprocessable
from modelloop.service.served import Outputs, ScoringFailed, ServedModel

log = logging.getLogger("modelloop.service")

Pending = list[tuple[list[list[Any]], int, "asyncio.Future[Outputs]"]]
Result = Outputs | BaseException


def _refused(error: ScoringFailed) -> Unprocessable:
    return Unprocessable(f"the model cannot score this input: {error}")


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
        self._pending: Pending = []
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
        try:
            if rows <= self.inline_rows:
                return self.served.run(columns, rows)
            return await asyncio.to_thread(self.served.run, columns, rows)
        except ScoringFailed as e:
            raise _refused(e) from None

    def _flush(self) -> None:
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        pending, self._pending = self._pending, []
        rows, self._pending_rows = self._pending_rows, 0
        if not pending:
            return
        if rows <= self.inline_rows:
            try:
                results = self._score(pending, rows)
            except Exception as e:  # not the input's fault: every request gets it
                results = [e] * len(pending)
            self._resolve(pending, results)
        else:
            task = asyncio.ensure_future(asyncio.to_thread(self._score, pending, rows))
            task.add_done_callback(lambda t: self._resolved_from(t, pending))

    def _score(self, pending: Pending, rows: int) -> list[Result]:
        """Each request's outputs, or the error of the request ONNX Runtime refuses."""
        if len(pending) == 1:
            try:
                return [self.served.run(pending[0][0], rows)]
            except ScoringFailed as e:
                return [_refused(e)]
        columns: list[list[Any]] = [[] for _ in pending[0][0]]
        for cols, _, _ in pending:
            for merged, col in zip(columns, cols, strict=True):
                merged.extend(col)
        try:
            outputs = self.served.run(columns, rows)
        except ScoringFailed as e:
            log.warning(
                "model %s v%d: a batch of %d requests failed (%s); scoring each alone",
                self.served.name,
                self.served.version,
                len(pending),
                e,
            )
            return [self._alone(cols, n) for cols, n, _ in pending]
        results: list[Result] = []
        start = 0
        for _, n, _ in pending:
            results.append(outputs.slice(start, start + n))
            start += n
        return results

    def _alone(self, columns: list[list[Any]], rows: int) -> Result:
        try:
            return self.served.run(columns, rows)
        except ScoringFailed as e:
            return _refused(e)

    def _resolved_from(self, task: "asyncio.Future[list[Result]]", pending: Pending) -> None:
        if task.cancelled():
            for _, _, fut in pending:
                fut.cancel()
            return
        error = task.exception()
        self._resolve(pending, [error] * len(pending) if error is not None else task.result())

    @staticmethod
    def _resolve(pending: Pending, results: list[Result]) -> None:
        for (_, _, fut), result in zip(pending, results, strict=True):
            if fut.done():
                continue
            if isinstance(result, BaseException):
                fut.set_exception(result)
            else:
                fut.set_result(result)
