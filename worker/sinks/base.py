"""What a secret sink is: where a rotation publishes a secret the *destination* must learn.

A secret source (:mod:`worker.secrets`) issues the secret Redox presents to the destination's
IdP. Some secrets travel the other way: the destination itself must learn the new value
(the ``verification-token`` Redox sends with every request, redox-api.md §2/§7, has no
dual-token grace period in Redox, so the receiver must accept old and new while the switch
happens). A *secret sink* is the store the destination's receiver reads them from.

The lifecycle is staged, the way AWS Secrets Manager's rotation labels are:

1. :meth:`SecretSink.publish_pending` writes the new value as a *pending* version, next to
   the current one (a receiver accepts both). Idempotent per rotation: called again with
   the same ``rotation_id`` it finds the version it wrote and writes nothing.
2. :meth:`SecretSink.promote` makes that version *current*; the one it replaces stays
   readable as *previous*.
3. :meth:`SecretSink.discard` (rollback) takes the pending mark off that version, so no
   receiver accepts it any more; the current value never changed.

Rules every implementation keeps:

* Values go in and come out only as :class:`pydantic.SecretStr`; version ids are not
  secret and may be recorded.
* Errors are :class:`~worker.errors.SinkUnavailable` (transient: throttling, 5xx,
  timeouts) or :class:`~worker.errors.SinkRejected` (permanent: access denied, no such
  secret, a conflicting version). Messages never quote a value.
* :meth:`~SecretSink.current` and :meth:`~SecretSink.pending` read values back: for the
  sandbox receiver and tests only, never logged.
"""

from __future__ import annotations

from typing import Protocol

from pydantic import SecretStr

__all__ = ["SecretSink"]


class SecretSink(Protocol):
    """Publishes a destination's new secret in stages: pending, then current."""

    #: ``aws-secrets-manager``.
    kind: str

    def publish_pending(self, value: SecretStr, *, rotation_id: str) -> str:
        """Write ``value`` as the pending version for this rotation; return its version id."""
        ...

    def promote(self, rotation_id: str) -> None:
        """Make this rotation's version current (the replaced one stays as previous)."""
        ...

    def discard(self, rotation_id: str) -> None:
        """Withdraw this rotation's version (rollback); nothing to withdraw is success."""
        ...

    def published(self, rotation_id: str) -> SecretStr | None:
        """The value this rotation published (None when it published none): a resumed
        rotation switches Redox to exactly the value its receivers were handed."""
        ...

    def current(self) -> SecretStr | None:
        """The current value (None when the secret has no current version)."""
        ...

    def pending(self) -> SecretStr | None:
        """The pending value (None when no version is pending)."""
        ...
