"""``rotator config check`` in a real subprocess: exit codes, one line per problem, no secrets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox import generate_keypair

pytestmark = pytest.mark.integration

REDIS_PASSWORD = "r3dis-Pa55-do-not-print"
SOURCE_TOKEN = "src-T0ken-do-not-print"


def run_check(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI with only ``env`` (plus PATH/HOME) and no .env file."""
    clean = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "ROTATOR_ENV_FILE": str(tmp_path / "absent.env"),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", "config", "check", *args],
        env=clean,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def complete_env(tmp_path: Path) -> dict[str, str]:
    key = generate_keypair(tmp_path / "keys").private_key_path
    key.chmod(0o600)
    return {
        "ROTATOR_REDIS_URL": f"redis://:{REDIS_PASSWORD}@127.0.0.1:6379/0",
        "ROTATOR_SECRET_SOURCE__KIND": "http",
        "ROTATOR_SECRET_SOURCE__HTTP__URL": "https://vault.test/rotate",
        "ROTATOR_SECRET_SOURCE__HTTP__TOKEN": SOURCE_TOKEN,
        "ROTATOR_REDOX__CLIENT_ID": "client-1",
        "ROTATOR_REDOX__KEY_ID": "kid-1",
        "ROTATOR_REDOX__PRIVATE_KEY_PATH": str(key),
    }


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("rotator: error: ")]


def assert_no_secrets(result: subprocess.CompletedProcess[str]) -> None:
    for secret in (REDIS_PASSWORD, SOURCE_TOKEN):
        assert secret not in result.stdout
        assert secret not in result.stderr


def test_complete_settings_pass(tmp_path: Path, complete_env: dict[str, str]) -> None:
    result = run_check(tmp_path, complete_env)
    assert result.returncode == 0, result.stderr
    assert "settings are complete" in result.stdout
    assert "ROTATOR_REDOX__CLIENT_ID" in result.stdout
    assert "ROTATOR_REDIS_URL=redis://:***@127.0.0.1:6379/0" in result.stdout.splitlines()
    assert result.stderr == ""
    assert_no_secrets(result)


def test_a_rehearsal_longer_than_a_run_allows_is_warned_about(
    tmp_path: Path, complete_env: dict[str, str]
) -> None:
    env = {**complete_env, "ROTATOR_VERIFY__REHEARSAL_SECONDS": "200"}  # soft limit 240 s
    result = run_check(tmp_path, env)
    assert result.returncode == 0, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if "REHEARSAL_SECONDS" in line]
    assert "ROTATOR_VERIFY__REHEARSAL_SECONDS=200 is more than a run allows" in line
    assert "180 s" in line
    env["ROTATOR_CELERY__SOFT_TIME_LIMIT"] = "300"  # 3/4 is 225 s: it fits
    env["ROTATOR_CELERY__TIME_LIMIT"] = "330"
    assert "REHEARSAL_SECONDS" not in run_check(tmp_path, env).stderr


def test_json_output_parses_and_masks(tmp_path: Path, complete_env: dict[str, str]) -> None:
    result = run_check(tmp_path, complete_env, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["problems"] == []
    rows = report["settings"]
    assert rows["ROTATOR_REDIS_URL"] == "redis://:***@127.0.0.1:6379/0"
    assert rows["ROTATOR_SECRET_SOURCE__HTTP__TOKEN"] == "***"
    assert rows["ROTATOR_REDOX__KEY_ID"] == "kid-1"
    assert rows["ROTATOR_RETRY__MAX_ATTEMPTS"] == 5
    assert_no_secrets(result)


def test_missing_redox_settings_exit_2_one_line_each(tmp_path: Path) -> None:
    env = {
        "ROTATOR_REDIS_URL": f"redis://:{REDIS_PASSWORD}@cache:6379/0",
        "ROTATOR_SECRET_SOURCE__KIND": "http",
        "ROTATOR_SECRET_SOURCE__HTTP__URL": "https://vault.test/rotate",
        "ROTATOR_SECRET_SOURCE__HTTP__TOKEN": SOURCE_TOKEN,
    }
    result = run_check(tmp_path, env)
    assert result.returncode == 2
    assert error_lines(result.stderr) == [
        "rotator: error: ROTATOR_REDOX__CLIENT_ID is empty",
        "rotator: error: ROTATOR_REDOX__KEY_ID is empty",
        "rotator: error: ROTATOR_REDOX__PRIVATE_KEY_PATH is not set",
    ]
    assert "Traceback" not in result.stderr + result.stdout
    assert_no_secrets(result)


def test_problems_are_listed_in_json_too(tmp_path: Path, complete_env: dict[str, str]) -> None:
    Path(complete_env["ROTATOR_REDOX__PRIVATE_KEY_PATH"]).chmod(0o644)
    result = run_check(tmp_path, complete_env, "--json")
    assert result.returncode == 2
    [problem] = json.loads(result.stdout)["problems"]
    assert problem.startswith("ROTATOR_REDOX__PRIVATE_KEY_PATH: ")
    assert "readable by group or others" in problem
    assert error_lines(result.stderr) == [f"rotator: error: {problem}"]


def test_invalid_values_exit_2_without_traceback(
    tmp_path: Path, complete_env: dict[str, str]
) -> None:
    env = {
        **complete_env,
        "ROTATOR_REDIS_URL": f"http://:{REDIS_PASSWORD}@cache:6379/0",
        "ROTATOR_REDOX__BASE_URL": "http://127.0.0.1:8085/platform",
        "ROTATOR_CELERY__SOFT_TIME_LIMIT": "900",
        "ROTATOR_SECRET_SOURCE__COMMAND": "not json",
    }
    result = run_check(tmp_path, env)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    lines = error_lines(result.stderr)
    assert lines == [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1  # a value that is not JSON stops parsing before validation
    assert "ROTATOR_SECRET_SOURCE" in lines[0]
    del env["ROTATOR_SECRET_SOURCE__COMMAND"]
    result = run_check(tmp_path, env)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    names = sorted(
        line.removeprefix("rotator: error: ").split(":")[0].split(" ")[0]
        for line in error_lines(result.stderr)
    )
    assert names == [
        "ROTATOR_CELERY__SOFT_TIME_LIMIT",
        "ROTATOR_REDIS_URL",
        "ROTATOR_REDOX__BASE_URL",
    ]
    assert_no_secrets(result)
