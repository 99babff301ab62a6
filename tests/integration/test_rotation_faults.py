"""Redox misbehaving: transient storms, a permanent 403 on the switch, an exhausted budget."""

from __future__ import annotations

from collections import Counter

import pytest

from devstack.rig import Rig
from worker.store.destinations import DestinationStates
from worker.trigger import request_rotation

pytestmark = pytest.mark.integration


@pytest.mark.timeout(300)
def test_transient_storm_ends_in_success_without_duplicates(rig: Rig) -> None:
    """Invariant 4: 503/502/429 at 50 % of calls are absorbed by tenacity and task retries.

    Few of them are 429s: each one slows every worker down (the shared limiter backs off,
    see test_limiter), which is right for Redox's limit but makes a long test of a storm."""
    dests = rig.seed(10)
    olds = {d: rig.destination(d)["authCredential"] for d in dests}
    rig.control.set_faults(p503=0.35, p502=0.12, p429=0.03)
    # Runs as long as the defaults allow (the rig's 8 s would cut runs that are slow only
    # because a shared CI machine is busy, and each cut run retries into more of the storm).
    rig.worker(
        concurrency=4,
        env={
            "ROTATOR_RETRY__TASK_MAX_RETRIES": "20",
            "ROTATOR_CELERY__SOFT_TIME_LIMIT": "60",
            "ROTATOR_CELERY__TIME_LIMIT": "90",
            "ROTATOR_CELERY__VISIBILITY_TIMEOUT": "200",
        },
    )
    app, store = rig.app(), rig.store()
    claims = [request_rotation(app, store, d, trigger="operator") for d in dests]
    ids = [c.rotation_id for c in claims]

    outcomes = rig.wait_terminal(ids, timeout=100)

    assert set(outcomes.values()) == {"succeeded"}, outcomes
    statuses = Counter(e["status"] for e in rig.journal())
    assert statuses[503] and statuses[502] and statuses[429]  # the storm really happened
    credentials = rig.credentials()
    for dest, claim in zip(dests, claims, strict=True):
        name = rig.destination(dest)["name"]
        made = [c for c in credentials.values() if c["name"].startswith(f"{name}-rot-")]
        assert len(made) == 1, made  # no duplicate from a retried POST
        assert made[0]["name"].endswith(claim.rotation_id.replace("-", "")[:8])
        assert rig.destination(dest)["authCredential"] == made[0]["id"]
        assert olds[dest] in credentials  # the old one waits for retirement
    assert len(credentials) == 20
    rig.assert_one_terminal_each(ids)


def test_forbidden_switch_rolls_back(rig: Rig) -> None:
    """Invariant 3: a 403 on PATCH -> rolled_back, new credential deleted, old one attached."""
    (dest,) = rig.seed(1)
    old_id = rig.destination(dest)["authCredential"]
    rig.control.set_faults(permanent={dest: 403}, permanent_methods={dest: ["PATCH"]})
    rig.worker()
    claim = request_rotation(rig.app(), rig.store(), dest, trigger="operator")

    assert rig.wait_terminal([claim.rotation_id]) == {claim.rotation_id: "rolled_back"}

    journal = rig.journal()
    patches = [e for e in journal if e["kind"] == "patch_destination"]
    assert [e["status"] for e in patches] == [403]  # permanent: never retried
    (created,) = [e for e in journal if e["kind"] == "create_credential"]
    deletes = [e for e in journal if e["kind"] == "delete_credential"]
    assert [e["status"] for e in deletes] == [204] or [e["status"] for e in deletes] == [200]
    assert rig.destination(dest)["authCredential"] == old_id
    assert list(rig.credentials()) == [old_id]  # the unused new credential is gone
    (terminal,) = rig.terminal_events()[claim.rotation_id]
    assert terminal["data"]["error"]["class"] == "RedoxRejected"
    assert "403" in terminal["data"]["error"]["message"]
    assert terminal["data"]["newCredentialId"]  # it names what was made and removed
    assert created["status"] == 201
    state = DestinationStates(rig.redis, rig.keys).get(dest)
    assert state.last_outcome == "rolled_back"
    assert not state.needs_attention
    rig.assert_one_terminal_each([claim.rotation_id])


BUDGET = {
    "ROTATOR_RETRY__MAX_ATTEMPTS": "2",
    "ROTATOR_RETRY__TASK_MAX_RETRIES": "2",
}


def test_exhausted_budget_needs_attention(rig: Rig) -> None:
    """Invariant 4: Redox down for good -> needs_attention, nothing made, nothing switched."""
    (dest,) = rig.seed(1)
    old_id = rig.destination(dest)["authCredential"]
    rig.control.set_faults(p503=1.0)
    rig.worker(env=BUDGET)
    claim = request_rotation(rig.app(), rig.store(), dest, trigger="operator")

    assert rig.wait_terminal([claim.rotation_id]) == {claim.rotation_id: "needs_attention"}

    gets = [e for e in rig.journal() if e["kind"] == "get_destination"]
    assert len(gets) == 2 * 3  # 2 tenacity attempts x 3 task runs: bounded, then stop
    assert rig.destination(dest)["authCredential"] == old_id
    assert list(rig.credentials()) == [old_id]
    state = DestinationStates(rig.redis, rig.keys).get(dest)
    assert state.last_outcome == "needs_attention"
    assert state.needs_attention
    assert (state.last_error or "").startswith("RedoxUnavailable")
    (terminal,) = rig.terminal_events()[claim.rotation_id]
    assert terminal["data"]["error"]["class"] == "RedoxUnavailable"
    assert terminal["data"]["attempt"] == 3
    rig.assert_one_terminal_each([claim.rotation_id])


def test_exhausted_budget_after_create_undoes_the_new_credential(rig: Rig) -> None:
    """Invariant 3 + 4: the switch keeps failing (503) -> needs_attention, new one deleted."""
    (dest,) = rig.seed(1)
    old_id = rig.destination(dest)["authCredential"]
    rig.control.set_faults(permanent={dest: 503}, permanent_methods={dest: ["PATCH"]})
    rig.worker(env=BUDGET)
    claim = request_rotation(rig.app(), rig.store(), dest, trigger="operator")

    assert rig.wait_terminal([claim.rotation_id]) == {claim.rotation_id: "needs_attention"}

    journal = rig.journal()
    assert len([e for e in journal if e["kind"] == "create_credential"]) == 1
    assert len([e for e in journal if e["kind"] == "patch_destination"]) == 2 * 3
    assert rig.destination(dest)["authCredential"] == old_id
    assert list(rig.credentials()) == [old_id]  # nothing half-done is left
    state = DestinationStates(rig.redis, rig.keys).get(dest)
    assert state.last_outcome == "needs_attention"
    assert state.needs_attention
    rig.assert_one_terminal_each([claim.rotation_id])
