"""Celery signals the service sends, for code that extends a worker without patching it.

``rotation_step_done`` is sent right after each step of a rotation has been recorded
(``read``, ``issue``, ``switch``, ``verify``, and ``publish`` once the terminal event is
written), with ``step`` and ``rotation_id``. The chaos suite's crash injection
(:mod:`devstack.crash`) connects to it; the service itself connects nothing.
"""

from __future__ import annotations

from celery.utils.dispatch.signal import Signal

__all__ = ["rotation_step_done", "step_done"]

rotation_step_done = Signal(name="rotation_step_done")


def step_done(step: str, rotation_id: str) -> None:
    """Send :data:`rotation_step_done` (a no-op when nothing is connected)."""
    rotation_step_done.send(sender=None, step=step, rotation_id=rotation_id)
