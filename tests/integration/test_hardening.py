"""Hardening findings, each on real processes: a worker that dies or is paused mid-run,
exceptions nobody planned for, ids that try to reach another path, a peer that trickles.

The first test runs at the **default settings** (lease 60 s, visibility timeout 3,600 s,
5 s beat tick); the others use the session rig's tight budgets to stay short.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from config.celery import ROTATION_QUEUE
from devstack.rig import Rig, outcome_of
from devstack.stack import Child
from worker.trigger import ROTATE_TASK

pytestmark = pytest.mark.integration


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def events_of(rig: Rig, rotation_id: str) -> list[str]:
    return [outcome_of(e) for e in rig.events() if e["data"].get("rotationId") == rotation_id]


@pytest.mark.timeout(240)
def test_a_worker_killed_mid_rotation_resumes_within_the_lease_ttl_at_default_settings() -> None:
    """Finding 1. The whole worker (default threads pool) dies after the rehearsal, right
    before its PATCH: its message stays unacked for the visibility timeout (an hour). Beat
    sends the rotation again once the dead run's lease expires: the replacement worker
    switches the destination within lease TTL + one tick, with no second credential."""
    with Rig.start(env={"ROTATOR_LOG_LEVEL": "INFO"}) as rig:
        (dest,) = rig.seed(1)
        old = rig.destination(dest)["authCredential"]
        doomed = rig.worker("doomed", crash_after="rehearse")
        rig.workers.append(rig.stack.start_beat())
        (rotation_id,) = rig.trigger([dest])
        wait_for(lambda: not doomed.alive, 60, "the crash after the rehearsal")
        died = time.monotonic()
        rig.worker("rescuer")

        wait_for(lambda: "switched" in events_of(rig, rotation_id), 120, "the switch")
        resumed_after = time.monotonic() - died
        assert resumed_after < 90, f"resumed {resumed_after:.0f}s after the worker died"
        record = rig.store().record(rotation_id)
        assert record is not None and record.get("status") == "watching"  # the default watch
        assert rig.destination(dest)["authCredential"] == record.get("new_credential_id") != old
        creates = [e for e in rig.journal() if e["kind"] == "create_credential"]
        assert len(creates) == 1
        assert events_of(rig, rotation_id) == ["started", "switched"]
        print(f"resumed {resumed_after:.1f}s after the worker died (lease 60 s, tick 5 s)")


@pytest.mark.timeout(240)
def test_a_rotation_whose_message_the_broker_lost_starts_within_the_lease_ttl() -> None:
    """A Redis restart inside its fsync second, or a failover to a replica that had not
    caught up, can lose a task message after the claim was written. At the default
    settings, beat's reaper finds the claim that never started and sends it again."""
    with Rig.start(env={"ROTATOR_LOG_LEVEL": "INFO"}) as rig:
        (dest,) = rig.seed(1)
        rig.workers.append(rig.stack.start_beat())
        (rotation_id,) = rig.trigger([dest])
        lost = time.monotonic()
        assert rig.redis.delete(ROTATION_QUEUE) == 1  # before any worker took it
        rig.worker("late")

        wait_for(lambda: "switched" in events_of(rig, rotation_id), 120, "the switch")
        started_after = time.monotonic() - lost
        assert started_after < 90, f"started {started_after:.0f}s after the message was lost"
        creates = [e for e in rig.journal() if e["kind"] == "create_credential"]
        assert len(creates) == 1
        assert events_of(rig, rotation_id) == ["started", "switched"]
        print(f"started {started_after:.1f}s after its message was lost (lease 60 s, tick 5 s)")


# -- unexpected exceptions --------------------------------------------------------------

#: A hook that issues a real secret at the sandbox's Okta (so the rehearsal passes) and
#: also returns a field the OAuth strategy does not take.
WRONG_FIELD = """
import json, os, sys, urllib.request
body = json.load(sys.stdin)
if sys.argv[1] != "issue":
    sys.exit(0)
org = os.environ["ROTATOR_SECRET_SOURCE__OKTA__ORG_URL"]
request = urllib.request.Request(
    f"{org}/api/v1/apps/{body['clientId']}/credentials/secrets", data=b"{}", method="POST",
    headers={"Authorization": "SSWS " + os.environ["ROTATOR_SECRET_SOURCE__OKTA__API_TOKEN"],
             "Content-Type": "application/json", "Accept": "application/json"},
)
made = json.load(urllib.request.urlopen(request, timeout=10))
print(json.dumps({"secrets": {"clientSecret": made["client_secret"],
                              "secretKey": "not-an-oauth-field-value-0123456789"},
                  "secretId": made["id"]}))
"""


