"""The client for one dependency: timeouts, bulkhead, breaker and retries around httpx.

A call goes through, in order: the total deadline, the bulkhead (a slot among
``max_concurrent_calls``), the breaker (a permit), then httpx with its connect and read
timeouts. Its outcome is reported to the breaker and the observers. A failed attempt of a
request that is safe to repeat is retried by tenacity while attempts, deadline and retry
budget allow.

Callers get the dependency's response when it answered (a 404 included: what it means is
the caller's business), and :class:`DependencyUnavailableError` when it did not, failed
(5xx, 408, 429) or was not called at all: an open breaker, a full bulkhead, a spent
deadline. That error renders as 503 problem+json with ``Retry-After``; ``call`` takes a
``fallback`` to answer with instead.
"""

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    retry_if_result,
)

from ..core.errors import ProblemError
from .breaker import Breaker, BreakerOpenError, Verdict, retry_after_header
from .bulkhead import Bulkhead, BulkheadFullError
from .observer import Observer, Outcome
from .retry import RETRYABLE_STATUSES, Backoff, RetryBudget, may_retry, retry_after_seconds
from .settings import DependencySettings

T = TypeVar("T")

VERDICTS = {
    Outcome.SUCCESS: Verdict.SUCCESS,
    Outcome.SLOW: Verdict.SLOW,
    Outcome.FAILURE: Verdict.FAILURE,
    Outcome.TIMEOUT: Verdict.FAILURE,
    Outcome.CLIENT_ERROR: Verdict.IGNORED,
    Outcome.CANCELLED: Verdict.IGNORED,
}


class DependencyUnavailableError(ProblemError):
    """The dependency could not give an answer; rendered as 503 with Retry-After."""

    status = 503

    def __init__(self, dependency: str, reason: str, retry_after_seconds: float | None) -> None:
        headers = None
        if retry_after_seconds is not None:
            headers = {"Retry-After": retry_after_header(retry_after_seconds)}
        super().__init__(f"The {dependency} dependency is unavailable: {reason}.", headers=headers)
        self.dependency = dependency
        self.reason = reason
        self.retry_after_seconds = retry_after_seconds


def _failed_status(status: int) -> bool:
    return status >= 500 or status in RETRYABLE_STATUSES


def _retryable_response(response: httpx.Response) -> bool:
    return response.status_code in RETRYABLE_STATUSES


def _last_outcome(retry_state: RetryCallState) -> httpx.Response:
    """What tenacity ends with when it stops retrying: the last response, or its error."""
    assert retry_state.outcome is not None  # noqa: S101 - tenacity stops after an attempt
    response: httpx.Response = retry_state.outcome.result()
    return response


