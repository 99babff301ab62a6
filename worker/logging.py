"""Structured logs (structlog): JSON in production, readable in a terminal, never a secret.

Every line of a rotation carries ``rotation_id`` and ``destination_id`` (bound with
:func:`bind_rotation`). The :func:`redact_secrets` processor is the last line of defence:
it masks values under secret-sounding keys and anything shaped like a bearer token, a JWT,
a PEM block or a ``password=`` pair, wherever it appears in the event.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog
from structlog.types import EventDict, WrappedLogger

__all__ = ["bind_rotation", "configure_logging", "get_logger", "redact_secrets", "redact_text"]

REDACTED = "[redacted]"

#: Keys whose values are always secret, whatever they look like.
_SECRET_KEY = re.compile(
    r"(secret|password|passwd|token|assertion|authorization|private_?key|api_?key|credential_?value)",
    re.IGNORECASE,
)
#: Keys that look secret by name but only ever hold ids or counts.
_SAFE_KEYS = frozenset(
    {
        "credential_id", "old_credential_id", "new_credential_id", "token_url",
        "tokens_issued", "secret_source", "secret_kind", "has_client_secret",
        "private_key_path",
    }
)  # fmt: skip
_SECRET_SHAPES = [
    re.compile(r"(?i)bearer\s+[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"eyJ[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]*"),  # JWT
    re.compile(r"-----BEGIN [A-Z ]+-----[\s\S]*?-----END [A-Z ]+-----"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*"),  # a truncated key block
    re.compile(
        r"(?i)((?:client[_-]?secret|password|passwd|secret[_-]?key|session[_-]?token"
        r"|access[_-]?token|refresh[_-]?token|id[_-]?token|verification[_-]?token"
        r"|client[_-]?assertion|api[_-]?key|token|secret)[\"']?\s*[:=]\s*[\"']?)[^\s\"'&,}]+"
    ),
    re.compile(r"(?i)(redis(?:s)?://[^:@/\s]*:)[^@\s]+(@)"),
    re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^:@/\s]*:)[^@\s/]+(@)"),  # user:password@ in URLs
]


def redact_text(text: str) -> str:
    """``text`` with every secret-shaped substring replaced."""
    for pattern in _SECRET_SHAPES:
        if pattern.groups >= 1:
            text = pattern.sub(
                lambda m: m.group(1) + REDACTED + (m.group(2) if m.re.groups >= 2 else ""), text
            )
        else:
            text = pattern.sub(REDACTED, text)
    return text


def _redact_value(key: str, value: Any) -> Any:
    if key not in _SAFE_KEYS and _SECRET_KEY.search(key):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: _redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(key, v) for v in value]
    if isinstance(value, BaseException):
        return redact_text(f"{type(value).__name__}: {value}")
    return value


def redact_secrets(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask secret keys and secret-shaped values in the event."""
    return {key: _redact_value(key, value) for key, value in event_dict.items()}


def configure_logging(fmt: str = "auto", level: str = "INFO") -> None:
    """Set up structlog and the stdlib root logger once per process.

    ``fmt`` is ``json``, ``console`` or ``auto`` (console on a terminal, JSON otherwise).
    """
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact_secrets,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structlog logger for a module."""
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger


@contextmanager
def bind_rotation(rotation_id: str, destination_id: str) -> Iterator[None]:
    """Bind rotation_id and destination_id to every log line inside the block."""
    tokens = structlog.contextvars.bind_contextvars(
        rotation_id=rotation_id, destination_id=destination_id
    )
    try:
        yield
    finally:
        structlog.contextvars.reset_contextvars(**tokens)