def test_a_secret_field_the_strategy_does_not_take_needs_attention(
    rig: Rig, tmp_path: Path
) -> None:
    """Finding 2: a source returning a field the OAuth strategy does not list (the body
    builder's ValueError, after a rehearsal that passed) ends in one needs_attention event,
    nothing left behind in Redox."""
    script = tmp_path / "wrong.py"
    script.write_text(WRONG_FIELD)
    env = {
        "ROTATOR_SECRET_SOURCE__KIND": "command",
        "ROTATOR_SECRET_SOURCE__COMMAND__COMMAND": json.dumps([sys.executable, str(script)]),
    }
    (dest,) = rig.seed(1)
    old = rig.destination(dest)["authCredential"]
    rig.worker(env=env)
    (rotation_id,) = rig.trigger([dest])
    assert rig.wait_terminal([rotation_id]) == {rotation_id: "needs_attention"}
    (event,) = rig.terminal_events()[rotation_id]
    assert event["data"]["error"]["class"] == "ValueError"
    assert "not-an-oauth-field-value" not in json.dumps(event)
    assert rig.destination(dest)["authCredential"] == old
    assert not [e for e in rig.journal() if e["kind"] == "create_credential"]
    rig.assert_one_terminal_each([rotation_id])


def test_a_secret_source_written_into_redis_is_never_run(rig: Rig, tmp_path: Path) -> None:
    """Finding 3: whoever can write to Redis cannot run code on a worker. A synced policy
    that carries a `command` secret source is not where a worker looks for its source: the
    rotation runs with the source of the worker's own configuration, and the command never
    runs."""
    (dest,) = rig.seed(1)
    marker = tmp_path / "ran"
    policy = {
        "destination_id": dest,
        "environment_id": rig.destination(dest)["environment"]["id"],
        "interval_seconds": 86400.0,
        "secret_source": {
            "kind": "command",
            "command": [sys.executable, "-c", f"open({str(marker)!r}, 'w')"],
        },
    }
    rig.redis.set(rig.keys.policy(dest), json.dumps(policy))
    rig.redis.sadd(rig.keys.policies, dest)
    rig.worker()
    (rotation_id,) = rig.trigger([dest])
    outcome = rig.wait_terminal([rotation_id])
    assert not marker.exists()
    assert outcome == {rotation_id: "succeeded"}
    rig.assert_one_terminal_each([rotation_id])


def test_a_key_that_became_unreadable_needs_attention(rig: Rig, tmp_path: Path) -> None:
    """Finding 2: the token provider's ConfigError (the signing key replaced by garbage
    after the worker started) ends in one needs_attention event, not a stuck claim."""
    (dest,) = rig.seed(1)
    key = tmp_path / "key.pem"
    key.write_bytes(Path(rig.settings().redox.private_key_path or "").read_bytes())
    key.chmod(0o600)
    rig.worker(env={"ROTATOR_REDOX__PRIVATE_KEY_PATH": str(key)})
    key.write_text("garbage where the signing key was\n")
    (rotation_id,) = rig.trigger([dest])
    assert rig.wait_terminal([rotation_id]) == {rotation_id: "needs_attention"}
    (event,) = rig.terminal_events()[rotation_id]
    assert event["data"]["error"]["class"] == "ConfigError"
    assert rig.store().active(dest) is None  # the claim is released
    rig.assert_one_terminal_each([rotation_id])


# -- ids ----------------------------------------------------------------------------------


