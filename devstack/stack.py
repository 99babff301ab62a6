"""A whole local stack as child processes: redis-server, sandbox, workers, beat, Flower.

``rotator demo``, the integration tests, the chaos suite and the benchmarks all start the
product the same way through :class:`LocalStack`, over real sockets, and stop every child
it started (SIGTERM, then SIGKILL) when closed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

import httpx

from config.settings import Settings, load_settings
from devstack.lifeline import die_with_parent
from devstack.redis_server import RedisServer, free_port
from sandbox.client import SandboxControl
from worker.errors import UsageError

__all__ = ["Child", "LocalStack", "idp_settings"]


def idp_settings(control: SandboxControl, kind: str) -> dict[str, str]:
    """The service's settings for the sandbox's ``okta`` or ``entra`` IdP."""
    found = control.idp_credentials()[kind]
    env = {"ROTATOR_SECRET_SOURCE__KIND": kind, "ROTATOR_ALLOW_INSECURE_HTTP": "true"}
    if kind == "okta":
        env["ROTATOR_SECRET_SOURCE__OKTA__ORG_URL"] = found["org_url"]
        env["ROTATOR_SECRET_SOURCE__OKTA__API_TOKEN"] = found["api_token"]
    else:
        for name in ("tenant_id", "client_id", "client_secret", "graph_url", "login_url"):
            env[f"ROTATOR_SECRET_SOURCE__ENTRA__{name.upper()}"] = found[name]
    return env


@dataclass
class Child:
    """A child process started by the stack, with its log file."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]

    @property
    def alive(self) -> bool:
        """True while the process runs."""
        return self.process.poll() is None

    def log_text(self) -> str:
        """Everything the child wrote so far (also after it stopped)."""
        if not self.log_file.closed:
            self.log_file.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, *, kill: bool = False, timeout: float = 20.0) -> None:
        """Stop the child's whole process group (SIGTERM, or SIGKILL), then wait."""
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log_file.close()


