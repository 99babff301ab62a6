"""The tenacity policy for Redox calls: only transient errors are retried.

Exponential backoff with full jitter, Redox's ``Retry-After`` honoured when it sends one,
bounded by attempts *and* a deadline: no wait is started that would end past
``max_seconds`` (so a call never holds a worker slot past the task's soft time limit; the
last error goes up and Celery retries the task later). Each retry is logged with attempt,
status and wait; never with a body.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    retry_if_not_exception_type,
    stop_after_attempt,
    stop_before_delay,
    wait_random_exponential,
)

from config.settings import RetrySettings
from worker.errors import RateLimited, RunTimedOut, TransientError
from worker.logging import get_logger

__all__ = ["call_with_retry", "retry_after_seconds", "retrying"]

T = TypeVar("T")
log = get_logger(__name__)


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None if unusable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, IndexError):
            return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


class _WaitFullJitterOrRetryAfter:
    """Full-jitter exponential wait, replaced by Retry-After when Redox gives one.

    Retry-After is honoured in full (retrying sooner only earns another 429); when it is
    longer than the deadline allows, the stop condition gives up instead of waiting.
    """

    def __init__(self, initial: float, maximum: float) -> None:
        self._jitter = wait_random_exponential(multiplier=initial, max=maximum)

    def __call__(self, state: RetryCallState) -> float:
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            return float(max(exc.retry_after, 0.0))
        return float(self._jitter(state))


def _log_retry(what: str) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        log.warning(
            "redox call retried",
            call=what,
            attempt=state.attempt_number,
            status=getattr(exc, "status", None),
            error=type(exc).__name__ if exc else None,
            wait_seconds=round(state.upcoming_sleep, 3),
        )

    return before_sleep


def retrying(policy: RetrySettings, what: str) -> Retrying:
    """A tenacity ``Retrying`` for one logical Redox call named ``what``."""
    return Retrying(
        # A run out of time stops at once: its task resumes the rotation later.
        retry=retry_if_exception_type(TransientError) & retry_if_not_exception_type(RunTimedOut),
        stop=stop_after_attempt(policy.max_attempts) | stop_before_delay(policy.max_seconds),
        wait=_WaitFullJitterOrRetryAfter(policy.backoff_initial, policy.backoff_max),
        before_sleep=_log_retry(what),
        reraise=True,
    )


def call_with_retry(policy: RetrySettings, what: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` under :func:`retrying`; the last transient error is re-raised as is."""
    return retrying(policy, what)(fn)
