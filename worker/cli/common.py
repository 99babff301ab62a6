"""What every command shares: settings loading, error mapping, Redis and Redox handles."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

import click
import redis
import typer
from rich.console import Console

from config.settings import Settings, load_settings
from worker.errors import ConfigError, RotatorError, UsageError

__all__ = [
    "console",
    "err_console",
    "fail",
    "open_redis",
    "run_cli",
    "settings_or_exit",
]

console = Console(soft_wrap=True, highlight=False)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

T = TypeVar("T")

# Typer >= 0.20 vendors its own click (``typer._click``): its usage errors are not click's.
_USAGE_ERRORS: tuple[type[Exception], ...] = (click.exceptions.UsageError,)
_ABORTS: tuple[type[BaseException], ...] = (click.exceptions.Abort, typer.Abort)
try:
    from typer._click import exceptions as _typer_click

    _USAGE_ERRORS += (_typer_click.UsageError,)
except ImportError:  # pragma: no cover - older Typer uses click itself
    pass


def run_cli(app: typer.Typer) -> int:
    """Run the Typer app; expected errors become one line on stderr and an exit code."""
    try:
        result = app(standalone_mode=False)
    except _USAGE_ERRORS as exc:
        # One line, like every other bad input (click would print usage and a box).
        message = " ".join(exc.format_message().split())  # type: ignore[attr-defined]
        if message:  # empty when the help was printed (a group called without a command)
            _error_line(f"{message} (see --help)")
        return 2
    except _ABORTS:
        err_console.print("aborted")
        return 130
    except KeyboardInterrupt:
        return 130
    except ConfigError as exc:
        for problem in exc.problems:
            _error_line(problem)
        return exc.exit_code
    except RotatorError as exc:
        _error_line(str(exc))
        return exc.exit_code
    except redis.ConnectionError as exc:
        _error_line(f"cannot reach Redis: {exc}")
        return 1
    return result if isinstance(result, int) else 0


def _error_line(message: str) -> None:
    sys.stderr.write(f"rotator: error: {message}\n")


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one line on stderr and return the Exit to raise (``raise fail(...)``)."""
    _error_line(message)
    return typer.Exit(code)


def settings_or_exit(*, need_redox: bool = False) -> Settings:
    """Load settings once for this command; bad settings raise ConfigError (exit 2)."""
    settings = load_settings()
    if need_redox:
        settings.require_redox()
    return settings


def open_redis(settings: Settings, *, decode: bool = True) -> redis.Redis:
    """A Redis client for the command, checked with PING (one-line error if unreachable)."""
    client = redis.Redis.from_url(
        settings.redis_dsn,
        decode_responses=decode,
        socket_connect_timeout=5,
        socket_timeout=30,
        health_check_interval=30,
    )
    try:
        client.ping()
    except redis.AuthenticationError:
        raise UsageError("Redis refused the password in ROTATOR_REDIS_URL") from None
    except redis.ConnectionError as exc:
        raise RotatorError(f"cannot reach Redis at ROTATOR_REDIS_URL: {exc}") from None
    return client


def validated(parse: Callable[[str], T], value: str, what: str) -> T:
    """Parse a CLI value, turning ValueError into a UsageError naming the argument."""
    try:
        return parse(value)
    except ValueError as exc:
        raise UsageError(f"{what}: {exc}") from None
