"""Entry point of the `rotator` command: builds the Typer app from the command modules.

Each command module exposes ``register(app)`` and owns its commands; this module only
wires them together and maps expected errors to a one-line reason and exit code.
"""

from __future__ import annotations

import importlib
import sys

import typer

app = typer.Typer(
    name="rotator",
    help="Rotate the auth credentials Redox uses to reach your destinations.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: Command modules, each with a ``register(app)`` function. Order is the help order.
COMMAND_MODULES = (
    "worker.cli.config_cmd",
    "worker.cli.rotate_cmd",
    "worker.cli.events_cmd",
    "worker.cli.service_cmd",
    "worker.cli.registry_cmd",
    "worker.cli.status_cmd",
    "worker.cli.sandbox_cmd",
    "worker.cli.demo_cmd",
    "worker.cli.metrics_cmd",
)


def _register_all() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # not written yet: skip, anything else is a real error
                continue
            raise
        module.register(app)


_register_all()


def main() -> None:
    """Run the CLI; expected errors exit with their code and one line, never a traceback."""
    from worker.cli.common import run_cli

    sys.exit(run_cli(app))
