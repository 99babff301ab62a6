"""Redis Sentinel settings: the ``sentinel://`` URL list, its validation and masking, the
Celery configuration and the service's Redis client built from it (no Sentinel process:
nothing here connects)."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from celery import Celery
from celery.backends.redis import SentinelBackend
from kombu.connection import Connection
from kombu.transport.redis import SentinelTransport
from pydantic import SecretStr
from redis.sentinel import SentinelConnectionPool

from config.celery import celery_config, guard_channel_teardown
from config.settings import Settings, load_settings, mask_url
from worker.cli.config_cmd import effective_settings
from worker.errors import ConfigError
from worker.store.connection import open_redis

PRIMARY_PW = "primary-pw-4f9a"
SENTINEL_PW = "sentinel-pw-77c1"
URL = (
    f"sentinel://:{PRIMARY_PW}@10.0.0.1:26379/2;"
    f"sentinel://:{PRIMARY_PW}@10.0.0.2:26380/2;"
    f"sentinel://:{PRIMARY_PW}@sentinel-3:26381/2"
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No ROTATOR_ variable from the caller, and no .env file."""
    for name in list(os.environ):
        if name.startswith("ROTATOR_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ROTATOR_ENV_FILE", str(tmp_path / "absent.env"))


def load(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings()


def problems(monkeypatch: pytest.MonkeyPatch, **env: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(monkeypatch, **env)
    return caught.value.problems


@pytest.fixture
def sentinel_settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    return load(
        monkeypatch,
        ROTATOR_REDIS_URL=URL,
        ROTATOR_REDIS_SENTINEL__MASTER_NAME="rotator-main",
        ROTATOR_REDIS_SENTINEL__PASSWORD=SENTINEL_PW,
    )


# -- settings ---------------------------------------------------------------------------


def test_sentinel_url_list_is_parsed(sentinel_settings: Settings) -> None:
    target = sentinel_settings.sentinel_target
    assert target is not None
    assert target.sentinels == (("10.0.0.1", 26379), ("10.0.0.2", 26380), ("sentinel-3", 26381))
    assert (target.master_name, target.db) == ("rotator-main", 2)
    assert (target.username, target.password) == (None, PRIMARY_PW)
    assert target.sentinel_password == SENTINEL_PW
    assert sentinel_settings.redis_dsn == URL  # kombu and Celery take the list as it is


def test_one_sentinel_without_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load(
        monkeypatch,
        ROTATOR_REDIS_URL="sentinel://127.0.0.1:26379",
        ROTATOR_REDIS_SENTINEL__MASTER_NAME="m",
    )
    target = settings.sentinel_target
    assert target is not None
    assert target.sentinels == (("127.0.0.1", 26379),)
    assert (target.db, target.password, target.sentinel_password) == (0, None, None)


def test_user_and_percent_encoded_password(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load(
        monkeypatch,
        ROTATOR_REDIS_URL="sentinel://app:p%3Bw%40rd@h1:1;sentinel://app:p%3Bw%40rd@h2:2",
        ROTATOR_REDIS_SENTINEL__MASTER_NAME="m",
    )
    target = settings.sentinel_target
    assert target is not None
    assert (target.username, target.password) == ("app", "p;w@rd")


def test_plain_redis_url_has_no_sentinel_target() -> None:
    settings = Settings(_env_file=None, redis_url=SecretStr("redis://:pw@cache:6379/0"))
    assert settings.sentinel_target is None


def test_sentinel_url_without_master_name_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    [problem] = problems(monkeypatch, ROTATOR_REDIS_URL=URL)
    assert problem.startswith(
        "ROTATOR_REDIS_SENTINEL__MASTER_NAME: must be set when ROTATOR_REDIS_URL is a sentinel://"
    )
    assert "\n" not in problem
    assert PRIMARY_PW not in problem


@pytest.mark.parametrize(
    ("url", "says"),
    [
        (f"sentinel://:{PRIMARY_PW}@h1:26379;redis://:{PRIMARY_PW}@h2:6379", "sentinel:// URL"),
        (f"sentinel://:{PRIMARY_PW}@h1:26379;sentinel://:other@h2:26379", "same user:password"),
        (f"sentinel://:{PRIMARY_PW}@h1:26379/1;sentinel://:{PRIMARY_PW}@h2:26379/2", "/db"),
        (f"sentinel://:{PRIMARY_PW}@h1:port", "not a number"),
        (f"sentinel://:{PRIMARY_PW}@h1:26379/zero", "must be a number"),
        (f"sentinel://:{PRIMARY_PW}@:26379", "no host"),
        (f"sentinel://:{PRIMARY_PW}@h1:26379;sentinel://:{PRIMARY_PW}@h2", "needs its port"),
        (f"sentinel://:{PRIMARY_PW}@h1:26379?master_name=m", "no ?options"),
        (f"sentinel://:{PRIMARY_PW}@h1:26379;", "sentinel:// URL"),
        (f"sentinel://:{PRIMARY_PW[:4]};{PRIMARY_PW[4:]}@h1:26379", "%3B"),
    ],
)
def test_bad_sentinel_urls_name_the_variable_and_hide_the_password(
    monkeypatch: pytest.MonkeyPatch, url: str, says: str
) -> None:
    [problem] = problems(
        monkeypatch, ROTATOR_REDIS_URL=url, ROTATOR_REDIS_SENTINEL__MASTER_NAME="m"
    )
    assert problem.startswith("ROTATOR_REDIS_URL: ")
    assert says in problem
    assert PRIMARY_PW not in problem and PRIMARY_PW[4:] not in problem


def test_unknown_scheme_lists_sentinel(monkeypatch: pytest.MonkeyPatch) -> None:
    [problem] = problems(monkeypatch, ROTATOR_REDIS_URL="http://:hunter2@cache:6379/0")
    assert (
        problem == "ROTATOR_REDIS_URL: must start with redis://, rediss://, unix:// or sentinel://"
    )


def test_master_name_may_not_hold_spaces(monkeypatch: pytest.MonkeyPatch) -> None:
    [problem] = problems(
        monkeypatch, ROTATOR_REDIS_URL=URL, ROTATOR_REDIS_SENTINEL__MASTER_NAME="my master"
    )
    assert problem.startswith("ROTATOR_REDIS_SENTINEL__MASTER_NAME: ")


# -- masking ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        (
            "sentinel://:pw1@h1:26379/0;sentinel://:pw1@h2:26380/0",
            "sentinel://:***@h1:26379/0;sentinel://:***@h2:26380/0",
        ),
        (
            "sentinel://u:pw1@h1:1;sentinel://h2:26380;sentinel://u:pw1@h3:3",
            "sentinel://u:***@h1:1;sentinel://h2:26380;sentinel://u:***@h3:3",
        ),
        ("sentinel://:p;w@h1:26379", "sentinel://:***@h1:26379"),  # a raw ; in one password
        ("sentinel://h1:26379;sentinel://h2:26379", "sentinel://h1:26379;sentinel://h2:26379"),
    ],
)
def test_mask_url_masks_every_password_of_a_list(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_config_check_shows_no_sentinel_secret(sentinel_settings: Settings) -> None:
    rows = effective_settings(sentinel_settings)
    shown = "\n".join(f"{k}={v}" for k, v in rows.items())
    assert PRIMARY_PW not in shown and SENTINEL_PW not in shown
    assert rows["ROTATOR_REDIS_URL"].count(":***@") == 3
    assert rows["ROTATOR_REDIS_SENTINEL__PASSWORD"] == "***"
    assert rows["ROTATOR_REDIS_SENTINEL__MASTER_NAME"] == "rotator-main"


# -- Celery -----------------------------------------------------------------------------


def test_celery_config_for_sentinel(sentinel_settings: Settings) -> None:
    conf = celery_config(sentinel_settings)
    plain_url = SecretStr("redis://127.0.0.1:6379/0")
    plain = celery_config(Settings(_env_file=None, redis_url=plain_url))
    assert conf["broker_url"] == conf["result_backend"] == URL
    sentinel_kwargs = {
        "socket_connect_timeout": 5,
        "socket_timeout": 5,
        "socket_keepalive": True,
        "password": SENTINEL_PW,
    }
    assert conf["broker_transport_options"] == {
        **plain["broker_transport_options"],  # visibility timeout and restore sweep as today
        "master_name": "rotator-main",
        "sentinel_kwargs": sentinel_kwargs,
    }
    assert conf["result_backend_transport_options"] == {
        **plain["result_backend_transport_options"],
        "master_name": "rotator-main",
        "sentinel_kwargs": sentinel_kwargs,
    }
    changed = {k for k in conf if conf[k] != plain.get(k)}
    assert changed == {
        "broker_url",
        "result_backend",
        "broker_transport_options",
        "result_backend_transport_options",
    }
    assert "broker_use_ssl" not in conf


def test_celery_config_without_sentinel_password(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load(
        monkeypatch,
        ROTATOR_REDIS_URL="sentinel://h1:26379;sentinel://h2:26379",
        ROTATOR_REDIS_SENTINEL__MASTER_NAME="m",
    )
    options = celery_config(settings)["broker_transport_options"]
    assert options["master_name"] == "m"
    assert "password" not in options["sentinel_kwargs"]


def test_kombu_and_celery_pick_their_sentinel_classes(sentinel_settings: Settings) -> None:
    conf = celery_config(sentinel_settings)
    open_connection: Any = Connection  # kombu is untyped
    connection = open_connection(
        conf["broker_url"], transport_options=conf["broker_transport_options"]
    )
    try:
        assert connection.transport_cls == "sentinel"
        assert isinstance(connection.transport, SentinelTransport)
        assert len(connection.alt) == 3
        assert connection.password == PRIMARY_PW
    finally:
        connection.release()
    app = Celery("sentinel-test", set_as_current=False)
    app.conf.update(conf)
    try:
        backend = app.backend
        assert isinstance(backend, SentinelBackend)
        hosts = [(h["host"], h["port"]) for h in backend.connparams["hosts"]]
        assert hosts == [("10.0.0.1", 26379), ("10.0.0.2", 26380), ("sentinel-3", 26381)]
        assert (backend.connparams["password"], backend.connparams["db"]) == (PRIMARY_PW, 2)
        assert PRIMARY_PW not in backend.as_uri()
    finally:
        app.close()


def test_channel_teardown_guard_turns_a_detached_transport_into_a_connection_error() -> None:
    from kombu.transport.redis import Channel

    channel_class: Any = Channel  # kombu is untyped
    guard_channel_teardown()
    guard_channel_teardown()  # once per process, however often the config is built
    detached = SimpleNamespace(connection=SimpleNamespace(client=None))
    with pytest.raises(redis.ConnectionError):
        channel_class._connparams(detached)


# -- the service's client ---------------------------------------------------------------


def test_open_redis_asks_the_sentinels_for_the_primary(sentinel_settings: Settings) -> None:
    client = open_redis(sentinel_settings)
    try:
        pool = client.connection_pool
        assert isinstance(pool, SentinelConnectionPool)
        assert (pool.service_name, pool.is_master) == ("rotator-main", True)
        kwargs = pool.connection_kwargs
        assert kwargs["password"] == PRIMARY_PW
        assert kwargs["db"] == 2
        assert kwargs["decode_responses"] is True
        assert (kwargs["socket_connect_timeout"], kwargs["socket_timeout"]) == (5, 30)
        assert (kwargs["socket_keepalive"], kwargs["health_check_interval"]) == (True, 30)
        sentinels = pool.sentinel_manager.sentinels
        assert [s.connection_pool.connection_kwargs["port"] for s in sentinels] == [
            26379,
            26380,
            26381,
        ]
        assert all(
            s.connection_pool.connection_kwargs["password"] == SENTINEL_PW for s in sentinels
        )
    finally:
        client.close()


def test_open_redis_for_a_plain_url_is_unchanged() -> None:
    settings = Settings(_env_file=None, redis_url=SecretStr("redis://:pw@cache:6379/3"))
    client = open_redis(settings)
    try:
        pool = client.connection_pool
        assert not isinstance(pool, SentinelConnectionPool)
        assert (pool.connection_kwargs["host"], pool.connection_kwargs["db"]) == ("cache", 3)
        assert pool.connection_kwargs["decode_responses"] is True
    finally:
        client.close()
