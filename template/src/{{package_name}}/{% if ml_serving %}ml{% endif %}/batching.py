"""Micro-batching: concurrent requests for one model version predicted in one call.

A model call has a fixed cost (Python dispatch, input checks, a thread hand-off) that
one row or a hundred share. A request that finds its version idle is predicted at once,
alone: a quiet service never waits. Requests that arrive while a call runs gather in the
next batch, which starts as soon as that call ends, or after ``batch_wait_ms`` if the
call takes longer, or at once when it holds ``max_batch_rows`` rows; each request gets
its own rows' answers back. So the busier the version, the fuller its batches, and no
request waits longer than the call before it or the configured wait.
"""

import asyncio
import time
from collections.abc import Callable
from typing import Any

import anyio
import numpy as np
from numpy.typing import NDArray

from .formats import ModelInputError, Output

Observe = Callable[[int, int, float], None]


class _Batch:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.parts: list[NDArray[Any]] = []
        self.rows = 0
        self.go = asyncio.Event()
        # Each request's answers, or what the model refused about that request's rows.
        self.done: asyncio.Future[list[list[Output] | Exception]] = loop.create_future()

    def add(self, rows: NDArray[Any]) -> int:
        self.parts.append(rows)
        self.rows += len(rows)
        return len(self.parts) - 1


class MicroBatcher:
    def __init__(
        self,
        # Raises ModelInputError for rows the model refuses (formats.checked_call).
        predict: Callable[[NDArray[Any]], list[Output]],
        limiter: anyio.CapacityLimiter,
        *,
        max_rows: int,
        wait_seconds: float,
        observe: Observe,
    ) -> None:
        self._predict = predict
        self._limiter = limiter
        self._max_rows = max_rows
        self._wait = wait_seconds
        self._observe = observe
        self._running = 0
        self._next: _Batch | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # Model calls and the requests they answered, since start: what tests count.
        self.calls = 0
        self.requests = 0

    async def predict(self, rows: NDArray[Any]) -> list[Output]:
        if self._wait <= 0 or (self._running == 0 and self._next is None):
            self._running += 1
            try:
                return (await self._run([rows]))[0]
            finally:
                self._running -= 1
                self._release()
        batch = self._next
        if batch is None or batch.rows + len(rows) > self._max_rows:
            if batch is not None:
                batch.go.set()  # this request would overfill it: it runs as it is
            batch = _Batch(asyncio.get_running_loop())
            self._next = batch
            task = asyncio.create_task(self._start(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        index = batch.add(rows)
        if batch.rows >= self._max_rows:
            batch.go.set()
        # Shielded: a caller that gives up leaves the batch to answer the others.
        answer = (await asyncio.shield(batch.done))[index]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def _release(self) -> None:
        """A call ended: the batch gathered meanwhile may start."""
        if self._next is not None:
            self._next.go.set()

    async def _start(self, batch: _Batch) -> None:
        try:
            await asyncio.wait_for(batch.go.wait(), self._wait)
        except TimeoutError:
            pass
        except asyncio.CancelledError:
            # Shutting down: its callers get an answer, not a wait without end.
            batch.done.set_exception(RuntimeError("the model was unloaded"))
            batch.done.exception()
            raise
        if self._next is batch:
            self._next = None
        self._running += 1
        try:
            batch.done.set_result(await self._run_isolated(batch.parts))
        except BaseException as exc:
            # A fault, or shutting down mid-call: every caller gets an answer.
            batch.done.set_exception(
                exc if isinstance(exc, Exception) else RuntimeError("the model was unloaded")
            )
            batch.done.exception()  # retrieved: callers that left must not log it again
            if not isinstance(exc, Exception):
                raise
        finally:
            self._running -= 1
            self._release()

    async def _run_isolated(self, parts: list[NDArray[Any]]) -> list[list[Output] | Exception]:
        """The batch's answers; when the model refuses the batch, each request's rows on
        their own, so one caller's bad row fails that caller alone."""
        try:
            return list(await self._run(parts))
        except ModelInputError:
            if len(parts) == 1:
                raise
        answers: list[list[Output] | Exception] = []
        for part in parts:
            try:
                answers.append((await self._run([part]))[0])
            except ModelInputError as exc:
                answers.append(exc)
        return answers

    async def _run(self, parts: list[NDArray[Any]]) -> list[list[Output]]:
        rows = parts[0] if len(parts) == 1 else np.concatenate(parts)
        started = time.perf_counter()
        outputs = await anyio.to_thread.run_sync(self._predict, rows, limiter=self._limiter)
        self.calls += 1
        self.requests += len(parts)
        self._observe(len(parts), len(rows), time.perf_counter() - started)
        answers = []
        start = 0
        for part in parts:
            answers.append(outputs[start : start + len(part)])
            start += len(part)
        return answers

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
