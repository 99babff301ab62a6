"""Which other destinations share a destination's auth credential (asked of Redox).

In Redox a credential is its own object; several destinations may reference the same one
(one OAuth client serving several endpoints). Rotating one of them moves only that one: the
others keep the shared credential, which retires only when none uses it, and their own
rotations adopt the credential made for the first (see :mod:`worker.store.credentials`).
``rotator status DEST`` and ``rotator rotate DEST`` say who shares, so nobody is surprised.
"""

from __future__ import annotations

from dataclasses import dataclass

from worker.errors import ConfigError, RotatorError
from worker.logging import get_logger
from worker.runtime import Runtime

__all__ = ["Sharing", "sharing"]

log = get_logger(__name__)


@dataclass(frozen=True)
class Sharing:
    """A destination's credential and the other destinations that reference it."""

    credential_id: str
    others: list[str]


def sharing(runtime: Runtime, destination_id: str) -> Sharing | None:
    """Ask Redox (two calls); None when it cannot be told (no Redox settings, no credential,
    or Redox unavailable: this is information, never a reason to fail a command)."""
    try:
        runtime.settings.require_redox()
        destination = runtime.redox.get_destination(destination_id)
        credential = destination.auth_credential
        if credential is None or destination.environment_id is None:
            return None
        others = [
            d.id
            for d in runtime.redox.list_destinations(destination.environment_id)
            if d.auth_credential == credential and d.id != destination_id
        ]
    except (ConfigError, RotatorError) as exc:
        log.info("sharing not known", error=type(exc).__name__)
        return None
    return Sharing(credential, sorted(others))
