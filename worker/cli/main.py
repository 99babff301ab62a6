"""Entry point of the `rotator` command: builds the Typer app from the command modules.

Each command module exposes ``register(app)`` and owns its commands; this module only
wires them together and maps expected errors to a one-line reason and exit code.
"""

from __future__ import annotations

import sys

import typer

from worker.cli import (
    config_cmd,
    events_cmd,
    metrics_cmd,
    registry_cmd,
    rotate_cmd,
    service_cmd,
    status_cmd,
    tooling_cmd,
)
from worker.cli.common import run_cli

app = typer.Typer(
    name="rotator",
    help="Rotate the auth credentials Redox uses to reach your destinations.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: Command modules, each with a ``register(app)`` function. Order is the help order.
COMMAND_MODULES = (
    config_cmd,
    rotate_cmd,
    events_cmd,
    service_cmd,
    registry_cmd,
    status_cmd,
    tooling_cmd,
    metrics_cmd,
)
for _module in COMMAND_MODULES:
    _module.register(app)


def main() -> None:
    """Run the CLI; expected errors exit with their code and one line, never a traceback."""
    sys.exit(run_cli(app))
