"""``rotator metrics`` over HTTP after real rotations: every family, with the right numbers."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devstack.redis_server import free_port
from devstack.stack import LocalStack

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _scrape(url: str) -> Samples:
    reply = httpx.get(url, timeout=10)
    assert reply.status_code == 200
    samples: Samples = {}
    for family in text_string_to_metric_families(reply.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def _by_name(samples: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    env = {
        "ROTATOR_RETRY__MAX_ATTEMPTS": "1",
        "ROTATOR_RETRY__TASK_MAX_RETRIES": "0",
        "ROTATOR_VERIFY__WATCH_SECONDS": "0",
    }
    with LocalStack(env=env) as local:
        yield local


def _registry(path: Path, destinations: list[dict[str, object]]) -> Path:
    lines = ["[defaults]", 'interval = "1h"', 'grace = "1h"', ""]
    for dest in destinations:
        env = dest["environment"]
        assert isinstance(env, dict)
        lines += ["[[destinations]]", f'id = "{dest["id"]}"', f'environment = "{env["id"]}"', ""]
    path.write_text("\n".join(lines))
    return path


def test_metrics_after_rotations(stack: LocalStack) -> None:
    stack.start_redis()
    control = stack.start_sandbox("--idp", "okta", seed=3)
    destinations = control.state()["destinations"]
    ok_a, ok_b, broken = (str(d["id"]) for d in destinations)
    synced = stack.rotator("registry", "sync", str(_registry(stack.dir / "r.toml", destinations)))
    assert synced.returncode == 0, synced.stderr
    control.patch_faults(permanent={broken: 503})  # transient forever: retries run out
    stack.start_worker("m1", concurrency=2)
    for dest, expected in ((ok_a, 0), (ok_b, 0), (broken, 1)):
        done = stack.rotator("rotate", dest, "--wait", "--timeout", "60")
        assert done.returncode == expected, done.stdout + done.stderr

    port = free_port()
    exporter = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "metrics", "--port", str(port)],
        env=stack.child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        deadline = time.monotonic() + 30
        while True:
            try:
                samples = _scrape(url)
                break
            except httpx.TransportError:
                assert exporter.poll() is None, exporter.stdout.read() if exporter.stdout else ""
                assert time.monotonic() < deadline, "exporter did not answer"
                time.sleep(0.2)
    finally:
        exporter.terminate()
        assert exporter.wait(timeout=20) == 0
        if exporter.stdout:
            exporter.stdout.close()

    now = time.time()
    assert _value(samples, "rotator_redis_up") == 1
    assert _value(samples, "rotator_rotations_total", outcome="succeeded") == 2
    assert _value(samples, "rotator_rotations_total", outcome="needs_attention") == 1
    assert _value(samples, "rotator_rotations_total", outcome="failed") == 0
    assert _value(samples, "rotator_destinations") == 3
    assert _value(samples, "rotator_destinations_needing_attention") == 1
    assert _value(samples, "rotator_rotations_in_progress") == 0

    # Steps: read ran 3 times; issue and switch twice (the broken one failed at read).
    assert _value(samples, "rotator_rotation_step_duration_seconds_count", step="read") == 3
    for step in ("issue", "switch"):
        assert _value(samples, "rotator_rotation_step_duration_seconds_count", step=step) == 2
        assert _value(samples, "rotator_rotation_step_duration_seconds_sum", step=step) > 0
    assert _value(samples, "rotator_rotation_step_duration_seconds_count", step="rollback") == 1

    # Redox calls: the same numbers the sandbox saw on /platform, by status.
    calls = _by_name(samples, "rotator_redox_calls_total")
    by_status: dict[str, float] = {}
    for labels, value in calls.items():
        status = dict(labels)["status"]
        by_status[status] = by_status.get(status, 0) + value
    journal = control.journal()["entries"]
    platform = [e for e in journal if "/platform/" in str(e.get("path", ""))]
    assert sum(calls.values()) == len(platform)  # the workers' calls and the CLI's
    assert by_status.get("503") == sum(1 for e in platform if e.get("status") == 503) > 0
    # Every request to Redox (platform calls and the token) took a limiter slot; the IdP's
    # requests (its own limits) took none.
    redox = [e for e in journal if not str(e.get("path", "")).startswith("/idp/")]
    assert _value(samples, "rotator_ratelimit_wait_seconds_count") == len(redox)
    assert len(redox) > len(platform) and len(journal) > len(redox)

    ages = _by_name(samples, "rotator_credential_age_seconds")
    assert {dict(k)["destination_id"] for k in ages} == {ok_a, ok_b}
    assert all(0 <= v < 600 for v in ages.values())
    due = _by_name(samples, "rotator_next_rotation_timestamp_seconds")
    # The broken destination left the schedule (needs attention); the others are due later.
    assert {dict(k)["destination_id"] for k in due} == {ok_a, ok_b}
    assert all(now < v <= now + 3600 + 60 for v in due.values())
