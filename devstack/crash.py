"""Crash injection for the chaos suite and the crash tests: a worker that SIGKILLs itself.

Run a worker through this bootstrap instead of ``rotator`` itself::

    python -m devstack.crash --after switch worker --pool prefork -c 1

It connects a receiver to :data:`worker.signals.rotation_step_done` that kills the process
(SIGKILL, no cleanup) once per rotation right after ``STEP`` (``read``, ``issue``,
``switch``, ``verify``, or ``publish``: right after the terminal event was written), then
hands the rest of the command line to ``rotator``. The "once" is a Redis key under
``<prefix>:devstack:crashed:`` so the redelivered run goes on. Only this tooling installs
the receiver: a production worker never reads a crash setting.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

import redis

from config.settings import load_settings
from worker.signals import rotation_step_done

__all__ = ["install", "main"]

STEPS = ("read", "issue", "rehearse", "create", "switch", "verify", "publish")


def install(step: str, client: redis.Redis, prefix: str) -> None:
    """Kill this process once per rotation right after ``step``."""
    if step not in STEPS:
        raise SystemExit(f"devstack.crash: --after must be one of {', '.join(STEPS)}")

    def crash(signal_: Any = None, sender: Any = None, **named: Any) -> None:
        if named.get("step") != step:
            return
        key = f"{prefix}:devstack:crashed:{named.get('rotation_id')}:{step}"
        if client.set(key, repr(time.time()), nx=True, ex=3600):
            os.kill(os.getpid(), signal.SIGKILL)

    rotation_step_done.connect(crash, weak=False)


def main(argv: list[str]) -> None:
    """``--after STEP`` then the ``rotator`` arguments."""
    if len(argv) < 2 or argv[0] != "--after":
        raise SystemExit("usage: python -m devstack.crash --after STEP <rotator arguments>")
    settings = load_settings()
    install(argv[1], redis.Redis.from_url(settings.redis_dsn), settings.key_prefix)
    sys.argv = ["rotator", *argv[2:]]
    from worker.cli.main import main as rotator

    rotator()


if __name__ == "__main__":
    main(sys.argv[1:])
