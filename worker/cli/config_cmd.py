"""``rotator config check``: show the effective settings (secrets masked) and their problems."""

from __future__ import annotations

import json
from typing import Any

import typer
from pydantic import SecretStr
from rich.table import Table

from config.settings import Settings, load_settings, mask_url, redox_problems
from worker.cli.common import console, err_console, warn
from worker.errors import ConfigError
from worker.rotation.secret_steps import RUN_SHARE

__all__ = ["effective_settings", "register"]


def effective_settings(settings: Settings) -> dict[str, Any]:
    """Settings as env-name -> display value, with every secret masked."""
    rows: dict[str, Any] = {}

    def walk(prefix: str, data: dict[str, Any]) -> None:
        for name, value in data.items():
            env_name = f"{prefix}{name.upper()}"
            if isinstance(value, dict):
                walk(env_name + "__", value)
            elif isinstance(value, SecretStr):
                secret = value.get_secret_value()
                rows[env_name] = (
                    mask_url(secret) if name.endswith("url") else ("***" if secret else "")
                )
            elif isinstance(value, int | float | bool):
                rows[env_name] = value
            elif value is None:
                rows[env_name] = ""
            else:  # a plain URL may still carry user:password@ (e.g. a secret source)
                rows[env_name] = mask_url(str(value)) if name.endswith("url") else str(value)

    walk("ROTATOR_", settings.model_dump())
    return rows


def check(json_output: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Print the effective settings with secrets masked; exit 2 listing each problem."""
    settings = load_settings()  # raises ConfigError (exit 2) on invalid values
    problems = redox_problems(settings.redox)
    rows = effective_settings(settings)
    if json_output:
        console.print_json(json.dumps({"settings": rows, "problems": problems}))
    elif not console.is_terminal:  # a pipe or a file: one NAME=value line each, never folded
        for name, value in rows.items():
            typer.echo(f"{name}={value}")
    else:
        table = Table(title="Effective settings")
        table.add_column("setting", no_wrap=True, min_width=42)  # never cut a name short
        table.add_column("value", overflow="fold")
        for name, value in rows.items():
            table.add_row(name, str(value))
        console.print(table)
    if problems:
        if not json_output:
            err_console.print(f"{len(problems)} problem(s):")
        raise ConfigError(problems)
    if settings.secret_source.kind is None:
        warn(
            "ROTATOR_SECRET_SOURCE__KIND is not set: only destinations whose registry entry "
            "names a secret_source will rotate (the others are refused, needs_attention)"
        )
    fits = settings.celery.soft_time_limit * RUN_SHARE
    if settings.verify.rehearsal_seconds > fits:
        warn(
            f"ROTATOR_VERIFY__REHEARSAL_SECONDS={settings.verify.rehearsal_seconds:g} is more than "
            f"a run allows (3/4 of ROTATOR_CELERY__SOFT_TIME_LIMIT, {fits:g} s): each rehearsal "
            "is cut to fit; raise the soft time limit to give the IdP longer"
        )
    if not json_output:
        console.print("[green]OK[/green]: settings are complete")


def register(app: typer.Typer) -> None:
    """Add the ``config`` command group."""
    group = typer.Typer(help="Inspect and check settings.", no_args_is_help=True)
    group.command("check")(check)
    app.add_typer(group, name="config")