class OutboundClient:
    def __init__(
        self,
        name: str,
        settings: DependencySettings,
        *,
        observer: Observer | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self._observer = observer or Observer()
        self.breaker = Breaker(name, settings.breaker, on_transition=self._observer.transition)
        self.bulkhead = Bulkhead(name, settings.max_concurrent_calls, settings.max_wait_seconds)
        self.budget = RetryBudget(settings.retry)
        self._backoff = Backoff(settings.retry)
        self._slow_seconds = settings.breaker.slow_call_seconds
        self._http = httpx.AsyncClient(
            base_url=str(settings.base_url or ""),
            timeout=httpx.Timeout(
                connect=settings.connect_timeout_seconds,
                read=settings.read_timeout_seconds,
                write=settings.read_timeout_seconds,
                # Waiting for a pooled connection: the bulkhead already bounds the calls.
                pool=settings.connect_timeout_seconds,
            ),
            limits=httpx.Limits(
                max_connections=settings.max_concurrent_calls,
                max_keepalive_connections=settings.max_concurrent_calls,
            ),
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: httpx.QueryParams | dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        json: Any = None,
        content: bytes | None = None,
    ) -> httpx.Response:
        """The dependency's response, or DependencyUnavailableError."""
        if self.settings.base_url is None:
            raise DependencyUnavailableError(self.name, "it is not configured", None)
        with self._observer.call(self.name, self.breaker.state):
            if (waiting := self.breaker.refusing_for()) > 0:
                # Refused before anything is built: an open breaker answers in microseconds.
                self._observer.attempt_finished(self.name, Outcome.REJECTED_BY_BREAKER, 0.0)
                raise DependencyUnavailableError(self.name, "its circuit breaker is open", waiting)
            request = self._http.build_request(
                method, url, params=params, headers=headers, json=json, content=content
            )
            retried = self.settings.retry.max_attempts > 1 and may_retry(method, request.headers)
            deadline = time.monotonic() + self.settings.total_timeout_seconds
            self.budget.record_call()
            try:
                try:
                    response = await self._attempt(request, deadline)
                except httpx.TransportError as error:
                    if not retried:
                        raise
                    response = await self._retry(request, deadline, error)
                else:
                    if retried and _retryable_response(response):
                        response = await self._retry(request, deadline, response)
            except BreakerOpenError as error:
                raise DependencyUnavailableError(
                    self.name, "its circuit breaker is open", error.retry_after_seconds
                ) from error
            except BulkheadFullError as error:
                raise DependencyUnavailableError(
                    self.name, "too many calls to it are in flight", 1.0
                ) from error
            except TimeoutError as error:
                raise DependencyUnavailableError(
                    self.name,
                    f"no answer within {self.settings.total_timeout_seconds:g} s",
                    self._retry_after(None),
                ) from error
            except httpx.TransportError as error:
                raise DependencyUnavailableError(
                    self.name, f"the call failed ({type(error).__name__})", self._retry_after(None)
                ) from error
            # Inside the call's span, which then records the error.
            if _failed_status(response.status_code):
                raise DependencyUnavailableError(
                    self.name, f"it answered {response.status_code}", self._retry_after(response)
                )
        return response

    async def call(
        self,
        method: str,
        url: str,
        *,
        parse: Callable[[httpx.Response], T],
        fallback: Callable[[DependencyUnavailableError], T] | None = None,
        params: httpx.QueryParams | dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        json: Any = None,
        content: bytes | None = None,
    ) -> T:
        """``parse`` of the response; ``fallback`` of the error when the dependency is
        unavailable (without one, the error propagates and the API answers 503)."""
        try:
            response = await self.request(
                method, url, params=params, headers=headers, json=json, content=content
            )
        except DependencyUnavailableError as error:
            if fallback is None:
                raise
            return fallback(error)
        return parse(response)

    async def _attempt(self, request: httpx.Request, deadline: float) -> httpx.Response:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        try:
            # A wait for a slot counts against the deadline too.
            await self.bulkhead.acquire(remaining)
        except BulkheadFullError:
            self._observer.attempt_finished(self.name, Outcome.REJECTED_BY_BULKHEAD, 0.0)
            raise
        try:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            try:
                permit = self.breaker.admit()
            except BreakerOpenError:
                self._observer.attempt_finished(self.name, Outcome.REJECTED_BY_BREAKER, 0.0)
                raise
            started = time.perf_counter()
            outcome = Outcome.CANCELLED
            try:
                async with asyncio.timeout(remaining):
                    response = await self._http.send(request)
            except (TimeoutError, httpx.TimeoutException):
                outcome = Outcome.TIMEOUT
                raise
            except Exception:
                # A refused or reset connection, or an answer httpx could not read.
                outcome = Outcome.FAILURE
                raise
            else:
                outcome = self._classify(response.status_code, time.perf_counter() - started)
            finally:
                self.breaker.record(permit, VERDICTS[outcome])
                self._observer.attempt_finished(self.name, outcome, time.perf_counter() - started)
            return response
        finally:
            self.bulkhead.release()

    def _classify(self, status: int, seconds: float) -> Outcome:
        if _failed_status(status):
            return Outcome.FAILURE
        if status >= 400:
            return Outcome.CLIENT_ERROR
        return Outcome.SLOW if seconds >= self._slow_seconds else Outcome.SUCCESS

    async def _retry(
        self, request: httpx.Request, deadline: float, first: httpx.Response | Exception
    ) -> httpx.Response:
        """Attempts after the first, by tenacity (which is given the first's outcome).

        The first attempt runs without tenacity: setting it up costs tens of microseconds
        per call, which only a call that needs a retry should pay.
        """
        pending: list[httpx.Response | Exception] = [first]

        async def attempt() -> httpx.Response:
            if pending:
                outcome = pending.pop()
                if isinstance(outcome, Exception):
                    raise outcome
                return outcome
            return await self._attempt(request, deadline)

        def stop(retry_state: RetryCallState) -> bool:
            if retry_state.attempt_number >= self.settings.retry.max_attempts:
                return True
            if time.monotonic() + retry_state.upcoming_sleep >= deadline:
                return True  # a Retry-After beyond the cap is infinite, so it ends here too
            if self.breaker.refusing_for() > retry_state.upcoming_sleep:
                return True  # the breaker opened: the retry would be refused, unspent
            if not self.budget.try_spend():
                self._observer.budget_exhausted(self.name)
                return True
            return False

        def before_sleep(retry_state: RetryCallState) -> None:
            self._observer.retrying(
                self.name, retry_state.attempt_number + 1, retry_state.upcoming_sleep
            )

        retrying = AsyncRetrying(
            retry=retry_if_exception_type(httpx.TransportError)
            | retry_if_result(_retryable_response),
            wait=self._backoff,
            stop=stop,
            before_sleep=before_sleep,
            retry_error_callback=_last_outcome,
            sleep=asyncio.sleep,
        )
        response: httpx.Response = await retrying(attempt)
        return response

    def _retry_after(self, response: httpx.Response | None) -> float:
        """How long a caller should wait: the open breaker's time, else what the
        dependency asked for, else a second."""
        if (waiting := self.breaker.retry_after_seconds()) > 0:
            return waiting
        if response is not None and (asked := retry_after_seconds(response)):
            return asked
        return 1.0
