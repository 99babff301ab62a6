"""``rotator sandbox``: prints the worker's settings, serves, refuses bad flags with exit 2."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import jwt
import pytest

from .conftest import ASSERTION_TYPE

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-c", "from worker.cli.main import main; main()", "sandbox"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _read_env(proc: subprocess.Popen[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").strip().partition("=")
            env[name] = value
        if line.startswith("# seeded destinations"):
            env["#seeded"] = line.strip()
            return env
    raise AssertionError(
        f"no settings printed; stderr: {proc.stderr.read() if proc.stderr else ''}"
    )


def test_cli_serves_and_prints_settings(tmp_path: Path) -> None:
    port = _free_port()
    env_file = tmp_path / "sandbox.env"
    args = ["--port", str(port), "--seed", "7", "--key-dir", str(tmp_path / "keys")]
    proc = subprocess.Popen(
        [*CLI, *args, "--env-file", str(env_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        env = _read_env(proc)
        url = f"http://127.0.0.1:{port}"
        assert env["ROTATOR_REDOX__BASE_URL"] == f"{url}/platform"
        assert env["ROTATOR_REDOX__TOKEN_URL"] == f"{url}/v2/auth/token"
        assert env["ROTATOR_REDOX__CLIENT_ID"] == "sandbox-client"
        assert env["ROTATOR_REDOX__KEY_ID"] == "sandbox-kid"
        assert env["ROTATOR_REDOX__ALLOW_INSECURE_HTTP"] == "true"
        assert "seeded destinations: 7:" in env["#seeded"]
        key_path = Path(env["ROTATOR_REDOX__PRIVATE_KEY_PATH"])
        assert key_path.stat().st_mode & 0o777 == 0o600
        assert "ROTATOR_REDOX__CLIENT_ID=sandbox-client" in env_file.read_text()

        deadline = time.monotonic() + 10
        while True:
            try:
                if httpx.get(f"{url}/_sandbox/health").status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        now = int(time.time())
        claims: dict[str, object] = {"iss": "sandbox-client", "sub": "sandbox-client"}
        claims["aud"] = f"{url}/v2/auth/token"
        claims |= {"iat": now, "exp": now + 300, "jti": "cli-test"}
        signed = jwt.encode(
            claims, key_path.read_bytes(), algorithm="RS384", headers={"kid": "sandbox-kid"}
        )
        form = {
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": signed,
        }
        assert httpx.post(f"{url}/v2/auth/token", data=form).status_code == 200
        assert len(httpx.get(f"{url}/_sandbox/state").json()["destinations"]) == 7
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--fail-rate", "1.5"], "--fail-rate must be between 0 and 1"),
        (["--fail-rate", "0.8", "--p429", "0.5"], "must not exceed 1"),
        (["--port", "70000"], "--port must be between"),
        (["--rate-limit", "0"], "--rate-limit must be > 0"),
        (["--token-ttl", "0"], "--token-ttl must be > 0"),
    ],
)
def test_bad_flags_exit_2(args: list[str], reason: str) -> None:
    done = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2
    assert reason in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_port_in_use_exits_2() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [*CLI, "--port", str(port)], capture_output=True, text=True, timeout=30, check=False
        )
    assert done.returncode == 2
    assert "already in use" in done.stderr
