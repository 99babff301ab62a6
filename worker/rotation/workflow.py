"""One rotation, start to terminal event: testable without Celery.

``RotationWorkflow.run`` is called once per task run (first delivery, retry, redelivery,
or the watch's verdict), under the destination's lease. It reads the rotation record once,
resumes from it, and either leaves the rotation *watching* (switched, deliveries watched
without holding a worker) or ends it in exactly one terminal outcome:

========================  =============================================================
``succeeded``             rehearsed, switched, and the watch window closed clean
``rolled_back``           a rehearsal the IdP refused (``RehearsalFailed``), deliveries
                          failing after the switch (``DeliveriesFailing``), or another
                          permanent error after something was made: everything undone
``failed``                a permanent error before anything was made, or drift
                          (``DriftDetected``: someone else moved the destination)
``needs_attention``       a person must act: no secret source, the IdP refused its
                          management call (limit, permission), retries exhausted, an
                          unexpected error, or an undo that could not finish
========================  =============================================================

The run keeps its copy of the record current as it writes (see
:class:`worker.store.records.RotationRecord`), so nothing is read back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Final

import redis

from config.settings import VerifySettings
from worker.errors import (
    DeliveriesFailing,
    DriftDetected,
    IdpRejected,
    LockLost,
    PermanentError,
    RehearsalFailed,
    RotatorError,
    SinkRejected,
    SourceNotConfigured,
    TransientError,
)
from worker.events import Outcome
from worker.logging import bind_rotation, get_logger
from worker.metrics import MetricsRecorder
from worker.rotation.outcomes import Finisher, rotation_event
from worker.rotation.secret_steps import SecretSteps
from worker.rotation.steps import RotationSteps
from worker.rotation.token_steps import TokenSteps
from worker.secrets.base import SecretSource
from worker.store.lease import Fence
from worker.store.records import TOKEN_KIND, RotationRecord, RotationStore
from worker.watch.store import WatchStore

__all__ = ["WATCHING", "RotationWorkflow", "SourceFor"]

log = get_logger(__name__)

#: What :meth:`RotationWorkflow.run` returns while the switch is being watched.
WATCHING: Final = "watching"

#: The secret source of a destination (by id; SourceNotConfigured when there is none).
SourceFor = Callable[[str], SecretSource]
#: Errors that need a person, whatever was made: the outcome is needs_attention.
PERSON_MUST_ACT = (SourceNotConfigured, IdpRejected, SinkRejected)


@dataclass
class RotationWorkflow:
    """Runs the steps of one rotation and publishes its events."""

    steps: RotationSteps
    secrets: SecretSteps
    store: RotationStore
    source_for: SourceFor
    verify: VerifySettings
    watch: WatchStore
    finisher: Finisher
    tokens: TokenSteps | None = None
    metrics: MetricsRecorder | None = None
    clock: Callable[[], float] = time.time

    def run(
        self, rotation_id: str, destination_id: str, fence: Fence, *, final_attempt: bool
    ) -> str | None:
        """Run (or resume) the rotation; return its terminal outcome, or ``WATCHING``.

        A rotation that is no longer the destination's claimed one (superseded) is ended
        as failed, undoing anything it made. Raises TransientError when Redox or the IdP is
        unavailable and ``final_attempt`` is false, and LockLost when another worker took
        over (nothing more is written).
        """
        try:
            return self._run_from_snapshot(rotation_id, destination_id, fence, final_attempt)
        finally:
            if self.metrics is not None:
                self.metrics.flush_if_due()

    def _run_from_snapshot(
        self, rotation_id: str, destination_id: str, fence: Fence, final_attempt: bool
    ) -> str | None:
        snapshot = self.store.snapshot(rotation_id, destination_id)
        record = snapshot.record
        if record is None:
            raise PermanentError(f"rotation {rotation_id} has no record (expired or unknown)")
        if record.outcome:
            self.finisher.after(record)
            return record.outcome
        with bind_rotation(rotation_id, record.destination_id):
            if snapshot.active not in (None, rotation_id):
                superseded = PermanentError(f"superseded by rotation {snapshot.active}")
                return self._fail(record, fence, superseded)
            if record.get("status") == WATCHING:
                verdict = record.get("watch_verdict")
                if not verdict:
                    return WATCHING  # the watch sends it back with a verdict
                return self._guarded(
                    record, fence, final_attempt, lambda: self._conclude(record, fence, verdict)
                )
            record.note(status="running", last_started_at=repr(self.clock()))
            started = rotation_event(record, "started", attempt=record.attempt + 1)
            log.info("rotation started", attempt=self.store.start(record, started))
            return self._guarded(record, fence, final_attempt, lambda: self._rotate(record, fence))

    def _guarded(
        self,
        record: RotationRecord,
        fence: Fence,
        final_attempt: bool,
        body: Callable[[], str],
    ) -> str:
        """Run ``body``; every exception ends in one terminal outcome (or a task retry)."""
        try:
            return body()
        except LockLost:
            log.warning("rotation stopped: lease lost")
            raise
        except redis.RedisError:  # Redis went away: the task waits for it and retries
            raise
        except DriftDetected as exc:
            return self._drift(record, fence, exc)
        except PERSON_MUST_ACT as exc:
            return self._fail(record, fence, exc, attention=True)
        except PermanentError as exc:
            return self._fail(record, fence, exc)
        except TransientError as exc:
            self.store.write(record, last_error=f"{type(exc).__name__}: {exc}"[:300])
            if not final_attempt:
                log.warning("rotation will be retried", error=type(exc).__name__)
                raise
            return self._fail(record, fence, exc, attention=True)
        except RotatorError as exc:  # e.g. ConfigError (the signing key became unreadable)
            log.warning("rotation failed: a person must act", error=type(exc).__name__)
            return self._fail(record, fence, exc, attention=True)
        except Exception as exc:  # a bug or a surprise: undo, and a person looks at it
            log.exception("rotation failed unexpectedly", error=type(exc).__name__)
            return self._fail(record, fence, exc, attention=True)

    def _timed(self, step: str) -> AbstractContextManager[None]:
        return self.metrics.timed(step) if self.metrics is not None else nullcontext()

    # -- forward -------------------------------------------------------------------------

    def _rotate(self, record: RotationRecord, fence: Fence) -> str:
        if record.kind == TOKEN_KIND:
            with self._timed("switch"):
                self._token_steps().rotate(record, fence)
            return self._switched(record, fence)
        source = self.source_for(record.destination_id)  # refused before any Redox call
        with self._timed("read"):
            destination, _, old_id = self.steps.read(record, fence)
        # A credential an earlier run created although its reply was lost is found by name:
        # it holds the secret that run issued, which must not be revoked and issued again.
        new_id = self.steps.recover_created(record, source.kind)
        if new_id and destination.auth_credential == new_id:
            log.info("switch already done by an earlier run")
            return self._switched(record, fence)
        if not new_id:
            with self._timed("issue"):
                new_id = self._new_credential(record, source, old_id, fence)
        with self._timed("switch"):
            self.steps.reread(record)
            self.steps.switch_and_verify(record, new_id, fence)
        return self._switched(record, fence)

    def _new_credential(
        self, record: RotationRecord, source: SecretSource, old_id: str, fence: Fence
    ) -> str:
        """Adopt a sibling's fresh credential, or issue, rehearse and create one."""
        old = self.steps.old_credential(old_id)
        adopted = self.steps.adopt(record, old_id, fence)
        if adopted is not None:
            return adopted
        with self.secrets.client_turn(source, old.client_id, record.rotation_id):
            adopted = self.steps.adopt(record, old_id, fence)  # made while we waited
            if adopted is not None:
                return adopted
            issued = self.secrets.issue(record, source, old.strategy, old.client_id, fence)
            with self._timed("rehearse"):
                self.secrets.rehearse(record, source, old.strategy, old.values, issued)
            return self.steps.create(record, old, issued, source.kind, fence)

    def _switched(self, record: RotationRecord, fence: Fence) -> str:
        """The destination is on the new credential: watch it, or end when no watch."""
        now = self.clock()
        self.store.publish_once(
            record.rotation_id, "switched_published", rotation_event(record, "switched")
        )
        if self.verify.watch_seconds <= 0:
            return self._succeed(record, fence)
        until = now + self.verify.watch_seconds
        self.store.write_fenced(
            record,
            fence,
            status=WATCHING,
            step=WATCHING,
            switched_at=repr(now),
            watch_until=repr(until),
        )
        self.watch.add(record.rotation_id, now + min(self.verify.poll_seconds, until - now))
        log.info("switched; watching deliveries", watch_seconds=self.verify.watch_seconds)
        return WATCHING

    def _conclude(self, record: RotationRecord, fence: Fence, verdict: str) -> str:
        """The watch's verdict: succeeded, reverted, or drift."""
        if verdict == "clean":
            return self._succeed(record, fence)
        if verdict == "drift":
            found = record.get("watch_found_credential")
            raise DriftDetected(
                f"destination {record.destination_id} was moved to credential {found} during "
                f"the watch (made by this rotation: {record.get('new_credential_id')})",
                found=found,
            )
        after = record.get("watch_failures_after") or "?"
        before = record.get("watch_failures_before") or "?"
        failing = DeliveriesFailing(
            f"{after} failed deliveries to the destination since the switch, {before} in as "
            "long before it: switched back to the old credential"
        )
        with self._timed("rollback"):
            self._undo(record, fence, switch_back=True)
        return self.finisher.finish(record, Outcome.ROLLED_BACK, failing, fence)

    def _succeed(self, record: RotationRecord, fence: Fence) -> str:
        if record.kind == TOKEN_KIND:  # only now may receivers drop the old token
            self._token_steps().promote(record)
        return self.finisher.finish(record, Outcome.SUCCEEDED, None, fence)

    def _token_steps(self) -> TokenSteps:
        if self.tokens is None:
            raise SourceNotConfigured("verification-token rotations are not set up here")
        return self.tokens

    # -- undo ----------------------------------------------------------------------------

    def _undo(self, record: RotationRecord, fence: Fence, *, switch_back: bool) -> list[str]:
        """Put the old credential back (``switch_back``), delete the unused new credential,
        revoke the new IdP secret once no credential holds it; record what was done. A token
        rotation puts the old token back and withdraws the pending one."""
        if record.kind == TOKEN_KIND:
            done = self._token_steps().undo(record, fence, switch_back=switch_back)
            self.store.write(record, rollback=("; ".join(done) or "nothing to undo")[:300])
            return done
        made = self.steps.new_credential(record)
        done = self.steps.switch_back(record, fence) if switch_back and made else []
        done += self.steps.discard_new(record, fence)
        if record.get("idp_issue_started") and (not made or record.get("new_credential_deleted")):
            revoked = self.secrets.revoke_new(record, self.source_for(record.destination_id))
            done += [f"revoked secret {s}" for s in revoked]
        self.store.write(record, rollback=("; ".join(done) or "nothing to undo")[:300])
        log.info("undone", done=done)
        return done

    def _fail(
        self,
        record: RotationRecord,
        fence: Fence,
        exc: BaseException,
        *,
        attention: bool = False,
    ) -> str:
        log.warning("rotation failed; undoing what it made", error=type(exc).__name__)
        try:
            with self._timed("rollback"):
                undone = self._undo(record, fence, switch_back=True)
        except LockLost:
            raise
        except DriftDetected:  # moved by someone else meanwhile: undo ours, never theirs
            undone = self._undo(record, fence, switch_back=False)
        except Exception as rollback_error:
            return self._stuck(record, fence, exc, rollback_error)
        if attention:
            outcome = Outcome.NEEDS_ATTENTION
        elif undone or isinstance(exc, RehearsalFailed):
            outcome = Outcome.ROLLED_BACK
        else:
            outcome = Outcome.FAILED
        return self.finisher.finish(record, outcome, exc, fence)

    def _drift(self, record: RotationRecord, fence: Fence, exc: DriftDetected) -> str:
        log.warning("drift detected; not overwriting", found=exc.found)
        self.store.publish_once(
            record.rotation_id,
            "drift_published",
            rotation_event(record, "drift_detected", error=exc, foundCredentialId=exc.found),
        )
        try:
            self._undo(record, fence, switch_back=False)  # ours only; theirs stays
        except LockLost:
            raise
        except Exception as rollback_error:
            return self._stuck(record, fence, exc, rollback_error)
        return self.finisher.finish(record, Outcome.FAILED, exc, fence)

    def _stuck(
        self,
        record: RotationRecord,
        fence: Fence,
        exc: BaseException,
        rollback_error: BaseException,
    ) -> str:
        log.error("undo failed", error=type(rollback_error).__name__)
        self.store.write(record, rollback=f"failed: {type(rollback_error).__name__}")
        return self.finisher.finish(record, Outcome.NEEDS_ATTENTION, exc, fence)
