"""What the Celery broker (kombu's Redis transport) still holds, read without consuming.

The reaper needs one answer: is a claimed rotation's message still somewhere the workers
will get it from, or did the broker lose it? kombu keeps a queue as a Redis list named
after it (one more list per priority step, ``<queue>\\x06\\x16<n>``), and every message
a worker has reserved but not acknowledged (running, or waiting for its retry countdown)
in the ``unacked`` hash until it is acked or restored. A task message carries its
arguments in plain text in the ``argsrepr`` header, so the rotation id is found by a
substring search.

A queue longer than :data:`SEARCH_LIMIT` is a backlog: every rotation counts as held
(searching it each tick would cost more than waiting one more tick).
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from config.celery import ROTATION_QUEUE

__all__ = ["SEARCH_LIMIT", "BrokerView"]

#: Longest rotation queue searched for a lost message.
SEARCH_LIMIT = 2_000
#: kombu's Redis transport: the unacked hash and the priority queues' name separator/steps.
UNACKED_KEY = "unacked"
PRIORITY_SEPARATOR = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)


def _queue_keys(queue: str) -> list[str]:
    return [queue if step == 0 else f"{queue}{PRIORITY_SEPARATOR}{step}" for step in PRIORITY_STEPS]


class BrokerView:
    """The messages in the rotation queue and the unacked hash, read once on first use."""

    def __init__(self, client: Any, queue: str = ROTATION_QUEUE) -> None:
        self._r = client
        self._queue = queue

    def holds(self, rotation_id: str) -> bool:
        """True if a message naming ``rotation_id`` is queued or reserved (or the queue is
        a backlog too long to search)."""
        if self._messages is None:
            return True
        needle = rotation_id.encode()
        return any(needle in message for message in self._messages)

    @cached_property
    def _messages(self) -> list[bytes] | None:
        """Every message queued or reserved; None for a backlog (not searched)."""
        keys = _queue_keys(self._queue)
        with self._r.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.llen(key)
            lengths = pipe.execute()
        if sum(int(n) for n in lengths) > SEARCH_LIMIT:
            return None
        # One MULTI: a message moving from a queue to the unacked hash is seen in one of them.
        with self._r.pipeline(transaction=True) as pipe:
            for key in keys:
                pipe.lrange(key, 0, -1)
            pipe.hvals(UNACKED_KEY)
            rows = pipe.execute()
        return [_bytes(m) for row in rows for m in row]


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()
