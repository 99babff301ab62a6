"""One rotation, start to terminal event: testable without Celery.

``RotationWorkflow.run`` is called once per task run (first delivery, retry or redelivery),
under the destination's lease. It reads the rotation record once, resumes from it, runs the
steps, and ends in exactly one terminal outcome (``succeeded``, ``failed``, ``rolled_back``
or ``needs_attention``), or raises a TransientError for the task to retry later when budget
remains. The run keeps its copy of the record current as it writes (see
:class:`worker.store.records.RotationRecord`), so nothing is read back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from worker.errors import DriftDetected, LockLost, PermanentError, TransientError
from worker.events import cloud_event, error_data
from worker.logging import bind_rotation, get_logger
from worker.metrics import MetricsRecorder
from worker.rotation.secrets import SecretSource
from worker.rotation.steps import RotationSteps
from worker.signals import step_done
from worker.store.lease import Fence
from worker.store.records import RotationRecord, RotationStore

__all__ = ["AfterRotation", "RotationWorkflow", "rotation_event"]

log = get_logger(__name__)

#: Called after a terminal outcome is recorded (schedule next due, queue retirement).
#: Must be idempotent: a redelivered task calls it again.
AfterRotation = Callable[[RotationRecord], None]

#: The secret source for a destination, from its registry policy JSON (None: no policy).
SourceForPolicy = Callable[[str | None], SecretSource]


def rotation_event(
    record: RotationRecord, outcome: str, *, error: BaseException | None = None, **extra: Any
) -> dict[str, Any]:
    """The CloudEvent for ``rotator.rotation.<outcome>`` from the record (ids only)."""
    data: dict[str, Any] = {
        "rotationId": record.rotation_id,
        "destinationId": record.destination_id,
        "environmentId": record.get("environment_id"),
        "oldCredentialId": record.get("old_credential_id"),
        "newCredentialId": record.get("new_credential_id"),
        "trigger": record.get("trigger"),
        "attempt": record.attempt,
        "error": error_data(error),
    }
    data.update(extra)
    return cloud_event(f"rotator.rotation.{outcome}", record.destination_id, data)


@dataclass
class RotationWorkflow:
    """Runs the steps of one rotation and publishes its events."""

    steps: RotationSteps
    store: RotationStore
    source_for_policy: SourceForPolicy
    after_rotation: AfterRotation | None = None
    metrics: MetricsRecorder | None = None
    clock: Callable[[], float] = time.time

    def run(
        self, rotation_id: str, destination_id: str, fence: Fence, *, final_attempt: bool
    ) -> str | None:
        """Run (or resume) the rotation; return its terminal outcome.

        A rotation that is no longer the destination's claimed one (superseded) is ended
        as failed, undoing anything it made. Raises TransientError when Redox is
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
            self._after(record)
            return record.outcome
        with bind_rotation(rotation_id, record.destination_id):
            if snapshot.active not in (None, rotation_id):
                superseded = PermanentError(f"superseded by rotation {snapshot.active}")
                return self._fail(record, fence, superseded)
            return self._run(record, fence, snapshot.policy_json, final_attempt=final_attempt)

    def _run(
        self, record: RotationRecord, fence: Fence, policy_json: str | None, *, final_attempt: bool
    ) -> str:
        record.note(status="running", last_started_at=repr(self.clock()))
        started = rotation_event(record, "started", attempt=record.attempt + 1)
        attempt = self.store.start(record, started)
        log.info("rotation started", attempt=attempt)
        try:
            self._rotate(record, fence, policy_json)
        except LockLost:
            log.warning("rotation stopped: lease lost")
            raise
        except DriftDetected as exc:
            return self._drift(record, fence, exc)
        except PermanentError as exc:
            return self._fail(record, fence, exc)
        except TransientError as exc:
            self.store.write(record, last_error=f"{type(exc).__name__}: {exc}"[:300])
            if not final_attempt:
                log.warning("rotation will be retried", error=type(exc).__name__)
                raise
            return self._give_up(record, fence, exc)
        return self._finish(record, "succeeded", None)

    def _timed(self, step: str) -> AbstractContextManager[None]:
        return self.metrics.timed(step) if self.metrics is not None else nullcontext()

    def _roll_back(self, record: RotationRecord, fence: Fence) -> list[str]:
        with self._timed("rollback"):
            return self.steps.roll_back(record, fence)

    def _rotate(self, record: RotationRecord, fence: Fence, policy_json: str | None) -> None:
        with self._timed("read"):
            destination, environment_id, old_id = self.steps.read(record, fence)
        # read() records only the old credential; ids and new_credential_id are as loaded.
        new_id = record.get("new_credential_id")
        if new_id and destination.auth_credential == new_id:
            log.info("switch already done by an earlier run")
            with self._timed("switch"):
                self.steps.switch_and_verify(record, new_id, fence)
            return
        source = self.source_for_policy(policy_json)
        with self._timed("issue"):
            new_id = self.steps.issue(record, destination, environment_id, old_id, source, fence)
        with self._timed("switch"):
            self.steps.switch_and_verify(record, new_id, fence)

    def _fail(self, record: RotationRecord, fence: Fence, exc: PermanentError) -> str:
        log.warning("rotation failed permanently; rolling back", error=type(exc).__name__)
        try:
            undone = self._roll_back(record, fence)
        except LockLost:
            raise
        except (TransientError, PermanentError) as rollback_error:
            return self._stuck(record, exc, rollback_error)
        outcome = "rolled_back" if record.get("new_credential_id") or undone else "failed"
        log.info("rollback done", undone=undone)
        return self._finish(record, outcome, exc)

    def _drift(self, record: RotationRecord, fence: Fence, exc: DriftDetected) -> str:
        log.warning("drift detected; not overwriting", error=str(exc))
        self.store.publish_once(
            record.rotation_id,
            "drift_published",
            rotation_event(record, "drift_detected", error=exc),
        )
        try:
            self._roll_back(record, fence)
        except LockLost:
            raise
        except (TransientError, PermanentError) as rollback_error:
            return self._stuck(record, exc, rollback_error)
        return self._finish(record, "failed", exc)

    def _give_up(self, record: RotationRecord, fence: Fence, exc: TransientError) -> str:
        log.error("retry budget exhausted", error=type(exc).__name__)
        try:
            self._roll_back(record, fence)
        except LockLost:
            raise
        except (TransientError, PermanentError) as rollback_error:
            self.store.write(record, rollback=f"not possible: {type(rollback_error).__name__}")
        return self._finish(record, "needs_attention", exc)

    def _stuck(
        self, record: RotationRecord, exc: BaseException, rollback_error: BaseException
    ) -> str:
        log.error("rollback failed", error=type(rollback_error).__name__)
        self.store.write(record, rollback=f"failed: {type(rollback_error).__name__}")
        return self._finish(record, "needs_attention", exc)

    def _finish(self, record: RotationRecord, outcome: str, exc: BaseException | None) -> str:
        now = repr(self.clock())
        err = error_data(exc)
        record_fields = {**record.take_pending(), "finished_at": now, "step": "publish"}
        if err:
            record_fields.update(error_class=err["class"], error_message=err["message"])
        dest_fields = {
            "last_rotation_id": record.rotation_id,
            "last_outcome": outcome,
            "last_finished_at": now,
            "environment_id": record.get("environment_id") or "",
        }
        if outcome == "succeeded":
            dest_fields.update(
                credential_id=record.get("new_credential_id") or "",
                credential_since=now,
                last_success_at=now,
                needs_attention="",
                last_error="",
            )
        else:
            dest_fields["last_error"] = f"{err['class']}: {err['message']}"[:300] if err else ""
            if outcome == "needs_attention":
                dest_fields["needs_attention"] = now
        event = rotation_event(record, outcome, error=exc)
        if self.store.finish(
            record, outcome, event, record_fields=record_fields, destination_fields=dest_fields
        ):
            log.info("rotation finished", outcome=outcome)
            if self.metrics is not None:
                self.metrics.rotation_finished(outcome)
            step_done("publish", record.rotation_id)
            # What finish just wrote, without reading it back.
            fields = {**record.fields, **record_fields, "outcome": outcome, "status": outcome}
            self._after(RotationRecord(fields))
            return outcome
        earlier = self.store.record(record.rotation_id)  # finished by an earlier run
        if earlier is not None:
            self._after(earlier)
        return outcome

    def _after(self, record: RotationRecord) -> None:
        if self.after_rotation is not None:
            self.after_rotation(record)
