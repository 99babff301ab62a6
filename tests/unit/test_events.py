"""CloudEvents documents, the error member, the stream reader and the CLI's line format."""

from __future__ import annotations

import json
import re
from typing import Any

import redis

from worker.errors import RedoxRejected
from worker.events import EventStream, StreamEntry, cloud_event, error_data, format_event
from worker.rotation.outcomes import rotation_event
from worker.store.keys import Keys
from worker.store.records import RotationRecord


def test_cloud_event_has_the_1_0_attributes() -> None:
    event = cloud_event("rotator.rotation.succeeded", "dest-1", {"rotationId": "r-1"})
    assert event["specversion"] == "1.0"
    assert event["source"] == "redox-rotator"
    assert event["type"] == "rotator.rotation.succeeded"
    assert event["subject"] == "dest-1"
    assert event["datacontenttype"] == "application/json"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", event["time"])
    assert event["data"] == {"rotationId": "r-1"}
    other = cloud_event("rotator.rotation.succeeded", "dest-1", {})
    assert other["id"] != event["id"]


def test_rotation_event_carries_the_documented_data() -> None:
    record = RotationRecord(
        {
            "rotation_id": "r-1",
            "destination_id": "d-1",
            "environment_id": "e-1",
            "old_credential_id": "c-old",
            "new_credential_id": "",
            "trigger": "schedule",
            "attempt": "2",
        }
    )
    event = rotation_event(record, "rolled_back", error=RedoxRejected("PATCH: 403", status=403))
    assert event["type"] == "rotator.rotation.rolled_back"
    assert event["data"] == {
        "rotationId": "r-1",
        "destinationId": "d-1",
        "environmentId": "e-1",
        "oldCredentialId": "c-old",
        "newCredentialId": None,
        "trigger": "schedule",
        "attempt": 2,
        "error": {"class": "RedoxRejected", "message": "PATCH: 403"},
    }


def test_error_data_is_redacted_one_line_and_bounded() -> None:
    assert error_data(None) is None
    exc = ValueError("bad\n  reply   client_secret=hunter2hunter2 " + "x" * 900)
    data = error_data(exc)
    assert data is not None
    assert data["class"] == "ValueError"
    assert "hunter2" not in data["message"]
    assert "\n" not in data["message"]
    assert data["message"].startswith("bad reply client_secret=")
    assert len(data["message"]) <= 520


def test_stream_publish_read_since_and_last_id(redis_client: redis.Redis, keys: Keys) -> None:
    stream = EventStream(redis_client, keys, maxlen=1000)
    assert stream.last_id() == "0-0"
    assert stream.read() == []
    ids = [stream.publish({"type": f"t{n}"}) for n in range(3)]
    assert [e.event["type"] for e in stream.read()] == ["t0", "t1", "t2"]
    assert [e.stream_id for e in stream.read()] == ids
    assert [e.event["type"] for e in stream.read(since=ids[0])] == ["t1", "t2"]  # exclusive
    assert stream.read(since=ids[2]) == []
    assert [e.event["type"] for e in stream.read(count=2)] == ["t0", "t1"]
    assert stream.last_id() == ids[2]
    rows: Any = redis_client.xrange(keys.events)
    raw = rows[0][1]
    assert list(raw) == ["event"] and json.loads(raw["event"]) == {"type": "t0"}


def test_stream_follow_yields_new_events_and_idles(redis_client: redis.Redis, keys: Keys) -> None:
    stream = EventStream(redis_client, keys)
    old = stream.publish({"type": "old"})
    follow = stream.follow(since=old, block_ms=50)
    assert next(follow) is None  # nothing new yet
    stream.publish({"type": "new"})
    entry = next(follow)
    assert entry is not None and entry.event == {"type": "new"}


def test_unparseable_entries_do_not_break_readers(redis_client: redis.Redis, keys: Keys) -> None:
    redis_client.xadd(keys.events, {"event": "{not json"})
    (entry,) = EventStream(redis_client, keys).read()
    assert entry.event["type"] == "unparseable"


def test_format_event_line() -> None:
    event = cloud_event(
        "rotator.rotation.rolled_back",
        "d-1",
        {
            "rotationId": "r-1",
            "oldCredentialId": "c-old",
            "newCredentialId": "c-new",
            "trigger": "operator",
            "attempt": 1,
            "error": {"class": "RedoxRejected", "message": "403"},
        },
    )
    line = format_event(StreamEntry("1-0", event))
    assert "[yellow]rotation.rolled_back" in line
    for part in ("dest=d-1", "rotation=r-1", "c-old -> c-new", "trigger=operator", "attempt=1",
                 "error=RedoxRejected: 403"):  # fmt: skip
        assert part in line
