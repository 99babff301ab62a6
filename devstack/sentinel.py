"""A Redis Sentinel setup on 127.0.0.1: a primary, a replica and three sentinels.

Every process is the shipped ``redis-server`` binary (:func:`~devstack.redis_server.
find_redis_server`); a sentinel is ``redis-server <sentinel.conf> --sentinel``. The
sentinels watch the primary under one master name with quorum 2 and short timeouts, so a
killed primary is replaced by the replica within seconds. Like every other child of the dev
stack, each process runs in its own session and dies with the process that started it.

    with SentinelCluster(password="pw") as cluster:
        env = cluster.env()            # ROTATOR_REDIS_URL=sentinel://...;sentinel://...
        cluster.kill_primary()         # SIGKILL, as a crashed machine
        cluster.wait_failover()        # the sentinels name the replica as the primary
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import redis

from devstack.lifeline import die_with_parent
from devstack.redis_server import find_redis_server, free_port
from worker.errors import UsageError

__all__ = ["SentinelCluster"]


@dataclass
class _Node:
    """One redis-server process (data node or sentinel)."""

    name: str
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, *, kill: bool = False, timeout: float = 10.0) -> None:
        """SIGTERM (or SIGKILL), then SIGKILL if it has not exited within ``timeout``."""
        if self.process is None:
            return
        if self.process.poll() is None:
            if kill:
                self.process.kill()
            else:
                self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stderr:
            self.process.stderr.close()


class SentinelCluster:
    """A primary, a replica (``--replicaof``) and ``sentinels`` sentinels, all on loopback.

    ``password`` protects the primary and the replica (``requirepass`` + ``masterauth``,
    and ``sentinel auth-pass`` so the sentinels can reach them); ``sentinel_password``
    protects the sentinels themselves (``requirepass`` + ``sentinel sentinel-pass``).
    ``down_after_ms`` and ``failover_timeout_ms`` are kept short for tests.
    """

    def __init__(
        self,
        *,
        master_name: str = "rotator",
        password: str | None = None,
        sentinel_password: str | None = None,
        sentinels: int = 3,
        quorum: int = 2,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 5000,
        directory: Path | None = None,
    ) -> None:
        self.master_name = master_name
        self.password = password
        self.sentinel_password = sentinel_password
        self.quorum = quorum
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if directory is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="rotator-sentinel-")
            directory = Path(self._tmp.name)
        self.directory = directory
        self.primary = _Node("primary", free_port())
        self.replica = _Node("replica", free_port())
        self.sentinels = [_Node(f"sentinel-{i + 1}", free_port()) for i in range(sentinels)]
        #: Monotonic time of :meth:`kill_primary` (None before).
        self.killed_at: float | None = None

    # -- what clients need --------------------------------------------------------------

    @property
    def url(self) -> str:
        """``sentinel://[:password@]127.0.0.1:<port>/0`` for every sentinel, ``;``-joined
        (the primary's password in each part, as kombu may connect through any of them)."""
        auth = f":{self.password}@" if self.password else ""
        return ";".join(f"sentinel://{auth}127.0.0.1:{s.port}/0" for s in self.sentinels)

    def env(self) -> dict[str, str]:
        """The service's settings for this setup."""
        env = {
            "ROTATOR_REDIS_URL": self.url,
            "ROTATOR_REDIS_SENTINEL__MASTER_NAME": self.master_name,
        }
        if self.sentinel_password:
            env["ROTATOR_REDIS_SENTINEL__PASSWORD"] = self.sentinel_password
        return env

    def node_client(self, node: _Node, *, timeout: float = 1.0) -> redis.Redis:
        """A plain client for one process (a sentinel, or a data node), for inspection."""
        password = self.sentinel_password if node in self.sentinels else self.password
        return redis.Redis(
            "127.0.0.1",
            node.port,
            password=password,
            decode_responses=True,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
        )

    def master_port(self) -> int | None:
        """The primary's port as a majority of the reachable sentinels name it (None if
        none answers)."""
        votes: dict[int, int] = {}
        for node in self.sentinels:
            if not node.alive:
                continue
            client = self.node_client(node)
            try:
                found = client.execute_command(  # type: ignore[no-untyped-call]
                    "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name
                )
            except redis.RedisError:
                continue
            finally:
                client.close()
            if found:
                port = int(found[1])
                votes[port] = votes.get(port, 0) + 1
        if not votes:
            return None
        port, count = max(votes.items(), key=lambda item: item[1])
        return port if count >= self.quorum else None

    # -- life cycle ---------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> SentinelCluster:
        """Start the primary, the replica and the sentinels; return once every sentinel
        sees the primary, the replica and the other sentinels."""
        try:
            self._start_data(self.primary, replica_of=None)
            self._start_data(self.replica, replica_of=self.primary.port)
            self._wait_replica_synced(timeout)
            for node in self.sentinels:
                self._start_sentinel(node)
            self._wait_sentinels(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def kill_primary(self) -> float:
        """SIGKILL the primary (no shutdown, no final write): return the monotonic time."""
        self.primary.stop(kill=True)
        self.killed_at = time.monotonic()
        return self.killed_at

    def wait_failover(self, timeout: float = 60.0) -> float:
        """Wait until the sentinels name the replica as the primary; seconds since the
        kill (or since the call, if nothing was killed)."""
        since = self.killed_at if self.killed_at is not None else time.monotonic()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.master_port() == self.replica.port and self._is_primary(self.replica):
                return time.monotonic() - since
            time.sleep(0.05)
        raise UsageError(f"no failover to the replica within {timeout}s")

    def stop(self) -> None:
        """Stop the sentinels, then the data nodes (SIGTERM, then SIGKILL)."""
        for node in [*self.sentinels, self.replica, self.primary]:
            node.stop()

    def cleanup(self) -> None:
        """Stop everything and remove the directory if we created it."""
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> SentinelCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()

    # -- internals ----------------------------------------------------------------------

    def _spawn(self, node: _Node, args: list[str]) -> None:
        # Own session (a Ctrl-C reaches only the parent) and the parent-death signal.
        node.process = subprocess.Popen(
            [str(find_redis_server()), *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=die_with_parent(),  # noqa: PLW1509 - prctl only, no locks taken
        )

    def _start_data(self, node: _Node, *, replica_of: int | None) -> None:
        directory = self.directory / node.name
        directory.mkdir(parents=True, exist_ok=True)
        args = [
            "--port", str(node.port),
            "--bind", "127.0.0.1",
            "--dir", str(directory),
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--maxmemory-policy", "noeviction",
            "--daemonize", "no",
            "--logfile", str(directory / "redis.log"),
        ]  # fmt: skip
        if self.password:
            args += ["--requirepass", self.password, "--masterauth", self.password]
        if replica_of is not None:
            args += ["--replicaof", "127.0.0.1", str(replica_of)]
        self._spawn(node, args)
        self._wait_ping(node)

    def _start_sentinel(self, node: _Node) -> None:
        directory = self.directory / node.name
        directory.mkdir(parents=True, exist_ok=True)
        name = self.master_name
        lines = [
            f"port {node.port}",
            "bind 127.0.0.1",
            f"dir {directory}",
            "daemonize no",
            f"logfile {directory / 'sentinel.log'}",
            f"sentinel monitor {name} 127.0.0.1 {self.primary.port} {self.quorum}",
            f"sentinel down-after-milliseconds {name} {self.down_after_ms}",
            f"sentinel failover-timeout {name} {self.failover_timeout_ms}",
            f"sentinel parallel-syncs {name} 1",
        ]
        if self.password:
            lines.append(f"sentinel auth-pass {name} {self.password}")
        if self.sentinel_password:
            lines += [
                f"requirepass {self.sentinel_password}",
                f"sentinel sentinel-pass {self.sentinel_password}",
            ]
        # The sentinel rewrites its own config file (it records what it learns there).
        conf = directory / "sentinel.conf"
        conf.write_text("\n".join(lines) + "\n")
        conf.chmod(0o600)
        self._spawn(node, [str(conf), "--sentinel"])
        self._wait_ping(node)

    def _wait_ping(self, node: _Node, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        client = self.node_client(node, timeout=0.2)
        try:
            while time.monotonic() < deadline:
                if node.process is not None and node.process.poll() is not None:
                    err = node.process.stderr.read().decode() if node.process.stderr else ""
                    raise UsageError(f"{node.name} exited at start: {err.strip()[-200:]}")
                with contextlib.suppress(redis.RedisError):
                    if client.ping():
                        return
                time.sleep(0.02)
        finally:
            client.close()
        raise UsageError(f"{node.name} did not answer on port {node.port} within {timeout}s")

    def _is_primary(self, node: _Node) -> bool:
        client = self.node_client(node)
        try:
            return str(client.info("replication").get("role")) == "master"
        except redis.RedisError:
            return False
        finally:
            client.close()

    def _wait_replica_synced(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        client = self.node_client(self.replica)
        try:
            while time.monotonic() < deadline:
                with contextlib.suppress(redis.RedisError):
                    if client.info("replication").get("master_link_status") == "up":
                        return
                time.sleep(0.05)
        finally:
            client.close()
        raise UsageError(f"the replica did not sync with the primary within {timeout}s")

    def _wait_sentinels(self, timeout: float) -> None:
        """Each sentinel knows the primary, one replica and every other sentinel (they find
        each other through the primary's hello channel, every 2 s; replicas through its
        INFO, every 10 s)."""
        deadline = time.monotonic() + timeout
        others = len(self.sentinels) - 1
        while time.monotonic() < deadline:
            if all(self._sentinel_ready(node, others) for node in self.sentinels):
                return
            time.sleep(0.2)
        raise UsageError(f"the sentinels did not all see the primary and replica in {timeout}s")

    def _sentinel_ready(self, node: _Node, others: int) -> bool:
        client = self.node_client(node)
        try:
            state = client.execute_command(  # type: ignore[no-untyped-call]
                "SENTINEL", "MASTER", self.master_name
            )
        except redis.RedisError:
            return False
        finally:
            client.close()
        if isinstance(state, list):  # RESP2 without a response callback: [k1, v1, k2, ...]
            state = dict(zip(state[::2], state[1::2], strict=True))
        return (
            int(state.get("port", 0)) == self.primary.port
            and "s_down" not in str(state.get("flags", ""))
            and int(state.get("num-slaves", 0)) >= 1
            and int(state.get("num-other-sentinels", 0)) >= others
        )
