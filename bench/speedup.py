"""Figure 3: the service against the serial loop a user would write, 50 ms latency, no limit.

The baseline is a plain loop with one ``httpx.Client`` and one token fetched up front doing
the same 4 calls per destination (GET destination, list the environment's credentials, POST
the clone with a new secret, PATCH the destination). It runs on its own destinations of the
same sandbox right before and right after the service's run, in this process; the mean of
the two is the baseline (the credential list grows during the run, so both see the sizes
the service saw). The figure is the service's rotations per second over the baseline's.
"""

from __future__ import annotations

import os
import secrets
import time
from typing import Any

import httpx
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from bench.harness import IDP_UNLIMITED, SERVICE_WORKERS, UNLIMITED, Driver, Figure, command_for
from config.settings import Settings
from devstack.rig import Rig
from worker.redox.token import ASSERTION_TYPE, build_assertion

__all__ = ["run", "serial_rotations"]

NAME = "speedup"
GOAL = 25.0
LATENCY_MS = 50.0
_COPY_SKIP = {"id", "createdAt", "updatedAt"}


def _token(settings: Settings) -> str:
    assert settings.redox.private_key_path is not None
    key = load_pem_private_key(settings.redox.private_key_path.read_bytes(), password=None)
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": build_assertion(settings.redox, key),
    }
    reply = httpx.post(settings.redox.token_url, data=form, timeout=10)
    reply.raise_for_status()
    token: str = reply.json()["access_token"]
    return token


def serial_rotations(settings: Settings, destinations: list[str]) -> float:
    """The user's loop: rotate each destination in turn; return the seconds it took."""
    token = _token(settings)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=settings.redox.base_url, headers=headers, timeout=20) as http:
        started = time.perf_counter()
        for n, dest_id in enumerate(destinations):
            reply = http.get(f"/v1/destinations/{dest_id}")
            reply.raise_for_status()
            dest: dict[str, Any] = reply.json()["payload"]["destination"]
            env_id = dest["environment"]["id"]
            reply = http.get(f"/v1/environments/{env_id}/authcredentials")
            reply.raise_for_status()
            old = next(
                c
                for c in reply.json()["payload"]["credentials"]
                if c["id"] == dest["authCredential"]
            )
            body = {k: v for k, v in old.items() if k not in _COPY_SKIP and not k.startswith("has")}
            body.update(name=f"{dest['name']}-loop-{n}", clientSecret=secrets.token_urlsafe(36))
            reply = http.post("/v1/authcredentials", json=body)
            reply.raise_for_status()
            new_id = reply.json()["payload"]["credential"]["id"]
            reply = http.patch(f"/v1/destinations/{dest_id}", json={"authCredential": new_id})
            reply.raise_for_status()
        return time.perf_counter() - started


def run(stack: Rig, quick: bool = False) -> Figure:
    """Baseline loop, the service on N destinations, baseline loop again."""
    count, base_count = (20, 5) if quick else (int(os.environ.get("BENCH_N", "400")), 20)
    stack.reset(latency_ms=LATENCY_MS, idp_rate_limit=IDP_UNLIMITED)
    before, service_dests, after = (
        stack.seed(base_count, deliveries=False),
        stack.seed(count, deliveries=False),
        stack.seed(base_count, deliveries=False),
    )
    settings = stack.settings(**UNLIMITED)
    pool, concurrency, processes = SERVICE_WORKERS
    for n in range(processes):
        stack.worker(f"speedup{n}", concurrency=concurrency, pool=pool, env=UNLIMITED)
    base_before = serial_rotations(settings, before)
    driver = Driver(settings)
    try:
        result = driver.run(service_dests, timeout=300)
    finally:
        driver.close()
    base_after = serial_rotations(settings, after)
    base_rate = 2 * base_count / (base_before + base_after)
    rate = result.total / result.wall
    speedup = rate / base_rate
    succeeded = result.outcomes.get("succeeded", 0)
    statuses: dict[str, int] = stack.control.journal()["summary"]["by_status"]
    passed = speedup >= GOAL and succeeded == count
    details = [
        f"baseline (serial httpx loop, same sandbox, this process): {base_count} rotations "
        f"before in {base_before:.2f} s and after in {base_after:.2f} s -> {base_rate:.2f}/s",
        f"service: {count} rotations in {result.wall:.2f} s -> {rate:.1f}/s "
        f"({processes} x {pool} worker, concurrency {concurrency}); succeeded {succeeded}",
        f"sandbox statuses: {', '.join(f'{k}={v}' for k, v in sorted(statuses.items()))}",
    ]
    return Figure(
        name=NAME,
        title=f"unthrottled speed-up over a serial httpx loop ({LATENCY_MS:.0f} ms latency)",
        value=f"{speedup:.1f} x ({rate:.1f} vs {base_rate:.2f} rotations/s)",
        goal=f">= {GOAL:.0f} x",
        ratio=speedup / GOAL,
        passed=passed,
        command=command_for(NAME, quick),
        details=details,
    )
