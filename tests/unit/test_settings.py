"""Settings validation: every bad value gives one line naming its environment variable."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from config.settings import Settings, load_settings, mask_url
from sandbox import generate_keypair
from worker.errors import ConfigError

KEY_VAR = "ROTATOR_REDOX__PRIVATE_KEY_PATH"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No ROTATOR_ variable from the caller, and no .env file."""
    for name in list(os.environ):
        if name.startswith("ROTATOR_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ROTATOR_ENV_FILE", str(tmp_path / "absent.env"))


@pytest.fixture
def key_path(tmp_path: Path) -> Path:
    return generate_keypair(tmp_path / "keys").private_key_path


@pytest.fixture
def redox_env(monkeypatch: pytest.MonkeyPatch, key_path: Path) -> None:
    """Complete Redox credentials."""
    monkeypatch.setenv("ROTATOR_REDOX__CLIENT_ID", "client-1")
    monkeypatch.setenv("ROTATOR_REDOX__KEY_ID", "kid-1")
    monkeypatch.setenv(KEY_VAR, str(key_path))


Problems = Callable[..., list[str]]


@pytest.fixture
def problems(monkeypatch: pytest.MonkeyPatch) -> Problems:
    """The ConfigError lines load_settings gives with ``env`` set on top of the clean env."""

    def load(**env: str) -> list[str]:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        try:
            load_settings()
        except ConfigError as exc:
            return exc.problems
        return []

    return load


def redox_problems() -> list[str]:
    settings = load_settings()
    with pytest.raises(ConfigError) as caught:
        settings.require_redox()
    return caught.value.problems


