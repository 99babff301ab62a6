"""A worker killed mid-rotation: the redelivered task resumes without duplicates.

How the crash is made (a worker started through :mod:`devstack.crash`: it SIGKILLs itself
once per rotation right after that step):

* prefork pool, concurrency 1: the *pool child* dies; the parent sees WorkerLostError and,
  with ``task_acks_late`` + ``task_reject_on_worker_lost``, requeues the message at once. The
  next child finds the dead child's lease still held, so the task retries when the lease's
  TTL runs out. This is the reliable, fast path used for the four steps.
* threads pool: the *whole worker* dies with the message unacked; Redis hands it out again
  only after the broker visibility timeout, to the next worker that starts (kombu restores
  overdue unacked messages when a consumer starts polling). The drift test uses this path
  because it needs the rotation parked between two runs.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from devstack.rig import Rig, outcome_of
from worker.trigger import request_rotation

pytestmark = pytest.mark.integration

STEPS = ("read", "issue", "switch", "verify")


def own_credentials(rig: Rig, destination_id: str, rotation_id: str) -> list[dict[str, Any]]:
    """Credentials named after this rotation (``<dest>-rot-<first 8 hex>``)."""
    name = f"{rig.destination(destination_id)['name']}-rot-{rotation_id.replace('-', '')[:8]}"
    return [c for c in rig.credentials().values() if c["name"] == name]


@pytest.mark.parametrize("step", STEPS)
def test_crash_after_each_step_resumes_without_duplicates(rig: Rig, step: str) -> None:
    """Invariants 2 and 8: killed after ``step``, the rotation still ends once, one credential."""
    (dest,) = rig.seed(1)
    old_id = rig.destination(dest)["authCredential"]
    worker = rig.worker(pool="prefork", concurrency=1, crash_after=step)
    claim = request_rotation(rig.app(), rig.store(), dest, trigger="operator")

    assert rig.wait_terminal([claim.rotation_id]) == {claim.rotation_id: "succeeded"}

    crashed = rig.redis.keys(f"rotator:devstack:crashed:{claim.rotation_id}:{step}")
    assert crashed  # the crash really happened
    assert worker.alive  # only the pool child died
    mine = own_credentials(rig, dest, claim.rotation_id)
    assert len(mine) == 1
    assert len([c for c in rig.credentials().values() if c["id"] != old_id]) == 1
    assert rig.destination(dest)["authCredential"] == mine[0]["id"]
    creates = [e for e in rig.journal() if e["kind"] == "create_credential"]
    assert len(creates) == 1  # a redelivered issue finds the credential, never re-POSTs
    record = rig.store().record(claim.rotation_id)
    assert record is not None and record.attempt >= 2  # it really ran twice
    (terminal,) = rig.terminal_events()[claim.rotation_id]
    assert terminal["data"]["newCredentialId"] == mine[0]["id"]
    assert terminal["data"]["oldCredentialId"] == old_id
    started = [
        e
        for e in rig.events()
        if e["data"]["rotationId"] == claim.rotation_id and outcome_of(e) == "started"
    ]
    assert len(started) == 1
    rig.assert_one_terminal_each([claim.rotation_id])


def test_drift_while_parked_is_never_overwritten(rig: Rig) -> None:
    """Someone re-points the destination between two runs: drift_detected, then failed."""
    fast = {
        "ROTATOR_CELERY__SOFT_TIME_LIMIT": "2",
        "ROTATOR_CELERY__TIME_LIMIT": "3",
        "ROTATOR_CELERY__VISIBILITY_TIMEOUT": "5",
    }
    (dest,) = rig.seed(1)
    old_id = rig.destination(dest)["authCredential"]
    doomed = rig.worker("doomed", pool="threads", env=fast, crash_after="read")
    claim = request_rotation(rig.app(), rig.store(), dest, trigger="operator")
    deadline = time.monotonic() + 30
    while doomed.alive:
        assert time.monotonic() < deadline, "the crash hook never fired"
        time.sleep(0.1)
    record = rig.store().record(claim.rotation_id)
    assert record is not None and record.get("old_credential_id") == old_id
    assert record.outcome is None

    foreign = rig.control.drift(dest)  # a dashboard edit while the message waits
    time.sleep(5.5)  # past the visibility timeout: the next worker gets the message back
    rig.worker("rescuer", env=fast)

    assert rig.wait_terminal([claim.rotation_id]) == {claim.rotation_id: "failed"}
    assert rig.destination(dest)["authCredential"] == foreign
    assert own_credentials(rig, dest, claim.rotation_id) == []
    mine = [e for e in rig.events() if e["data"]["rotationId"] == claim.rotation_id]
    assert [outcome_of(e) for e in mine] == ["started", "drift_detected", "failed"]
    assert mine[1]["type"] == "rotator.rotation.drift_detected"
    assert mine[-1]["data"]["error"]["class"] == "DriftDetected"
    assert not [e for e in rig.journal() if e["kind"] in ("patch_destination", "create_credential")]
    rig.assert_one_terminal_each([claim.rotation_id])
