"""The running rotation's limits, seen by every outgoing call it makes: a deadline and a fence.

A task run sets a :class:`RunGuard` for its thread (:func:`guarded_run`); the Redox client
and the IdP adapters consult it without being handed it:

* **Deadline.** Celery enforces time limits only on the prefork pool; the default is
  threads. So the run carries its own deadline (``ROTATOR_CELERY__SOFT_TIME_LIMIT`` from
  its start): every exchange checks it before it is sent (:func:`check_time`), takes at
  most what is left (:func:`call_seconds`) and reads its reply in chunks against it
  (:func:`read_reply`), so a peer that answers a byte at a time cannot hold a worker slot
  past it. Past the deadline the run stops with :class:`RunTimedOut` (transient: the task
  resumes the rotation later from its record).
* **Fence.** Before every attempt of every write (Redox PATCH/POST/DELETE, an IdP's secret
  create or revoke), after any limiter wait, :func:`before_write` checks the lease: a worker
  that was paused past its lease and replaced stops (``LockLost``) instead of writing.

Outside a run (retirement, the CLI) there is no guard: only the per-call limit applies.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from worker.errors import RunTimedOut

if TYPE_CHECKING:
    from worker.store.lease import Fence

__all__ = [
    "RunGuard",
    "before_write",
    "call_seconds",
    "check_time",
    "current",
    "guarded_run",
    "read_reply",
]


@dataclass(frozen=True)
class RunGuard:
    """A run's deadline (``time.monotonic()`` seconds) and its lease."""

    deadline: float
    fence: Fence | None = None

    def remaining(self) -> float:
        """Seconds left before the deadline (negative when past it)."""
        return self.deadline - time.monotonic()


_current: ContextVar[RunGuard | None] = ContextVar("rotator_run_guard", default=None)


def current() -> RunGuard | None:
    """The guard of the run on this thread, if any."""
    return _current.get()


@contextmanager
def guarded_run(seconds: float, fence: Fence | None) -> Iterator[RunGuard]:
    """Set a guard with a deadline ``seconds`` from now for the calls made inside."""
    guard = RunGuard(time.monotonic() + seconds, fence)
    token = _current.set(guard)
    try:
        yield guard
    finally:
        _current.reset(token)


def check_time(what: str) -> None:
    """Raise RunTimedOut when the run's deadline has passed (before sending ``what``)."""
    guard = _current.get()
    if guard is not None and guard.remaining() <= 0:
        raise RunTimedOut(f"{what}: the run's time budget is spent; it resumes later")


def before_write(what: str) -> None:
    """The deadline check, then the fence check, before an attempt to write ``what``."""
    check_time(what)
    guard = _current.get()
    if guard is not None and guard.fence is not None:
        guard.fence.check()


def call_seconds(per_call: float) -> float:
    """How long one exchange may take: ``per_call``, or less if the run ends sooner."""
    guard = _current.get()
    if guard is None:
        return per_call
    return max(0.001, min(per_call, guard.remaining()))


def read_reply(
    reply: httpx.Response,
    *,
    seconds: float,
    max_bytes: int,
    too_big: Callable[[], Exception],
    too_slow: Callable[[], Exception],
) -> bytes:
    """The reply's body, read in chunks: ``too_big()`` past ``max_bytes``, ``too_slow()``
    when the whole reply takes longer than ``seconds`` (or the run's deadline passes)."""
    until = time.monotonic() + call_seconds(seconds)
    chunks: list[bytes] = []
    size = 0
    for chunk in reply.iter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise too_big()
        chunks.append(chunk)
        if time.monotonic() > until:
            raise too_slow()
    return b"".join(chunks)