def test_ids_that_reach_for_another_path_are_refused_everywhere(rig: Rig) -> None:
    """Finding 5: ``x/../<real id>`` and ``<real id>\\n`` are refused by the task (sent
    without a rotation id, as Flower's API does) and by the CLI; nothing is claimed, and
    Redox never sees a request for the real destination."""
    (dest,) = rig.seed(1)
    rig.worker()
    app = rig.app()
    sneaky = [f"x/../{dest}", f"{dest}\n", f"{dest}/", "../destinations"]
    results = [app.send_task(ROTATE_TASK, args=[bad]).get(timeout=30) for bad in sneaky]
    assert [r["outcome"] for r in results] == ["refused"] * len(sneaky), results
    assert rig.store().active(dest) is None
    assert rig.journal() == []
    for bad in sneaky:
        cli = rig.rotator("rotate", bad)
        assert cli.returncode == 2 and "destination id" in cli.stderr, cli.stderr
    assert rig.journal() == []


# -- fencing --------------------------------------------------------------------------------


def test_a_worker_paused_past_its_lease_mid_patch_retry_never_writes(rig: Rig) -> None:
    """Finding 4: a worker is SIGSTOPped while it retries a PATCH Redox keeps refusing with
    503; its lease expires, beat hands the rotation to another worker, which finishes it.
    Resumed, the first worker's next PATCH attempt finds its fence gone: no request from it
    reaches the sandbox, and there is one terminal event."""
    (dest,) = rig.seed(1)
    rig.control.set_faults(
        latency_ms=700, permanent={dest: 503}, permanent_methods={dest: ["PATCH"]}
    )
    # Budgets that outlast the pause, so that only the fence can stop its next attempt.
    patient = {
        "ROTATOR_RETRY__MAX_SECONDS": "300",
        "ROTATOR_RETRY__MAX_ATTEMPTS": "50",
        "ROTATOR_CELERY__SOFT_TIME_LIMIT": "200",
        "ROTATOR_CELERY__TIME_LIMIT": "250",
        "ROTATOR_CELERY__VISIBILITY_TIMEOUT": "300",
    }
    paused = rig.worker("paused", concurrency=1, env=patient)
    (rotation_id,) = rig.trigger([dest])
    wait_for(lambda: [e for e in rig.journal() if e["kind"] == "patch_destination"], 30, "a PATCH")
    os.killpg(paused.process.pid, signal.SIGSTOP)
    try:
        time.sleep(5)  # past the 4 s lease
        rig.control.set_faults()
        rig.workers.append(rig.stack.start_beat())
        rig.worker("rescuer")
        assert rig.wait_terminal([rotation_id], timeout=60) == {rotation_id: "succeeded"}
        patches = len([e for e in rig.journal() if e["kind"] == "patch_destination"])
    finally:
        os.killpg(paused.process.pid, signal.SIGCONT)
    resumed = time.time()
    wait_for(lambda: "lease" in paused.log_text(), 30, "the paused worker to notice")
    time.sleep(3)
    late = [e for e in rig.journal() if e["ts"] >= resumed]
    assert late == [], late  # nothing from the worker whose lease is gone
    assert len([e for e in rig.journal() if e["kind"] == "patch_destination"]) == patches
    assert events_of(rig, rotation_id).count("succeeded") == 1
    rig.assert_one_terminal_each([rotation_id])


# -- time limits on the threads pool ------------------------------------------------------


def test_a_trickling_redox_cannot_hold_a_slot_past_the_run_deadline(rig: Rig) -> None:
    """Finding 6: the destination's GET is answered one byte per half second (each read
    well within the read timeout). On the default threads pool, which Celery does not time
    limit, the run still stops at its own deadline (the rig's 8 s soft limit), frees the
    slot, and the rotation succeeds once Redox answers normally again."""
    (dest,) = rig.seed(1)
    rig.control.set_faults(trickle={f"v1/destinations/{dest}": 0.5})
    worker: Child = rig.worker(concurrency=1)
    started = time.monotonic()
    (rotation_id,) = rig.trigger([dest])
    wait_for(lambda: "rotation retry scheduled" in worker.log_text(), 30, "the run to give up")
    stopped_after = time.monotonic() - started
    assert stopped_after < 8 + 4, f"the run held its slot {stopped_after:.1f}s"
    retry = next(line for line in worker.log_text().splitlines() if "retry scheduled" in line)
    assert json.loads(retry)["error"] in ("RunTimedOut", "RedoxUnavailable"), retry
    rig.control.set_faults()
    assert rig.wait_terminal([rotation_id], timeout=60) == {rotation_id: "succeeded"}
    rig.assert_one_terminal_each([rotation_id])