class LocalStack:
    """Start the product's parts on 127.0.0.1 in a private directory."""

    def __init__(
        self,
        directory: Path | None = None,
        *,
        redis_password: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if directory is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="rotator-stack-")
            directory = Path(self._tmp.name)
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.redis = RedisServer(
            directory=self.dir / "redis", appendonly=True, password=redis_password
        )
        (self.dir / "redis").mkdir(exist_ok=True)
        self.children: list[Child] = []
        self.sandbox_url = ""
        self.extra_env = dict(env or {})
        self.env: dict[str, str] = {}

    # -- parts --------------------------------------------------------------------------

    def start_redis(self) -> str:
        """Start redis-server (AOF on); return its URL."""
        self.redis.start()
        self.env["ROTATOR_REDIS_URL"] = self.redis.url
        return self.redis.url

    def start_sandbox(self, *args: str, seed: int = 0, port: int = 0) -> SandboxControl:
        """Start ``rotator sandbox`` as a child; point the service's env at it."""
        port = port or free_port()
        env_file = self.dir / "sandbox.env"
        child = self._spawn(
            "sandbox",
            ["sandbox", "--port", str(port), "--seed", str(seed),
             "--key-dir", str(self.dir / "keys"), "--env-file", str(env_file), *args],
        )  # fmt: skip
        self.sandbox_url = f"http://127.0.0.1:{port}"
        _wait_http(f"{self.sandbox_url}/_sandbox/health", child)
        for line in env_file.read_text().splitlines():
            if line and not line.startswith("#") and "=" in line:
                name, _, value = line.removeprefix("export ").partition("=")
                self.env[name] = value
        return SandboxControl(self.sandbox_url)

    def start_worker(
        self, name: str = "w1", *args: str, concurrency: int = 4, pool: str = "threads",
        env: dict[str, str] | None = None, wait: bool = True, lean: bool = True,
        crash_after: str | None = None,
    ) -> Child:  # fmt: skip
        """Start ``rotator worker`` with a unique node name; wait until it is ready.

        ``lean`` turns off mingle and gossip: on a one-host stack they only add start-up
        time and broker chatter. ``crash_after`` starts it through :mod:`devstack.crash`:
        its pool process SIGKILLs itself once per rotation right after that step.
        """
        node = f"{name}@%h"
        extra = ("--without-mingle", "--without-gossip", *args) if lean else args
        argv = ["worker", "--pool", pool, "-c", str(concurrency), "-n", node, *extra]
        if crash_after is not None:
            argv = ["--after", crash_after, *argv]
        child = self._spawn(
            f"worker-{name}",
            argv,
            env=env,
            module="devstack.crash" if crash_after is not None else "worker.cli",
        )
        if wait:
            self.wait_for_log(child, "ready.", timeout=60)
        return child

    def start_beat(self, *args: str, env: dict[str, str] | None = None) -> Child:
        """Start ``rotator beat``."""
        return self._spawn("beat", ["beat", *args], env=env)

    def start_flower(self, port: int, basic_auth: str, *args: str) -> Child:
        """Start Flower (needs the ``flower`` extra) with basic auth on 127.0.0.1:port."""
        if shutil.which("celery", path=str(Path(sys.executable).parent)) is None:
            raise UsageError("celery executable not found next to this Python")
        child = self._spawn(
            "flower",
            ["-A", "worker.celery_entry:app", "flower", f"--port={port}", "--address=127.0.0.1",
             f"--basic-auth={basic_auth}", *args],
            executable=str(Path(sys.executable).parent / "celery"),
        )  # fmt: skip
        user, _, password = basic_auth.partition(":")
        _wait_http(f"http://127.0.0.1:{port}/healthcheck", child, auth=(user, password))
        return child

    # -- helpers ------------------------------------------------------------------------

    def child_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for a child process or a CLI run against this stack."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROTATOR_")}
        env.update(
            ROTATOR_ENV_FILE=str(self.dir / "no.env"),
            ROTATOR_LOG_FORMAT="json",
            PYTHONUNBUFFERED="1",
        )
        env.update(self.env)
        env.update(self.extra_env)
        env.update(extra or {})
        return env

    def settings(self, env: dict[str, str] | None = None) -> Settings:
        """Settings exactly as a child started with ``env`` sees them (swaps os.environ for
        the call: for tests and benchmarks, not for threads that read the environment)."""
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(self.child_env(env))
        try:
            return load_settings()
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def rotator(self, *args: str, timeout: float = 120, env: dict[str, str] | None = None,
                input_text: str | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
        """Run the ``rotator`` CLI against this stack; return the completed process."""
        return subprocess.run(
            [sys.executable, "-m", "worker.cli", *args],
            env=self.child_env(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input_text,
            check=False,
        )

    def wait_for_log(self, child: Child, text: str, timeout: float = 30) -> None:
        """Wait until ``text`` appears in the child's log (UsageError if it dies or times out)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in child.log_text():
                return
            if not child.alive:
                raise UsageError(f"{child.name} exited: {child.log_text()[-800:]}")
            time.sleep(0.1)
        raise UsageError(f"{child.name}: no {text!r} in its log within {timeout}s")

    def _spawn(
        self, name: str, args: list[str], *, env: dict[str, str] | None = None,
        executable: str | None = None, module: str = "worker.cli",
    ) -> Child:  # fmt: skip
        log_path = self.dir / f"{name}.log"
        restarts = 1
        while log_path.exists():  # a child started again under the same name: its own log
            restarts += 1
            log_path = self.dir / f"{name}-{restarts}.log"
        log_file = log_path.open("ab")
        command = [executable, *args] if executable else [sys.executable, "-m", module, *args]
        process = subprocess.Popen(
            command,
            env=self.child_env(env),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent(),  # noqa: PLW1509 - prctl only, no locks taken
            cwd=self.dir,
        )
        child = Child(name, process, log_path, log_file)
        self.children.append(child)
        return child

    def close(self) -> None:
        """Stop every child this stack started, then Redis, then remove the directory."""
        for child in reversed(self.children):
            child.stop()
        self.children.clear()
        self.redis.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> LocalStack:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _wait_http(
    url: str, child: Child, *, timeout: float = 30, auth: tuple[str, str] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive:
            raise UsageError(f"{child.name} exited at start: {child.log_text()[-800:]}")
        try:
            if httpx.get(url, timeout=1, auth=auth).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise UsageError(f"{child.name} did not answer {url} within {timeout}s")
