"""What every command shares: settings loading, error mapping, Redis and Redox handles."""

from __future__ import annotations

import contextlib
import sys

import click
import redis
import typer
from rich.console import Console

from config.settings import Settings, load_settings
from worker.errors import ConfigError, RotatorError
from worker.logging import configure_logging
from worker.runtime import Runtime
from worker.store.connection import open_redis_checked

__all__ = [
    "console",
    "err_console",
    "open_runtime",
    "run_cli",
    "settings_or_exit",
    "warn",
]

console = Console(soft_wrap=True, highlight=False)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

# Typer >= 0.20 vendors its own click (``typer._click``): its usage errors are not click's.
_USAGE_ERRORS: tuple[type[Exception], ...] = (click.exceptions.UsageError,)
_ABORTS: tuple[type[BaseException], ...] = (click.exceptions.Abort, typer.Abort)
try:
    from typer._click import exceptions as _typer_click

    _USAGE_ERRORS += (_typer_click.UsageError,)
except ImportError:  # pragma: no cover - older Typer uses click itself
    pass


def run_cli(app: typer.Typer) -> int:
    """Run the Typer app; expected errors become one line on stderr and an exit code.

    Log lines go to stderr, warnings and worse only (stdout is the command's output, which
    scripts parse); ``worker``, ``beat`` and ``metrics`` set up their own logging."""
    configure_logging("auto", "WARNING")
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
    finally:
        _close_runtimes()
    return result if isinstance(result, int) else 0


#: Runtimes the running command opened; closed when it ends (pending metrics written).
_opened: list[Runtime] = []


def _close_runtimes() -> None:
    while _opened:
        with contextlib.suppress(Exception):  # closing must not mask the command's result
            _opened.pop().close()


def _error_line(message: str) -> None:
    sys.stderr.write(f"rotator: error: {message}\n")


def warn(message: str) -> None:
    """One warning line on stderr (the command goes on)."""
    sys.stderr.write(f"rotator: warning: {message}\n")


def settings_or_exit(*, need_redox: bool = False) -> Settings:
    """Load settings once for this command; bad settings raise ConfigError (exit 2)."""
    settings = load_settings()
    if need_redox:
        settings.require_redox()
    return settings


def open_runtime(settings: Settings) -> Runtime:
    """The command's Runtime on a Redis checked with PING (one-line error if unreachable);
    closed when the command ends, so the Redox calls it made are counted in the metrics."""
    runtime = Runtime.build(settings, open_redis_checked(settings))
    _opened.append(runtime)
    return runtime
