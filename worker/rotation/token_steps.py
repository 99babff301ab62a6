"""The verification token's rotation: hand the new token to the receiver, switch Redox, then
make it current, or put the old one back.

Redox sends a destination's ``verificationToken`` with every delivery and keeps only one, so
the receiver must already accept the new token when Redox starts sending it. The receiver
reads its tokens from a store (the destination's secret sink): the *current* one and, during
a rotation, a *pending* one. The steps (each resumable from the record):

1. **publish**: a new random token (48 bytes, URL-safe) goes to the sink as this rotation's
   pending version; its version id (not the value) is recorded, with the end of the
   hand-over. A resumed run reads back the value it published instead of making another.
2. **hand-over**: wait until receivers have had ``handover`` to see the pending version.
3. **switch**: PATCH the destination's ``verificationToken`` (fenced, idempotent).
4. the rotation workflow watches deliveries as for a credential; then **promote** (the
   pending version becomes current, the old one previous), or **undo**: PATCH the current
   (old) token back and withdraw the pending version.

The token value exists only in this run's memory and in the sink: never in Redis, events,
logs or task arguments.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import SecretStr

from worker import guard
from worker.errors import SinkRejected, TransientError
from worker.logging import get_logger
from worker.redox.client import RedoxClient
from worker.secrets.catalog import SourceCatalog
from worker.signals import step_done
from worker.sinks.base import SecretSink
from worker.store.lease import Fence
from worker.store.records import RotationRecord, RotationStore

__all__ = ["HandoverPending", "TokenSteps", "new_token"]

log = get_logger(__name__)

#: Bytes of randomness in a new token (64 URL-safe characters).
TOKEN_BYTES = 48
#: A hand-over is waited out in the run only while this much of its budget stays free.
RUN_MARGIN_SECONDS = 30.0


class HandoverPending(TransientError):
    """The hand-over does not fit in what is left of this run: the task comes back when it
    ends (``retry_after``)."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(message)


def new_token() -> SecretStr:
    """A long random verification token (Redox: treat it like a password)."""
    return SecretStr(secrets.token_urlsafe(TOKEN_BYTES))


@dataclass
class TokenSteps:
    """The steps of a verification-token rotation (see the module docstring)."""

    redox: RedoxClient
    store: RotationStore
    catalog: SourceCatalog
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = field(default=time.sleep)

    def rotate(self, record: RotationRecord, fence: Fence) -> None:
        """Publish, hand over and switch (idempotent on resume)."""
        destination_id = record.destination_id
        policy = self.catalog.token_policy(destination_id)  # none: refused before Redox
        sink = self.catalog.sink_for(destination_id)
        destination = self.redox.get_destination(destination_id)
        record.note(environment_id=destination.environment_id or "", step="read")
        if sink.current() is None:
            raise SinkRejected(
                f"the verification-token store of destination {destination_id} has no current "
                "version: it must hold the token Redox sends now (a revert puts that one back)"
            )
        value = sink.published(record.rotation_id) or new_token()
        version = sink.publish_pending(value, rotation_id=record.rotation_id)
        if not record.get("handover_until"):
            until = self.clock() + policy.handover
            self.store.write_fenced(
                record, fence, token_version=version, handover_until=repr(until), step="publish"
            )
        step_done("issue", record.rotation_id)
        self._hand_over(float(record.get("handover_until") or 0))
        self.redox.update_verification_token(destination_id, value)
        self.store.write_fenced(record, fence, redox_switched="1", step="switch")
        log.info("verification token switched", version=version)
        step_done("switch", record.rotation_id)

    def promote(self, record: RotationRecord) -> None:
        """The watch was clean: the new token becomes current in the receiver's store."""
        self._sink(record).promote(record.rotation_id)
        log.info("verification token promoted to current")

    def undo(self, record: RotationRecord, fence: Fence, *, switch_back: bool) -> list[str]:
        """Put the current (old) token back in Redox if this rotation may have switched it,
        then withdraw the pending version; what was done, for the record."""
        if not record.get("token_version"):
            return []  # nothing published, so nothing switched
        sink = self._sink(record)
        done: list[str] = []
        if switch_back:  # also when a crash hid whether the switch landed: it is idempotent
            old = sink.current()
            if old is None:
                raise SinkRejected("the token store lost its current version: cannot switch back")
            self.redox.update_verification_token(record.destination_id, old)
            self.store.write_fenced(record, fence, redox_switched="", step="rollback")
            done.append("verification token switched back")
        sink.discard(record.rotation_id)
        done.append("pending token withdrawn")
        return done

    def _sink(self, record: RotationRecord) -> SecretSink:
        return self.catalog.sink_for(record.destination_id)

    def _hand_over(self, until: float) -> None:
        """Wait until ``until`` in this run, or come back then if the run cannot wait."""
        wait = until - self.clock()
        if wait <= 0:
            return
        run = guard.current()
        if run is not None and wait > run.remaining() - RUN_MARGIN_SECONDS:
            raise HandoverPending(
                f"receivers get {wait:.0f}s more to see the pending token", retry_after=wait
            )
        log.info("handing the new token over to receivers", wait_seconds=round(wait, 1))
        self.sleep(wait)
