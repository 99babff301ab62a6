"""Children that cannot outlive the process that started them.

Every child the dev stack starts (redis-server, the sandbox, workers, beat, Flower) runs in
its own session (a Ctrl-C in the terminal reaches only the parent, which then stops them in
order) and, on Linux, with the parent-death signal set: if the parent dies without cleaning
up (SIGKILL, a lost terminal), the kernel sends each child SIGTERM.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Callable

__all__ = ["die_with_parent"]

_PR_SET_PDEATHSIG = 1


def _set_pdeathsig(parent: int) -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the parent died between fork and prctl
        os.kill(os.getpid(), signal.SIGTERM)


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` for :class:`subprocess.Popen` that ties the child's life to this
    process (None where the platform has no parent-death signal)."""
    if not sys.platform.startswith("linux"):
        return None
    parent = os.getpid()
    return lambda: _set_pdeathsig(parent)
