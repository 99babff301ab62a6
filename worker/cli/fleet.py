"""``rotator rotate --all``: the fleet rotation's command side (confirmation, progress bar,
summary); what it rotates and how is :mod:`worker.fleet`. Exit 0 when every rotation
succeeded, else 1."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from config.settings import Settings
from worker.celery_app import create_app
from worker.cli.common import console, err_console, open_runtime
from worker.errors import UsageError
from worker.events import TERMINAL_OUTCOMES
from worker.fleet import FleetRun, plan_fleet, run_fleet

__all__ = ["rotate_fleet"]


def rotate_fleet(
    settings: Settings,
    environment: str | None,
    concurrency: int,
    yes: bool,
    reason: str,
    timeout: float,
    json_output: bool,
    retire_now: bool,
) -> int:
    """Rotate every known (unpaused) destination; return the exit code (0 all succeeded)."""
    runtime = open_runtime(settings)
    plan = plan_fleet(runtime, environment)
    _confirm(plan.targets, plan.skipped, environment, yes)
    with _progress(len(plan.targets)) as advance:
        run = run_fleet(
            runtime, create_app(settings), plan, concurrency=concurrency, timeout=timeout,
            reason=reason or "fleet rotation", advance=advance, retire_now=retire_now,
        )  # fmt: skip
    summary = run.summary()
    failed = len(run.results) - summary["succeeded"]
    if json_output:
        document: dict[str, Any] = {
            "total": len(plan.targets),
            "summary": summary,
            "results": sorted(run.results, key=lambda r: r["destinationId"]),
            "skipped": [{"destinationId": d, "reason": "paused"} for d in plan.skipped],
        }
        typer.echo(json.dumps(document))
    else:
        _print_summary(run, summary, plan.skipped)
    return 1 if failed else 0


def _confirm(targets: list[str], skipped: list[str], environment: str | None, yes: bool) -> None:
    if yes:
        return
    where = f" in environment {environment}" if environment else ""
    if not sys.stdin.isatty():
        raise UsageError(
            f"refusing to rotate {len(targets)} destinations{where} without --yes "
            "(not an interactive terminal)"
        )
    extra = f" ({len(skipped)} paused ones skipped)" if skipped else ""
    if not typer.confirm(f"Rotate {len(targets)} destinations{where} now{extra}?"):
        raise typer.Exit(1)


@contextlib.contextmanager
def _progress(total: int) -> Iterator[Callable[[], None]]:
    """A Rich progress bar on stderr; yields a function that advances it by one."""
    bar = Progress(
        TextColumn("rotating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err_console, transient=False,
    )  # fmt: skip
    task = bar.add_task("fleet", total=total)
    with bar:
        yield lambda: bar.advance(task)


def _print_summary(run: FleetRun, summary: dict[str, int], skipped: list[str]) -> None:
    table = Table(title="Fleet rotation")
    table.add_column("outcome")
    table.add_column("destinations", justify="right")
    for outcome, count in summary.items():
        if count or outcome in TERMINAL_OUTCOMES:
            table.add_row(outcome, str(count))
    if skipped:
        table.add_row("skipped (paused)", str(len(skipped)))
    console.print(table)
    for result in sorted(run.results, key=lambda r: r["destinationId"]):
        if result["outcome"] != "succeeded":
            error = result.get("error") or {}
            err_console.print(
                f"[red]{result['outcome']}[/red] {result['destinationId']} "
                f"rotation={result['rotationId']} {error.get('class', '')}: "
                f"{error.get('message', '')}"
            )
