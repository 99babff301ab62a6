"""The tenacity policy: transient errors retried within attempts and a deadline, nothing else."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from structlog.testing import capture_logs

from config.settings import RetrySettings
from worker.errors import (
    BadRedoxResponse,
    RateLimited,
    RedoxNotFound,
    RedoxRejected,
    RedoxUnavailable,
    RotatorError,
)
from worker.redox.retry import call_with_retry, retry_after_seconds, retrying


class Flaky:
    """Fails with the given errors in turn, then returns ``"ok"``; records each call."""

    def __init__(self, *errors: RotatorError) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def policy(**changes: float) -> RetrySettings:
    values: dict[str, float] = {
        "max_attempts": 4,
        "max_seconds": 30.0,
        "backoff_initial": 0.001,
        "backoff_max": 0.002,
    }
    values.update(changes)
    return RetrySettings.model_validate(values)


def run(settings: RetrySettings, fn: Callable[[], str], sleeps: list[float]) -> str:
    """call_with_retry's policy, with sleeping recorded instead of done."""
    retryer = retrying(settings, "test call").copy(sleep=sleeps.append)
    return retryer(fn)


def test_transient_errors_are_retried_until_success() -> None:
    flaky = Flaky(RedoxUnavailable("503", status=503), RateLimited("429"))
    assert call_with_retry(policy(), "test", flaky) == "ok"
    assert flaky.calls == 3


def test_transient_errors_stop_at_max_attempts() -> None:
    flaky = Flaky(*(RedoxUnavailable(f"attempt {n}") for n in range(1, 10)))
    with pytest.raises(RedoxUnavailable, match=r"^attempt 3$"):
        call_with_retry(policy(max_attempts=3), "test", flaky)
    assert flaky.calls == 3


@pytest.mark.parametrize(
    "error",
    [
        RedoxRejected("403", status=403),
        RedoxNotFound("404", status=404),
        BadRedoxResponse("not json"),
        ValueError("a bug"),
    ],
)
def test_permanent_errors_are_not_retried(error: Exception) -> None:
    calls = 0

    def fail() -> str:
        nonlocal calls
        calls += 1
        raise error

    with pytest.raises(type(error)):
        call_with_retry(policy(), "test", fail)
    assert calls == 1


def test_retry_after_is_the_wait() -> None:
    sleeps: list[float] = []
    flaky = Flaky(RateLimited("429", retry_after=2.5), RateLimited("429", retry_after=0.0))
    assert run(policy(backoff_max=0.002), flaky, sleeps) == "ok"
    assert sleeps == [2.5, 0.0]


def test_without_retry_after_the_backoff_is_jittered_and_capped() -> None:
    sleeps: list[float] = []
    flaky = Flaky(RateLimited("429"), RedoxUnavailable("503"), RedoxUnavailable("503"))
    run(policy(backoff_initial=0.5, backoff_max=1.0), flaky, sleeps)
    assert len(sleeps) == 3
    assert all(0.0 <= wait <= 1.0 for wait in sleeps)


def test_no_wait_is_started_past_the_deadline() -> None:
    sleeps: list[float] = []
    flaky = Flaky(RateLimited("429", retry_after=1.0), RateLimited("429", retry_after=60.0))
    with pytest.raises(RateLimited) as caught:
        run(policy(max_attempts=10, max_seconds=5.0), flaky, sleeps)
    assert caught.value.retry_after == 60.0  # handed up for the task-level retry
    assert sleeps == [1.0]
    assert flaky.calls == 2


def test_deadline_stops_retries_of_slow_attempts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Attempts that each take 4 s (a fake clock) exhaust a 10 s budget after three tries."""
    now = [1000.0]
    monkeypatch.setattr("tenacity.time.monotonic", lambda: now[0])

    def slow() -> str:
        now[0] += 4.0
        raise RedoxUnavailable("timed out")

    counter = Flaky()

    def attempt() -> str:
        counter()
        return slow()

    with pytest.raises(RedoxUnavailable):
        run(policy(max_attempts=50, max_seconds=10.0), attempt, [])
    assert counter.calls == 3


def test_retries_are_logged_without_bodies() -> None:
    with capture_logs() as logs:
        run(policy(), Flaky(RedoxUnavailable("503", status=503)), [])
    [entry] = [e for e in logs if e["event"] == "redox call retried"]
    assert entry["call"] == "test call"
    assert (entry["attempt"], entry["status"], entry["error"]) == (1, 503, "RedoxUnavailable")


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("3", 3.0),
        ("0.5", 0.5),
        ("-4", 0.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # a date in the past: no wait
        ("inf", None),
        ("nan", None),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_header_parsing(header: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(header) == seconds
