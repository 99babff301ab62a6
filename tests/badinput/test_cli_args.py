"""Bad CLI arguments and broken registry files, end to end through the real ``rotator``.

Each bad input gives exit 2, exactly one line per problem on stderr starting with
``rotator: error:``, no traceback, and writes nothing to Redis. (Settings problems are
covered by tests/integration/test_config_cli.py; registry validation rules by
tests/unit/test_registry.py; here the point is what the user sees from the command.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

pytestmark = pytest.mark.integration


def rotator(
    tmp_path: Path, redis_url: str, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the CLI with a clean environment pointing at the test Redis."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "ROTATOR_ENV_FILE": str(tmp_path / "absent.env"),
        "ROTATOR_REDIS_URL": redis_url,
    }
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        input=stdin,
        check=False,
    )


def assert_usage_error(result: subprocess.CompletedProcess[str], *needles: str) -> list[str]:
    """Exit 2, only ``rotator: error:`` lines on stderr, no traceback; returns the lines."""
    lines = result.stderr.splitlines()
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    assert lines and all(line.startswith("rotator: error: ") for line in lines), lines
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)
    return lines


BAD_ARGS = [
    (["rotate", "bad id!"], "invalid destination id"),
    (["rotate", "../../etc/passwd"], "invalid destination id"),
    (["rotate", "x" * 65], "invalid destination id"),
    (["rotate", "abc", "--all"], "not both"),
    (["rotate"], "missing DESTINATION_ID"),
    (["rotate", "abc", "--timeout", "0"], "--timeout"),
    (["rotate", "abc", "--timeout", "soon"], "--timeout"),
    (["rotate", "abc", "--bogus"], "No such option"),
    (["events", "--since", "x"], "x"),
    (["events", "--since", "1-2-3"], "1-2-3"),
    (["events", "--limit", "0"], "--limit"),
    (["events", "--limit", "many"], "--limit"),
    (["status", "--bogus"], "No such option"),
    (["no-such-command"], "No such command"),
    (["registry", "check"], "Missing argument"),
]


@pytest.mark.parametrize(("args", "needle"), BAD_ARGS, ids=[" ".join(a)[:30] for a, _ in BAD_ARGS])
def test_bad_arguments_exit_2_with_one_line(
    tmp_path: Path, redis_url: str, args: list[str], needle: str
) -> None:
    """One line naming the problem, exit 2, and nothing written to Redis."""
    lines = assert_usage_error(rotator(tmp_path, redis_url, *args), needle)
    assert len(lines) == 1
    client = redis.Redis.from_url(redis_url)
    assert client.dbsize() == 0  # bad input changed nothing
    client.close()


BROKEN_REGISTRIES = {
    "wrong types": ('[defaults]\ninterval = 5\n[[destinations]]\nid = 3\nenvironment = "e"\n',
                    ["destinations[0]: id: expected a string"]),
    "unknown keys": ('[defaults]\ninterval = "1d"\nbogus = 1\n[[destinations]]\n'
                     'id = "a"\nenvironment = "e"\ncolour = "red"\n',
                     ["unknown key 'bogus'", "unknown key 'colour'"]),
    "bad durations": ('[defaults]\ninterval = "10s"\ngrace = "1x"\n',
                      ["shorter than the minimum", "bad duration '1x'"]),
    "bad cron": ('[defaults]\ncron = "99 * * * *"\n', ["bad cron"]),
    "interval and cron": ('[defaults]\ninterval = "1d"\ncron = "0 3 * * *"\n', ["not both"]),
    "duplicate ids": ('[defaults]\ninterval = "1d"\n[[destinations]]\nid = "a"\nenvironment = "e"\n'
                      '[[destinations]]\nid = "a"\nenvironment = "e"\n', ["duplicate of"]),
    "toml syntax": ("[[destinations]\n", ["TOML syntax error", "line 1"]),
    "not utf-8": (b"\xff\xfe[defaults]\n".decode("latin-1"), ["UTF-8"]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BROKEN_REGISTRIES))
def test_broken_registry_files(tmp_path: Path, redis_url: str, case: str) -> None:
    """``registry check`` and ``registry sync``: every problem on its own line, exit 2,
    and a failed sync leaves the schedule untouched."""
    text, needles = BROKEN_REGISTRIES[case]
    path = tmp_path / "registry.toml"
    path.write_bytes(text.encode("latin-1") if case == "not utf-8" else text.encode())
    lines = assert_usage_error(rotator(tmp_path, redis_url, "registry", "check", str(path)))
    for needle in needles:
        assert any(needle.lower() in line.lower() for line in lines), (needle, lines)
    assert all(str(path) in line for line in lines)  # each line names the file

    client = redis.Redis.from_url(redis_url)
    client.zadd("rotator:schedule", {"existing": 1.0})
    assert_usage_error(rotator(tmp_path, redis_url, "registry", "sync", str(path)))
    assert client.keys("*") == [b"rotator:schedule"]
    assert client.zrange("rotator:schedule", 0, -1) == [b"existing"]
    client.close()


def test_missing_and_directory_registry(tmp_path: Path, redis_url: str) -> None:
    """A path that does not exist, or a directory: one line each."""
    assert_usage_error(rotator(tmp_path, redis_url, "registry", "check", str(tmp_path / "no")))
    assert_usage_error(rotator(tmp_path, redis_url, "registry", "check", str(tmp_path)))


def test_unreachable_redis_is_one_line_exit_1(tmp_path: Path) -> None:
    """Not bad input but a common first-run mistake: one line, exit 1, no traceback."""
    result = rotator(tmp_path, "redis://127.0.0.1:1/0", "events")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and "Redis" in result.stderr
