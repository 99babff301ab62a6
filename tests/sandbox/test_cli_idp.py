"""``rotator sandbox --idp``: prints the secret source settings; seeded deliveries work."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from .test_cli import CLI, _free_port, _read_env

pytestmark = pytest.mark.integration


def _serve(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], dict[str, str], str]:
    port = _free_port()
    proc = subprocess.Popen(
        [*CLI, "--port", str(port), "--key-dir", str(tmp_path / "keys"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    env = _read_env(proc)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while True:
        try:
            if httpx.get(f"{url}/_sandbox/health").status_code == 200:
                return proc, env, url
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=10)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def test_okta_settings_and_deliveries(tmp_path: Path) -> None:
    proc, env, url = _serve(
        tmp_path, "--seed", "2", "--idp", "okta", "--deliveries-every", "0.2", "--idp-delay", "3"
    )
    try:
        assert env["ROTATOR_SECRET_SOURCE__KIND"] == "okta"
        assert env["ROTATOR_SECRET_SOURCE__OKTA__ORG_URL"] == f"{url}/idp/okta"
        assert env["ROTATOR_ALLOW_INSECURE_HTTP"] == "true"
        assert env["ROTATOR_REDOX__BASE_URL"] == f"{url}/platform"  # the existing lines stay
        token = env["ROTATOR_SECRET_SOURCE__OKTA__API_TOKEN"]
        assert httpx.get(f"{url}/_sandbox/idp/credentials").json()["okta"]["api_token"] == token
        settings = httpx.get(f"{url}/_sandbox/idp/settings").json()
        assert settings["propagation_delay_seconds"] == 3
        deadline = time.monotonic() + 5
        while True:
            totals = httpx.get(f"{url}/_sandbox/deliveries/stats").json()["totals"]
            if totals["succeeded"] >= 4:
                break
            assert time.monotonic() < deadline, totals
            time.sleep(0.1)
        assert totals["failed"] == 0
        (app, _) = httpx.get(f"{url}/_sandbox/idp/apps").json()["okta"]
        listed = httpx.get(
            f"{url}/idp/okta/api/v1/apps/{app['app_id']}/credentials/secrets",
            headers={"Authorization": f"SSWS {token}"},
        )
        assert listed.status_code == 200 and len(listed.json()) == 1
    finally:
        _stop(proc)


def test_entra_settings(tmp_path: Path) -> None:
    proc, env, url = _serve(tmp_path, "--idp", "entra")
    try:
        assert env["ROTATOR_SECRET_SOURCE__KIND"] == "entra"
        tenant = env["ROTATOR_SECRET_SOURCE__ENTRA__TENANT_ID"]
        assert env["ROTATOR_SECRET_SOURCE__ENTRA__GRAPH_URL"] == f"{url}/idp/entra/graph/v1.0"
        assert env["ROTATOR_SECRET_SOURCE__ENTRA__LOGIN_URL"] == f"{url}/idp/entra/login"
        reply = httpx.post(
            f"{env['ROTATOR_SECRET_SOURCE__ENTRA__LOGIN_URL']}/{tenant}/oauth2/v2.0/token",
            data={
                "client_id": env["ROTATOR_SECRET_SOURCE__ENTRA__CLIENT_ID"],
                "client_secret": env["ROTATOR_SECRET_SOURCE__ENTRA__CLIENT_SECRET"],
                "grant_type": "client_credentials",
                "scope": "https://graph.microsoft.com/.default",
            },
        )
        assert reply.status_code == 200
    finally:
        _stop(proc)


def test_bad_idp_flags_exit_2() -> None:
    for args, reason in (
        (["--idp", "keycloak"], "--idp must be okta, entra or none"),
        (["--idp-delay", "-1"], "--idp-delay must be a finite number >= 0"),
    ):
        done = subprocess.run(
            [*CLI, *args], capture_output=True, text=True, timeout=30, check=False
        )
        assert done.returncode == 2, (args, done.stderr)
        assert reason in done.stderr
