"""Secrets never leave the task that made them (invariant 5): grep everything we wrote."""

from __future__ import annotations

import base64
import json

import pytest

from devstack.readback import decoded_messages, dump_redis
from devstack.rig import Rig
from worker.trigger import ROTATE_TASK, request_rotation

pytestmark = pytest.mark.integration


def leaks(secrets: set[str], places: dict[str, list[str]]) -> list[tuple[str, str]]:
    """(place, secret prefix) for every secret found in any text of any place."""
    found = []
    for place, texts in places.items():
        blob = "\n".join(texts)
        found += [(place, secret[:6]) for secret in secrets if secret in blob]
    return found


def everything(rig: Rig, worker_logs: list[str]) -> dict[str, list[str]]:
    """Every Redis key (all types, Celery's included), decoded kombu bodies, logs, events."""
    places = dump_redis(rig.redis)
    places["kombu message bodies"] = decoded_messages([t for v in places.values() for t in v])
    places["event stream"] = [json.dumps(e) for e in rig.events()]
    places["worker logs"] = worker_logs
    return places


def test_no_secret_value_is_written_anywhere(rig: Rig) -> None:
    """After rotations that succeed, roll back and retry, no secret appears anywhere."""
    dests = rig.seed(4)
    rig.control.set_faults(
        p503=0.2, permanent={dests[3]: 403}, permanent_methods={dests[3]: ["PATCH"]}
    )
    worker = rig.worker(concurrency=2)
    app, store = rig.app(), rig.store()
    ids = [request_rotation(app, store, d, trigger="operator").rotation_id for d in dests[:3]]
    ids.append(app.send_task(ROTATE_TASK, args=[dests[3]]).get(timeout=60)["rotationId"])
    outcomes = rig.wait_terminal(ids)
    assert outcomes[ids[3]] == "rolled_back"
    # A message still sitting in the queue (no consumer for it) is part of the scan too.
    app.send_task(ROTATE_TASK, args=[dests[0], "not-a-rotation"], queue="parked")

    secrets = {v for fields in rig.control.secrets().values() for v in fields.values()}
    created = {c["id"] for c in rig.credentials().values() if "-rot-" in c["name"]}
    assert len(created) == 3  # the secrets of the new credentials are in the scan set
    assert all(cid in rig.control.secrets() for cid in created)
    places = everything(rig, [worker.log_text()])
    # The scan really reads task messages: the parked one's args are there, decoded.
    assert any("not-a-rotation" in t for t in places["kombu message bodies"])

    assert leaks(secrets, places) == []
    rig.assert_one_terminal_each(ids)


def test_the_scan_finds_a_planted_secret(rig: Rig) -> None:
    """The scanner is not blind: a secret hidden in a base64 kombu body or a stream is found."""
    secret = "s3cr3t-planted-value-0123456789"
    body = base64.b64encode(json.dumps([[secret], {}, {}]).encode()).decode()
    rig.redis.lpush("rotations", json.dumps({"body": body, "properties": {}}))
    rig.redis.xadd("elsewhere", {"event": json.dumps({"data": {"x": secret}})})
    rig.redis.zadd("zset", {f"m-{secret}": 1})
    places = everything(rig, [])
    found = {place for place, _ in leaks({secret}, places)}
    assert found == {"kombu message bodies", "elsewhere", "zset"}
