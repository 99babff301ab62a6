"""``rotator demo``: rotations with no configuration, and nothing left behind when it stops."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from config.registry import parse_registry
from devstack.demo.runner import DemoDestination, DemoOptions, registry_toml

pytestmark = pytest.mark.integration

_DIR = re.compile(r"^files\s+(\S+)", re.MULTILINE)


class DemoProcess:
    """``python -m worker.cli demo ...`` with a clean environment; output read in a thread."""

    def __init__(self, *args: str, cwd: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROTATOR_")}
        env["PYTHONUNBUFFERED"] = "1"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "demo", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
            cwd=cwd,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, count: int = 1, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.output.count(pattern) >= count:
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"no {count}x {pattern!r} in the demo output:\n{self.output}")

    def children(self) -> list[psutil.Process]:
        children: list[psutil.Process] = psutil.Process(self.process.pid).children(recursive=True)
        return children

    def finish(self, timeout: float = 90) -> int:
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def _survivors(children: list[psutil.Process]) -> list[str]:
    alive = []
    for child in children:
        try:
            if child.is_running() and child.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{child.pid} {' '.join(child.cmdline())[:120]}")
        except psutil.NoSuchProcess:
            continue
    return alive


def _check_children(children: list[psutil.Process]) -> None:
    names = " ".join(" ".join(c.cmdline()) for c in children)
    # The demo really ran every part as its own process.
    for part in ("redis-server", "sandbox", "worker", "beat"):
        assert part in names, f"no {part} among the demo's children: {names[:400]}"


def test_demo_runs_rotations_and_exits_cleanly_after_duration(tmp_path: Path) -> None:
    demo = DemoProcess("--destinations", "3", "--duration", "40", "--plain", cwd=tmp_path)
    try:
        demo.wait_for("rotation.succeeded", count=3)
        children = demo.children()
        _check_children(children)
        code = demo.finish()
    finally:
        demo.kill()
    assert code == 0, demo.output
    match = _DIR.search(demo.output)
    assert match, demo.output
    assert not Path(match.group(1)).exists(), "the demo's temp dir is still there"
    assert _survivors(children) == []
    assert demo.output.count("rotation.succeeded") >= 3
    summary = re.search(r"demo: rotations: (\d+) succeeded", demo.output)
    assert summary and int(summary.group(1)) >= 3, demo.output
    assert "rotation.failed" not in demo.output


def test_sigint_stops_everything_and_exits_zero(tmp_path: Path) -> None:
    demo = DemoProcess("--destinations", "2", "--plain", "--no-flower", cwd=tmp_path)
    try:
        demo.wait_for("rotation.succeeded", count=2)
        children = demo.children()
        _check_children(children)
        demo.process.send_signal(signal.SIGINT)
        code = demo.finish()
    finally:
        demo.kill()
    assert code == 0, demo.output
    match = _DIR.search(demo.output)
    assert match, demo.output
    assert not Path(match.group(1)).exists()
    assert _survivors(children) == []
    assert "stopped every process it started" in demo.output


def test_sighup_stops_everything_and_exits_zero(tmp_path: Path) -> None:
    """A closed terminal (SIGHUP) stops every child, as Ctrl-C does."""
    demo = DemoProcess("--destinations", "1", "--plain", "--no-flower", cwd=tmp_path)
    try:
        demo.wait_for("rotation.succeeded", count=1)
        children = demo.children()
        _check_children(children)
        demo.process.send_signal(signal.SIGHUP)
        code = demo.finish()
    finally:
        demo.kill()
    assert code == 0, demo.output
    assert _survivors(children) == []
    assert "stopped every process it started" in demo.output


def test_children_do_not_outlive_a_killed_demo(tmp_path: Path) -> None:
    """SIGKILL leaves the demo no chance to clean up: the kernel stops its children."""
    demo = DemoProcess("--destinations", "1", "--plain", "--no-flower", cwd=tmp_path)
    try:
        demo.wait_for("rotation.succeeded", count=1)
        children = demo.children()
        _check_children(children)
        demo.process.kill()
        demo.process.wait(timeout=10)
        deadline = time.monotonic() + 30
        while _survivors(children) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        demo.kill()
    assert _survivors(children) == []


def test_demo_registry_is_valid_and_fast() -> None:
    destinations = [DemoDestination(f"d-{n}", f"dest-{n}", "env-1", f"cred-{n}") for n in range(3)]
    options = DemoOptions(destinations=3)
    registry = parse_registry(registry_toml(destinations, options), source="demo.toml")
    policies = registry.policies()
    assert [p.destination_id for p in policies] == ["d-0", "d-1", "d-2"]
    assert all(p.interval_seconds == options.interval_seconds for p in policies)
    assert all(p.grace_seconds == options.grace_seconds for p in policies)


def test_bad_options_are_usage_errors(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "worker.cli", "demo", "--fail-rate", "2"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "--fail-rate" in result.stderr