def write_key(path: Path, data: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


def test_defaults_load_and_are_safe() -> None:
    settings = load_settings()
    assert isinstance(settings, Settings)
    assert settings.redox.base_url.startswith("https://")
    assert settings.celery.soft_time_limit < settings.celery.time_limit
    assert settings.key_prefix == "rotator"


def test_complete_redox_settings_pass(redox_env: None) -> None:
    load_settings().require_redox()


def test_env_file_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env_file = tmp_path / "local.env"
    env_file.write_text("ROTATOR_KEY_PREFIX=from-file\nROTATOR_RETRY__MAX_ATTEMPTS=7\n")
    monkeypatch.setenv("ROTATOR_ENV_FILE", str(env_file))
    settings = load_settings()
    assert (settings.key_prefix, settings.retry.max_attempts) == ("from-file", 7)


@pytest.mark.parametrize("variable", ["ROTATOR_REDOX__BASE_URL", "ROTATOR_REDOX__TOKEN_URL"])
def test_plain_http_needs_the_insecure_flag(
    monkeypatch: pytest.MonkeyPatch, variable: str, problems: Problems
) -> None:
    found = problems(**{variable: "http://127.0.0.1:8085/platform"})
    assert len(found) == 1
    assert found[0].startswith(f"{variable}: must use https")
    assert "ROTATOR_ALLOW_INSECURE_HTTP=true" in found[0]
    monkeypatch.setenv("ROTATOR_ALLOW_INSECURE_HTTP", "true")
    assert problems() == []
    monkeypatch.delenv("ROTATOR_ALLOW_INSECURE_HTTP")
    monkeypatch.setenv("ROTATOR_REDOX__ALLOW_INSECURE_HTTP", "true")  # the older name
    assert problems() == []


def test_non_http_url_is_refused(problems: Problems) -> None:
    assert problems(ROTATOR_REDOX__BASE_URL="ftp://redox.example/platform") == [
        "ROTATOR_REDOX__BASE_URL: must be an absolute http(s) URL, got 'ftp://redox.example/platform'"
    ]


def test_private_key_not_set() -> None:
    assert f"{KEY_VAR} is not set" in redox_problems()


def test_empty_client_and_key_ids(monkeypatch: pytest.MonkeyPatch, key_path: Path) -> None:
    monkeypatch.setenv("ROTATOR_REDOX__CLIENT_ID", "  ")
    monkeypatch.setenv(KEY_VAR, str(key_path))
    assert redox_problems() == [
        "ROTATOR_REDOX__CLIENT_ID is empty",
        "ROTATOR_REDOX__KEY_ID is empty",
    ]


def key_problem(monkeypatch: pytest.MonkeyPatch, path: Path) -> str:
    monkeypatch.setenv("ROTATOR_REDOX__CLIENT_ID", "client-1")
    monkeypatch.setenv("ROTATOR_REDOX__KEY_ID", "kid-1")
    monkeypatch.setenv(KEY_VAR, str(path))
    [problem] = redox_problems()
    assert problem.startswith(f"{KEY_VAR}: ")
    assert "\n" not in problem
    return problem


def test_private_key_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert "does not exist" in key_problem(monkeypatch, tmp_path / "nope.pem")


def test_private_key_is_a_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert "is not a regular file" in key_problem(monkeypatch, tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod 000 file anyway")
def test_private_key_unreadable(monkeypatch: pytest.MonkeyPatch, key_path: Path) -> None:
    key_path.chmod(0o000)
    assert "cannot read" in key_problem(monkeypatch, key_path)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_private_key_readable_by_others(
    monkeypatch: pytest.MonkeyPatch, key_path: Path, mode: int
) -> None:
    key_path.chmod(mode)
    assert f"readable by group or others (run: chmod 600 {key_path})" in key_problem(
        monkeypatch, key_path
    )


def test_private_key_not_pem(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = write_key(tmp_path / "k.pem", b"this is not a key\n")
    assert "is not an unencrypted PEM private key" in key_problem(monkeypatch, path)


def test_public_key_instead_of_private(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pair = generate_keypair(tmp_path / "pair")
    path = write_key(tmp_path / "pub.pem", pair.public_key_pem)
    assert "is not an unencrypted PEM private key" in key_problem(monkeypatch, path)


def test_encrypted_private_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    )
    path = write_key(tmp_path / "enc.pem", pem)
    assert "is not an unencrypted PEM private key" in key_problem(monkeypatch, path)


def test_ed25519_key_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path = write_key(tmp_path / "ed.pem", pem)
    assert "is not an RSA or EC private key" in key_problem(monkeypatch, path)


def ec_pem(curve: ec.EllipticCurve) -> bytes:
    return ec.generate_private_key(curve).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def test_ec_key_must_be_p384(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = write_key(tmp_path / "p256.pem", ec_pem(ec.SECP256R1()))
    assert "ES384 needs P-384" in key_problem(monkeypatch, path)
    write_key(path, ec_pem(ec.SECP384R1()))
    load_settings().require_redox()


def test_bad_redis_scheme_hides_the_password(problems: Problems) -> None:
    found = problems(ROTATOR_REDIS_URL="http://:hunter2-password@cache:6379/0")
    assert found == [
        "ROTATOR_REDIS_URL: must start with redis://, rediss://, unix:// or sentinel://"
    ]


@pytest.mark.parametrize(
    "env",
    [
        {"ROTATOR_CELERY__SOFT_TIME_LIMIT": "300"},
        {"ROTATOR_CELERY__TIME_LIMIT": "4000"},
        {"ROTATOR_CELERY__VISIBILITY_TIMEOUT": "200"},
    ],
)
def test_time_limits_out_of_order(env: dict[str, str], problems: Problems) -> None:
    [problem] = problems(**env)
    assert problem.startswith("ROTATOR_CELERY__SOFT_TIME_LIMIT < ROTATOR_CELERY__TIME_LIMIT")
    assert "ROTATOR_CELERY__VISIBILITY_TIMEOUT" in problem


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ROTATOR_RETRY__MAX_ATTEMPTS", "0"),
        ("ROTATOR_RETRY__BACKOFF_INITIAL", "fast"),
        ("ROTATOR_LOCK__TTL_SECONDS", "1"),
        ("ROTATOR_KEY_PREFIX", "has space"),
        ("ROTATOR_CELERY__POOL", "gevent"),
    ],
)
def test_bad_values_name_their_variable(variable: str, value: str, problems: Problems) -> None:
    [problem] = problems(**{variable: value})
    assert problem.startswith(f"{variable}: ")


def test_unparsable_json_value_is_one_line(problems: Problems) -> None:
    assert problems(ROTATOR_SECRET_SOURCE__COMMAND="not-json") == [
        "ROTATOR_SECRET_SOURCE: cannot parse the value (lists and objects must be written as JSON)"
    ]


def test_every_problem_is_reported(problems: Problems) -> None:
    found = problems(
        ROTATOR_REDIS_URL="mysql://db",
        ROTATOR_REDOX__BASE_URL="http://sandbox/platform",
        ROTATOR_RETRY__MAX_ATTEMPTS="0",
    )
    assert sorted(line.split(":")[0] for line in found) == [
        "ROTATOR_REDIS_URL",
        "ROTATOR_REDOX__BASE_URL",
        "ROTATOR_RETRY__MAX_ATTEMPTS",
    ]


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://:pw@cache:6379/0", "redis://:***@cache:6379/0"),
        ("rediss://user:p%40ss@cache/1", "rediss://user:***@cache/1"),
        ("redis://cache/0?password=pw&db=1", "redis://cache/0?password=***&db=1"),
        ("unix:///run/redis.sock?password=pw", "unix:///run/redis.sock?password=***"),
        ("redis://cache:6379/0", "redis://cache:6379/0"),
        ("redis://:pw@cache:notaport/0", "redis://:***@cache:notaport/0"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked
