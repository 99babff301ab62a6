"""The rotation engine end to end: CLI, events, single flight and direct task sends.

Real redis-server, a real Celery worker subprocess and the sandbox over HTTP (see conftest).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from devstack.rig import Rig, outcome_of
from worker.trigger import ROTATE_TASK, request_rotation

pytestmark = pytest.mark.integration

DATA_FIELDS = {
    "rotationId",
    "destinationId",
    "environmentId",
    "oldCredentialId",
    "newCredentialId",
    "trigger",
    "attempt",
    "error",
}
CLOUDEVENT_ATTRIBUTES = {
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "data",
}
#: Fields of a credential view that legitimately differ between the old and the new one.
OWN_FIELDS = {"id", "name", "createdAt", "updatedAt"}


def rotated(rig: Rig, destination_id: str) -> list[dict[str, Any]]:
    """Credentials the service created for the destination (named ``<dest>-rot-<hex>``)."""
    name = rig.destination(destination_id)["name"]
    pattern = re.compile(rf"^{re.escape(name)}-rot-[0-9a-f]{{8}}$")
    return [c for c in rig.credentials().values() if pattern.match(c["name"])]


def test_happy_path_through_the_cli(rig: Rig) -> None:
    """Invariant: rotate --wait --json succeeds with 4 platform calls and documented events."""
    (dest,) = rig.seed(1)
    rig.seed(1)  # a neighbour that must not be touched
    before = rig.destination(dest)
    old_id = before["authCredential"]
    old = rig.credentials()[old_id]
    rig.worker()

    done = rig.rotator("rotate", dest, "--wait", "--json", "--timeout", "60", "--reason", "test")

    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["outcome"] == "succeeded"
    assert summary["created"] is True
    rotation_id = summary["rotationId"]
    new_id = summary["newCredentialId"]
    assert summary["oldCredentialId"] == old_id
    assert new_id and new_id != old_id

    # The sandbox: destination on the new credential, a clone with a new secret.
    assert rig.destination(dest)["authCredential"] == new_id
    new = rig.credentials()[new_id]
    assert new["name"] == f"{before['name']}-rot-{rotation_id.replace('-', '')[:8]}"
    assert re.fullmatch(rf"{re.escape(before['name'])}-rot-[0-9a-f]{{8}}", new["name"])
    assert {k: v for k, v in new.items() if k not in OWN_FIELDS} == {
        k: v for k, v in old.items() if k not in OWN_FIELDS
    }
    secrets = rig.control.secrets()
    assert secrets[new_id]["clientSecret"] != secrets[old_id]["clientSecret"]
    assert len(rotated(rig, dest)) == 1

    # Exactly these platform calls, in this order (tokens are not platform calls): the
    # destination, the old credential by id, the create, the destination again right before
    # the switch (drift), the switch.
    platform = [e["kind"] for e in rig.journal() if e["kind"] != "token"]
    assert platform == [
        "get_destination", "get_credential", "create_credential", "get_destination",
        "patch_destination",
    ]  # fmt: skip

    # The events, as `rotator events --json` prints them.
    shown = rig.rotator("events", "--json")
    assert shown.returncode == 0, shown.stderr
    events = [json.loads(line) for line in shown.stdout.splitlines() if line.strip()]
    mine = [e for e in events if e["data"]["rotationId"] == rotation_id]
    assert [outcome_of(e) for e in mine] == ["started", "switched", "succeeded"]
    for event in mine:
        assert set(event) - {"streamId"} == CLOUDEVENT_ATTRIBUTES
        assert event["specversion"] == "1.0"
        assert event["source"] == "redox-rotator"
        assert event["subject"] == dest
        assert event["datacontenttype"] == "application/json"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", event["time"])
        assert set(event["data"]) == DATA_FIELDS
    assert len({e["id"] for e in mine}) == 3
    data = mine[-1]["data"]
    assert data == {
        "rotationId": rotation_id,
        "destinationId": dest,
        "environmentId": rig.credentials()[new_id]["environmentId"],
        "oldCredentialId": old_id,
        "newCredentialId": new_id,
        "trigger": "operator",
        "attempt": 1,
        "error": None,
    }
    rig.assert_one_terminal_each([rotation_id])


def test_cli_rejects_bad_input(rig: Rig) -> None:
    """Exit 2 with one line on stderr for a malformed destination id; nothing is claimed."""
    done = rig.rotator("rotate", "../etc/passwd", "--wait")
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert not list(rig.redis.scan_iter("rotator:active:*"))


def test_fifty_concurrent_triggers_make_one_rotation(rig: Rig) -> None:
    """Invariant 1: 50 threads + 3 CLI processes trigger one destination -> one rotation."""
    (dest,) = rig.seed(1)
    app = rig.app()
    store = rig.store()
    barrier = threading.Barrier(50)
    ids: list[str] = []
    created: list[bool] = []
    lock = threading.Lock()

    def trigger() -> None:
        barrier.wait()
        claim = request_rotation(app, store, dest, trigger="operator")
        with lock:
            ids.append(claim.rotation_id)
            created.append(claim.created)

    threads = [threading.Thread(target=trigger) for _ in range(50)]
    # No worker yet: the rotation cannot finish (and free the claim) while we trigger.
    clis = [
        subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "rotate", dest, "--json"],
            env=rig.stack.child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cli_ids = []
    for process in clis:
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        summary = json.loads(out.strip().splitlines()[-1])
        cli_ids.append(summary["rotationId"])
        created.append(summary["created"])

    assert len(ids) == 50
    assert len(set(ids) | set(cli_ids)) == 1
    assert created.count(True) == 1
    assert rig.redis.llen("rotations") == 1  # one task message sent
    (rotation_id,) = set(ids)

    rig.worker()
    assert rig.wait_terminal([rotation_id]) == {rotation_id: "succeeded"}
    assert len(rotated(rig, dest)) == 1
    assert rig.destination(dest)["authCredential"] == rotated(rig, dest)[0]["id"]
    rig.assert_one_terminal_each([rotation_id])


def test_direct_task_send_goes_through_the_guard(rig: Rig) -> None:
    """Invariant 1 via Flower: a task sent without a rotation id never starts a second one."""
    (dest,) = rig.seed(1)
    rig.control.set_faults(latency_ms=700)  # the first rotation takes a few seconds
    rig.worker(concurrency=2)
    app = rig.app()
    store = rig.store()
    first = request_rotation(app, store, dest, trigger="operator")
    deadline = time.monotonic() + 30
    while rig.redis.hget(rig.keys.rotation(first.rotation_id), "status") != "running":
        assert time.monotonic() < deadline, "first rotation never started"
        time.sleep(0.05)

    direct = app.send_task(ROTATE_TASK, args=[dest]).get(timeout=60)

    assert direct == {
        "rotationId": first.rotation_id,
        "destinationId": dest,
        "outcome": "already_in_progress",
    }
    assert rig.wait_terminal([first.rotation_id]) == {first.rotation_id: "succeeded"}
    assert len(rotated(rig, dest)) == 1

    # Idle now: the same direct send claims a rotation of its own and runs it (the first
    # one's old credential and secret retired first: the IdP allows two secrets per client).
    rig.control.set_faults()
    rig.retire_everything()
    idle = app.send_task(ROTATE_TASK, args=[dest]).get(timeout=60)
    assert idle["outcome"] == "succeeded"
    assert idle["rotationId"] != first.rotation_id
    second = [e for e in rig.events() if e["data"]["rotationId"] == idle["rotationId"]]
    assert [outcome_of(e) for e in second] == ["started", "switched", "succeeded"]
    assert second[-1]["data"]["trigger"] == "api"
    assert len(rotated(rig, dest)) == 2
    assert rig.destination(dest)["authCredential"] == second[-1]["data"]["newCredentialId"]
    rig.assert_one_terminal_each([first.rotation_id, idle["rotationId"]])
