"""docker-compose.yml: the compose-spec schema, `docker-compose config`, and the operational rules.

Schema validation uses check-jsonschema's vendored compose-spec schema (no network, no apt).
The `config` checks need a compose binary and skip with a reason when there is none.
The structural checks read the file as written, before interpolation, so ``${VAR}``
references are still visible.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from config.settings import CelerySettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
ACL_TEMPLATE = ROOT / "deploy" / "redis" / "users.acl"

#: Services meant to exit after one run (no healthcheck needed). There are none today.
ONE_SHOT: frozenset[str] = frozenset()
PROD_SERVICES = ("worker", "beat", "flower")
SANDBOX_SERVICES = ("sandbox", "worker-sandbox", "beat-sandbox", "flower-sandbox")
WORKERS = ("worker", "worker-sandbox")
FLOWERS = ("flower", "flower-sandbox")
#: The only variables compose may require (`${VAR:?}`). Compose interpolates the whole file,
#: so a required variable is required for every profile: requiring a Redox variable would
#: break `docker compose --profile sandbox up`. Both stacks need the Redis passwords of the
#: `rotator` and `flower` users and Flower's basic auth; ROTATOR_REGISTRY_FILE is required
#: so that production never falls back to the example registry (a sandbox-only run sets
#: it to anything: the sandbox reads ROTATOR_SANDBOX_REGISTRY_FILE).
REQUIRED_VARS = {
    "REDIS_PASSWORD",
    "REDIS_FLOWER_PASSWORD",
    "FLOWER_BASIC_AUTH",
    "ROTATOR_REGISTRY_FILE",
}
#: Redis user of each service (deploy/redis/users.acl) and the variable with its password.
REDIS_USERS = {
    "worker": ("rotator", "REDIS_PASSWORD"),
    "beat": ("rotator", "REDIS_PASSWORD"),
    "worker-sandbox": ("rotator", "REDIS_PASSWORD"),
    "beat-sandbox": ("rotator", "REDIS_PASSWORD"),
    "flower": ("flower", "REDIS_FLOWER_PASSWORD"),
    "flower-sandbox": ("flower", "REDIS_FLOWER_PASSWORD"),
    "metrics": ("exporter", "REDIS_EXPORTER_PASSWORD"),
}

REF = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?+])?(?P<arg>[^}]*)\}")
ONLY_REF = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(:?[-?+][^}]*)?\}$")
SECRETISH_KEY = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|AUTH|API_KEY|PRIVATE_KEY$|_KEY$")
NOT_SECRET_SUFFIXES = ("_URL", "_PATH", "_FILE", "_ID", "_IDS")


def _load(path: Path) -> dict[str, Any]:
    data = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _load(COMPOSE)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    result = compose["services"]
    assert isinstance(result, dict)
    return result


def _argv(command: object) -> list[str]:
    if isinstance(command, str):
        return shlex.split(command)
    assert isinstance(command, list)
    return [str(part) for part in command]


def _env(service: dict[str, Any]) -> dict[str, str | None]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) if "=" in item else (item, None) for item in env)
        return {key: value for key, value in pairs}
    return {str(k): (None if v is None else str(v)) for k, v in env.items()}


def _seconds(duration: object) -> float:
    """Compose duration (``330s``, ``5m30s``, ``1h``, a bare number of seconds) in seconds."""
    text = str(duration).strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", text)
    assert parts, f"not a duration: {duration!r}"
    assert "".join(n + u for n, u in parts) == text, f"not a duration: {duration!r}"
    return sum(float(n) * units[u] for n, u in parts)


def _walk_strings(node: object, path: str = "") -> Iterator[tuple[str, str | None, str]]:
    """(path, mapping key or None, string value) for every string in the document."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, str):
                yield f"{path}.{key}", str(key), value
            else:
                yield from _walk_strings(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            if isinstance(value, str):
                key = value.split("=", 1)[0] if "=" in value else None
                yield f"{path}[{index}]", key, value.split("=", 1)[1] if key else value
            else:
                yield from _walk_strings(value, f"{path}[{index}]")


def secret_literals(document: object) -> list[str]:
    """Places where a secret-looking setting holds a literal value instead of a ``${VAR}``."""
    problems: list[str] = []
    for path, key, value in _walk_strings(document):
        secretish = SECRETISH_KEY.search((key or "").upper()) and not (key or "").upper().endswith(
            NOT_SECRET_SUFFIXES
        )
        if secretish and value.strip() and not ONLY_REF.match(value.strip()):
            problems.append(f"{path}: literal value for {key}")
        for match in re.finditer(
            r"[a-z][a-z0-9+.-]*://(?P<userinfo>(?:\$\{[^}]*\}|[^@/\s$])*)@", value
        ):
            _, _, password = match.group("userinfo").partition(":")
            if password and not ONLY_REF.match(password):
                problems.append(f"{path}: literal password in URL")
        if "PRIVATE KEY-----" in value:
            problems.append(f"{path}: embedded private key")
    return problems


# ------------------------------------------------------------------------------ validators


def _tool(name: str) -> str | None:
    beside_python = Path(sys.executable).parent / name
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return str(beside_python)
    return shutil.which(name)


def _check_jsonschema(path: Path) -> subprocess.CompletedProcess[str]:
    tool = _tool("check-jsonschema")
    assert tool, "check-jsonschema is missing: it is in the `dev` extra (pip install -e '.[dev]')"
    return subprocess.run(
        [tool, "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_compose_file_matches_the_compose_spec_schema() -> None:
    result = _check_jsonschema(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_check_rejects_an_invalid_file(tmp_path: Path) -> None:
    bad = tmp_path / "docker-compose.yml"
    bad.write_text("services:\n  redis:\n    image: redis\n    restart: [always]\n    bogus: 1\n")
    result = _check_jsonschema(bad)
    assert result.returncode != 0, "the schema check accepted an invalid compose file"


def _compose_commands() -> list[Any]:
    params: list[Any] = []
    v1 = shutil.which("docker-compose")
    params.append(
        pytest.param(
            [v1] if v1 else None,
            id="docker-compose",
            marks=pytest.mark.skipif(
                v1 is None,
                reason="docker-compose binary absent (apt-get install docker-compose); "
                "the schema test still covers the file",
            ),
        )
    )
    docker = shutil.which("docker")
    v2 = False
    if docker:
        try:
            probe = subprocess.run(
                [docker, "compose", "version"], capture_output=True, timeout=30, check=False
            )
            v2 = probe.returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            v2 = False
    params.append(
        pytest.param(
            [docker, "compose"] if v2 else None,
            id="docker compose",
            marks=pytest.mark.skipif(not v2, reason="docker compose v2 plugin absent"),
        )
    )
    return params


@pytest.fixture
def compose_env(tmp_path: Path) -> dict[str, str]:
    """A clean environment with only what compose needs, plus an empty --env-file."""
    key = tmp_path / "redox_private_key.pem"
    key.write_text("placeholder, never read by `config`\n")
    registry = tmp_path / "registry.toml"
    registry.write_text("# placeholder, never read by `config`\n")
    env = {
        name: value
        for name, value in os.environ.items()
        if name in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "DOCKER_HOST")
    }
    env.update(
        REDIS_PASSWORD="dummy-redis-password",
        REDIS_FLOWER_PASSWORD="dummy-flower-password",
        FLOWER_BASIC_AUTH="admin:dummy",
        REDOX_PRIVATE_KEY_FILE=str(key),
        ROTATOR_REGISTRY_FILE=str(registry),
        ENV_FILE=str(tmp_path / "empty.env"),
    )
    (tmp_path / "empty.env").write_text("")
    return env


def _run_compose(
    command: list[str], env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    env_file = env["ENV_FILE"]
    return subprocess.run(
        [*command, "--env-file", env_file, "-f", str(COMPOSE), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={k: v for k, v in env.items() if k != "ENV_FILE"},
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("command", _compose_commands())
def test_docker_compose_config_accepts_every_profile(
    command: list[str], compose_env: dict[str, str]
) -> None:
    profiles = ["--profile", "prod", "--profile", "sandbox", "--profile", "metrics"]
    result = _run_compose(command, compose_env, *profiles, "config", "-q")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("command", _compose_commands())
def test_sandbox_profile_needs_no_redox_credentials(
    command: list[str], compose_env: dict[str, str]
) -> None:
    # The Redis passwords, Flower's basic auth and a placeholder for the production registry
    # (as docs/operations.md shows): no Redox client id, key id or key file, no real registry.
    env = {k: v for k, v in compose_env.items() if k != "REDOX_PRIVATE_KEY_FILE"}
    env["ROTATOR_REGISTRY_FILE"] = "./unused-by-the-sandbox"
    result = _run_compose(command, env, "--profile", "sandbox", "config", "--services")
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(SANDBOX_SERVICES) | {"redis"} <= set(result.stdout.split())


@pytest.mark.parametrize("variable", sorted(REQUIRED_VARS))
@pytest.mark.parametrize("command", _compose_commands())
def test_compose_refuses_to_run_without_a_required_variable(
    command: list[str], compose_env: dict[str, str], variable: str
) -> None:
    env = {k: v for k, v in compose_env.items() if k != variable}
    result = _run_compose(command, env, "--profile", "prod", "config", "-q")
    assert result.returncode != 0
    assert variable in result.stdout + result.stderr


@pytest.mark.parametrize("command", _compose_commands())
def test_production_mounts_the_given_registry_and_no_example(
    command: list[str], compose_env: dict[str, str]
) -> None:
    result = _run_compose(command, compose_env, "--profile", "prod", "config")
    assert result.returncode == 0, result.stdout + result.stderr
    rendered = YAML(typ="safe").load(result.stdout)["services"]
    for name in ("worker", "beat"):
        mounts = [_bind_source(v) for v in rendered[name]["volumes"]]
        assert compose_env["ROTATOR_REGISTRY_FILE"] in mounts, (name, mounts)
        assert not [m for m in mounts if "examples" in m], (name, mounts)


@pytest.mark.parametrize("command", _compose_commands())
def test_every_rendered_service_has_core_dumps_off(
    command: list[str], compose_env: dict[str, str]
) -> None:
    profiles = ["--profile", "prod", "--profile", "sandbox", "--profile", "metrics"]
    result = _run_compose(command, compose_env, *profiles, "config")
    assert result.returncode == 0, result.stdout + result.stderr
    for name, service in YAML(typ="safe").load(result.stdout)["services"].items():
        assert _core_limit(service) == (0, 0), name


def _bind_source(volume: object) -> str:
    if isinstance(volume, dict):
        return str(volume.get("source"))
    return str(volume).split(":", 1)[0]


def _core_limit(service: dict[str, Any]) -> tuple[int, int] | None:
    """(soft, hard) RLIMIT_CORE of a service's `ulimits`, or None when it sets none."""
    core = (service.get("ulimits") or {}).get("core")
    if core is None:
        return None
    if isinstance(core, dict):
        return int(core["soft"]), int(core["hard"])
    return int(core), int(core)


# ------------------------------------------------------------------------------ structure


def test_redis_is_durable_and_never_evicts(services: dict[str, dict[str, Any]]) -> None:
    redis = services["redis"]
    assert str(redis["image"]).startswith("redis:7")
    argv = _argv(redis["command"])
    pairs = dict(zip(argv, [*argv[1:], ""], strict=True))
    assert pairs["--appendonly"] == "yes"
    assert pairs["--appendfsync"] == "everysec"
    assert pairs["--maxmemory-policy"] == "noeviction"
    assert "ports" not in redis, "Redis must not be published"
    assert any(str(v).endswith(":/data") for v in redis["volumes"])


def test_redis_loads_the_acl_file_rendered_at_start(services: dict[str, dict[str, Any]]) -> None:
    """Users from deploy/redis/users.acl, rendered with hashed passwords by its entrypoint;
    no `requirepass` (that is the `default` user's password, and `default` is off)."""
    redis = services["redis"]
    argv = _argv(redis["command"])
    # The image's own entrypoint runs last: it starts redis-server as the redis user.
    assert argv[:2] == ["docker-entrypoint.sh", "redis-server"]
    pairs = dict(zip(argv, [*argv[1:], ""], strict=True))
    assert pairs["--aclfile"].startswith("/run/"), "rendered at every start, never persisted"
    assert "--requirepass" not in argv
    assert _argv(redis["entrypoint"]) == ["/bin/sh", "/etc/redis-acl/entrypoint.sh"]
    assert "./deploy/redis:/etc/redis-acl:ro" in redis["volumes"]
    assert (ROOT / "deploy" / "redis" / "entrypoint.sh").is_file()
    assert ACL_TEMPLATE.is_file()
    env = _env(redis)
    assert re.fullmatch(r"\$\{REDIS_PASSWORD:\?[^}]*\}", str(env["REDIS_PASSWORD"]))
    assert re.fullmatch(r"\$\{REDIS_FLOWER_PASSWORD:\?[^}]*\}", str(env["REDIS_FLOWER_PASSWORD"]))
    # Optional: without it the exporter user stays off.
    assert env["REDIS_EXPORTER_PASSWORD"] == "${REDIS_EXPORTER_PASSWORD:-}"
    # The healthcheck logs in as `rotator`, the password from REDISCLI_AUTH, not its argv.
    assert env["REDISCLI_AUTH"] == env["REDIS_PASSWORD"]
    probe = " ".join(_argv(redis["healthcheck"]["test"]))
    assert "--user rotator" in probe
    assert "PASSWORD" not in probe
    assert " -a " not in f" {probe} "


def _redis_url_user(url: str) -> tuple[str, str]:
    """(user, password reference) of a ``redis://user:${VAR...}@host`` URL."""
    found = re.fullmatch(r"redis://([^:@/]*):(\$\{[^}]+\})@redis:6379/[^/]+", url)
    assert found, f"not a redis://user:${{VAR}}@redis:6379/db URL: {url}"
    return found.group(1), found.group(2)


def _acl_users() -> set[str]:
    return {
        line.split()[1]
        for line in ACL_TEMPLATE.read_text(encoding="utf-8").splitlines()
        if line.startswith("user ")
    }


def test_each_service_logs_in_as_its_own_redis_user(
    services: dict[str, dict[str, Any]],
) -> None:
    users = _acl_users()
    assert users == {"default", "rotator", "flower", "exporter"}
    with_redis = {n for n, s in services.items() if "ROTATOR_REDIS_URL" in _env(s)}
    assert with_redis == set(REDIS_USERS), "every service that uses Redis has a user here"
    for name, (user, variable) in REDIS_USERS.items():
        found_user, password = _redis_url_user(str(_env(services[name])["ROTATOR_REDIS_URL"]))
        assert found_user == user, name
        assert found_user in users and found_user != "default", name
        reference = REF.fullmatch(password)
        assert reference is not None and reference["name"] == variable, name


def test_beat_gets_neither_the_redox_key_nor_redox_settings(
    services: dict[str, dict[str, Any]],
) -> None:
    """Beat only touches Redis and the registry; `rotator beat` needs no Redox setting."""
    for name in ("beat", "beat-sandbox"):
        beat = services[name]
        assert "secrets" not in beat, name
        assert not [k for k in _env(beat) if k.startswith("ROTATOR_REDOX__")], name
        assert not [v for v in beat["volumes"] if "/keys" in str(v)], name
        assert "sandbox" not in beat.get("depends_on", {}), name


def test_core_dumps_are_off_in_every_service(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        assert _core_limit(service) == (0, 0), f"{name}: ulimits core must be 0 (soft and hard)"


def test_core_limit_reader() -> None:
    assert _core_limit({"ulimits": {"core": {"soft": 0, "hard": 0}}}) == (0, 0)
    assert _core_limit({"ulimits": {"core": 0}}) == (0, 0)
    assert _core_limit({"ulimits": {"core": {"soft": 0, "hard": -1}}}) == (0, -1)
    assert _core_limit({"ulimits": {"nofile": 1024}}) is None
    assert _core_limit({}) is None


def test_flower_has_basic_auth_from_env_and_only_a_loopback_port(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in FLOWERS:
        flower = services[name]
        auth = _env(flower)["FLOWER_BASIC_AUTH"]
        assert auth is not None
        assert re.fullmatch(r"\$\{FLOWER_BASIC_AUTH:\?[^}]*\}", auth), name
        assert flower["ports"], name
        for port in flower["ports"]:
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
        argv = _argv(flower["command"])
        assert "flower" in argv
        assert "--max_tasks=10000" in argv
        assert "--persistent=True" in argv
        assert any(a.startswith("--db=/data/") for a in argv)
        assert any(str(v).endswith(":/data") for v in flower["volumes"])
        assert "/healthcheck" in " ".join(_argv(flower["healthcheck"]["test"]))
        # Flower watches the queues; it needs no Redox credentials or key.
        assert not [k for k in _env(flower) if k.startswith("ROTATOR_REDOX__")]
        assert "secrets" not in flower


def test_every_published_port_is_loopback_only(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for port in service.get("ports", []):
            assert isinstance(port, str), f"{name}: use the 'HOST_IP:HOST:CONTAINER' form"
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_worker_grace_period_outlasts_the_task_time_limits(
    services: dict[str, dict[str, Any]],
) -> None:
    limits = CelerySettings()
    for name in WORKERS:
        grace = _seconds(services[name]["stop_grace_period"])
        assert grace > limits.soft_time_limit, name
        assert grace >= limits.time_limit, name
        assert "container_name" not in services[name], f"{name} must stay scalable"


def test_duration_parser() -> None:
    assert _seconds("330s") == 330
    assert _seconds("5m30s") == 330
    assert _seconds("1h") == 3600
    assert _seconds(300) == 300


def test_no_literal_secrets(compose: dict[str, Any]) -> None:
    assert secret_literals(compose) == []
    assert "PRIVATE KEY" not in COMPOSE.read_text(encoding="utf-8")


def test_secret_detector_finds_literals() -> None:
    document = {
        "services": {
            "a": {
                "environment": {
                    "REDIS_PASSWORD": "hunter2",
                    "ROTATOR_REDOX__TOKEN_URL": "https://x/v2/auth/token",
                    "FOO_URL": "redis://:hunter2@redis:6379/0",
                    "OK_URL": "redis://:${REDIS_PASSWORD}@redis:6379/0",
                    "OK": "${FLOWER_BASIC_AUTH:?set it}",
                },
                "command": ["x", "--y"],
            },
            "b": {"environment": ["API_TOKEN=abc", "CLIENT_SECRET=${S}"]},
        }
    }
    found = secret_literals(document)
    assert len(found) == 3, found
    assert any("REDIS_PASSWORD" in f for f in found)
    assert any("FOO_URL" in f for f in found)
    assert any("API_TOKEN" in f for f in found)


def test_profiles_separate_production_from_the_sandbox(
    services: dict[str, dict[str, Any]],
) -> None:
    assert "profiles" not in services["redis"]
    for name in PROD_SERVICES:
        assert services[name]["profiles"] == ["prod"], name
    for name in SANDBOX_SERVICES:
        assert services[name]["profiles"] == ["sandbox"], name
    assert services["metrics"]["profiles"] == ["metrics"]
    sandbox_argv = _argv(services["sandbox"]["command"])
    assert sandbox_argv[:2] == ["rotator", "sandbox"]
    assert {"--host", "0.0.0.0", "--key-dir", "/keys"} <= set(sandbox_argv)


def test_production_never_points_at_the_sandbox(services: dict[str, dict[str, Any]]) -> None:
    for name in ("worker", "beat"):
        env = _env(services[name])
        # No URL overrides: the application defaults are the real Redox over https.
        for key in ("BASE_URL", "TOKEN_URL", "ALLOW_INSECURE_HTTP"):
            assert f"ROTATOR_REDOX__{key}" not in env, f"{name} sets ROTATOR_REDOX__{key}"
        assert not any("sandbox" in str(value) for value in env.values()), name
        assert str(env["ROTATOR_REDIS_URL"]).endswith("/0")
    # Only the worker calls Redox, so only the worker has the key.
    worker = _env(services["worker"])
    assert worker["ROTATOR_REDOX__PRIVATE_KEY_PATH"] == "/run/secrets/redox_private_key"
    assert services["worker"]["secrets"] == ["redox_private_key"]
    for name, service in services.items():
        if name != "worker":
            assert "redox_private_key" not in service.get("secrets", []), name


def test_sandbox_services_are_configured_for_the_sandbox(
    services: dict[str, dict[str, Any]],
) -> None:
    worker = services["worker-sandbox"]
    env = _env(worker)
    assert env["ROTATOR_REDOX__BASE_URL"] == "http://sandbox:8085/platform"
    assert str(env["ROTATOR_REDOX__TOKEN_URL"]).startswith("http://sandbox:8085/")
    assert env["ROTATOR_REDOX__ALLOW_INSECURE_HTTP"] == "true"
    assert env["ROTATOR_REDOX__CLIENT_ID"] == "sandbox-client"
    assert env["ROTATOR_REDOX__KEY_ID"] == "sandbox-kid"
    assert env["ROTATOR_REDOX__PRIVATE_KEY_PATH"] == "/keys/private_key.pem"
    assert "sandbox-keys:/keys:ro" in worker["volumes"]
    assert worker["depends_on"]["sandbox"]["condition"] == "service_healthy"
    # A separate Redis database: enabling both profiles cannot mix the queues or records.
    for name in ("worker-sandbox", "beat-sandbox", "flower-sandbox"):
        assert str(_env(services[name])["ROTATOR_REDIS_URL"]).endswith("/1"), name
        assert "secrets" not in services[name], name
    assert "sandbox-keys:/keys" in services["sandbox"]["volumes"]


def _refs(document: object) -> list[re.Match[str]]:
    """Every ``${VAR...}`` reference in the values of the document (comments excluded)."""
    return [m for _, _, value in _walk_strings(document) for m in REF.finditer(value)]


def test_only_the_listed_variables_are_required(compose: dict[str, Any]) -> None:
    required = {m["name"] for m in _refs(compose) if m["op"] in (":?", "?")}
    assert required == REQUIRED_VARS


def test_worker_and_beat_share_config_through_anchors(
    services: dict[str, dict[str, Any]], compose: dict[str, Any]
) -> None:
    assert any(key.startswith("x-") for key in compose)
    text = COMPOSE.read_text(encoding="utf-8")
    assert "<<: *rotator-base" in text
    for name in (*PROD_SERVICES, *SANDBOX_SERVICES, "metrics"):
        assert services[name]["build"]["dockerfile"] == "Dockerfile", name
    assert _argv(services["worker"]["command"]) == ["rotator", "worker"]
    assert _argv(services["beat"]["command"]) == ["rotator", "beat"]
    assert services["worker"]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_registry_is_mounted_read_only(services: dict[str, dict[str, Any]]) -> None:
    for name in ("worker", "beat", "worker-sandbox", "beat-sandbox"):
        mounts = [str(v) for v in services[name]["volumes"]]
        assert any(m.endswith(":/etc/rotator/registry.toml:ro") for m in mounts), name
        assert _env(services[name])["ROTATOR_REGISTRY_PATH"] == "/etc/rotator/registry.toml"


def _registry_source(service: dict[str, Any]) -> str:
    (mount,) = [str(v) for v in service["volumes"] if "/etc/rotator/registry.toml" in str(v)]
    return mount.rsplit(":", 2)[0]


def test_production_registry_is_required_and_the_sandbox_keeps_its_default(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in ("worker", "beat"):
        source = REF.fullmatch(_registry_source(services[name]))
        assert source, name
        assert (source["name"], source["op"]) == ("ROTATOR_REGISTRY_FILE", ":?"), name
    for name in ("worker-sandbox", "beat-sandbox"):
        source = REF.fullmatch(_registry_source(services[name]))
        assert source, name
        assert source["name"] == "ROTATOR_SANDBOX_REGISTRY_FILE", name
        assert (source["op"], source["arg"]) == (":-", "./examples/registry.toml"), name


def test_private_key_secret_comes_from_a_file_named_by_env(compose: dict[str, Any]) -> None:
    secret = compose["secrets"]["redox_private_key"]
    assert re.fullmatch(r"\$\{REDOX_PRIVATE_KEY_FILE:-[^}]+\}", secret["file"])


def test_every_service_restarts_logs_with_rotation_and_has_a_healthcheck(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        assert service.get("restart") in ("unless-stopped", "always", "on-failure"), name
        logging = service.get("logging") or {}
        assert logging.get("driver") == "json-file", name
        assert logging.get("options", {}).get("max-size"), name
        if name not in ONE_SHOT:
            check = service.get("healthcheck") or {}
            assert check.get("test") and not check.get("disable"), f"{name} has no healthcheck"


def test_env_example_documents_every_variable_and_holds_no_secret(
    compose: dict[str, Any],
) -> None:
    used = {m["name"] for m in _refs(compose)}
    assert {"REDIS_PASSWORD", "REDOX_PRIVATE_KEY_FILE", "ROTATOR_REGISTRY_FILE"} <= used
    example = ENV_EXAMPLE.read_text(encoding="utf-8")
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", example, flags=re.MULTILINE))
    assert used - documented == set()
    values = dict(
        line.split("=", 1)
        for line in example.splitlines()
        if line and not line.startswith("#") and "=" in line
    )
    for key, value in values.items():
        if SECRETISH_KEY.search(key) and not key.endswith(NOT_SECRET_SUFFIXES):
            assert value == "", f".env.example must leave {key} empty"
