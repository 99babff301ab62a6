"""``rotator registry check FILE`` and ``rotator registry sync [FILE]``.

``check`` validates a registry file and shows the resolved policies; ``sync`` loads it
into the Redis schedule. Errors are raised (ConfigError, UsageError, StoreUnavailable) and
mapped by :func:`worker.cli.common.run_cli` to one line per problem on stderr and exit 2/1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import redis
import typer
from rich.console import Console
from rich.table import Table

from config.durations import format_duration, format_window
from config.registry import Registry, load_registry
from config.settings import Settings
from worker.cli.common import open_runtime, settings_or_exit, warn
from worker.errors import StoreUnavailable, UsageError
from worker.scheduling.beat import sync_registry

__all__ = ["policy_table", "register"]

registry_app = typer.Typer(
    name="registry",
    help="Check the destination registry file and load it into the schedule.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add the ``registry`` command group to the main app."""
    app.add_typer(registry_app, name="registry")


@registry_app.command("check")
def check(
    file: Annotated[Path, typer.Argument(help="Registry TOML file to validate.")],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No table, summary only.")] = False,
) -> None:
    """Validate FILE and show each destination's resolved policy."""
    registry = load_registry(file)
    settings = settings_or_exit()
    if not quiet:
        Console().print(policy_table(registry, settings))
    typer.echo(_summary(registry, settings))


@registry_app.command("sync")
def sync(
    file: Annotated[
        Path | None,
        typer.Argument(help="Registry TOML file (default: ROTATOR_REGISTRY_PATH)."),
    ] = None,
) -> None:
    """Load the registry into the Redis schedule (adds, updates, removes, pauses)."""
    settings = settings_or_exit()
    path = file or settings.registry_path
    if path is None:
        raise UsageError("no registry file: pass FILE or set ROTATOR_REGISTRY_PATH")
    registry = load_registry(path)
    runtime = open_runtime(settings.model_copy(update={"registry_path": path}))
    try:
        report = sync_registry(runtime)
    except redis.RedisError as exc:
        raise StoreUnavailable(f"cannot sync the schedule to Redis: {exc}") from None
    finally:
        runtime.close()
    typer.echo(_summary(registry, settings))
    typer.echo(f"synced: {report}")


def _summary(registry: Registry, settings: Settings) -> str:
    """The summary line; destinations without a secret source are warned about on stderr."""
    policies = registry.policies()
    paused = sum(1 for p in policies if p.paused and p.enabled)
    disabled = sum(1 for p in policies if not p.enabled)
    extra = f", {disabled} disabled" if disabled else ""
    sourceless = [
        p.destination_id
        for p in policies
        if p.enabled and source_kind(registry, settings, p.destination_id) is None
    ]
    if sourceless:
        shown = ", ".join(sourceless[:5]) + (" ..." if len(sourceless) > 5 else "")
        warn(
            f"{len(sourceless)} destination(s) have no secret source and will not rotate "
            f"(set ROTATOR_SECRET_SOURCE__KIND or secret_source in the registry): {shown}"
        )
    return f"OK: {len(policies)} destinations ({paused} paused{extra})"


def source_kind(registry: Registry, settings: Settings, destination_id: str) -> str | None:
    """The secret source kind a destination rotates with (registry, else Settings)."""
    named = registry.secret_source(destination_id)
    if named is not None:
        return named.kind
    return settings.secret_source.kind


def policy_table(registry: Registry, settings: Settings) -> Table:
    """A Rich table of resolved policies (no secrets: the registry holds none)."""
    policies = registry.policies()
    table = Table(title="Resolved destination policies")
    table.add_column("destination", no_wrap=True, min_width=36)
    table.add_column("environment", overflow="fold")
    for column in ("name", "schedule", "window (UTC)", "grace", "retire"):
        table.add_column(column)
    for column in ("secret source", "state"):
        table.add_column(column)
    for p in policies:
        schedule = (
            f"every {format_duration(p.interval_seconds)}"
            if p.interval_seconds is not None
            else f"cron {p.cron}"
        )
        state = "disabled" if not p.enabled else "paused" if p.paused else "active"
        table.add_row(
            p.destination_id,
            p.environment_id,
            p.name or "",
            schedule,
            format_window(p.window) if p.window else "any time",
            format_duration(p.grace_seconds),
            p.retire,
            source_kind(registry, settings, p.destination_id) or "[red]none[/red]",
            state,
        )
    return table
