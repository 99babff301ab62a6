"""``rotator demo``: run the whole product on this machine and watch rotations happen.

No configuration needed: a private redis-server, the Redox sandbox with seeded destinations
and a generated key pair, a worker, beat on a fast schedule, and Flower when installed, all
in one temporary directory. Ctrl-C (or SIGTERM, or ``--duration``) stops every process it
started and removes the directory; the exit code is then 0. So does SIGHUP (the terminal
went away), and if the demo itself is killed outright its children get SIGTERM from the
kernel (:mod:`devstack.lifeline`).
"""

from __future__ import annotations

import contextlib
import signal
import time
from types import FrameType
from typing import TYPE_CHECKING

import redis
import typer

from worker.cli.common import console, err_console

if TYPE_CHECKING:
    from devstack.demo.runner import Demo

__all__ = ["demo", "main"]


class _Stop(BaseException):
    """Raised in the main thread by SIGINT/SIGTERM: unwind and clean up."""


def _raise_stop(signum: int, _frame: FrameType | None) -> None:
    raise _Stop(signum)


def demo(
    destinations: int = typer.Option(5, "--destinations", "-n", help="Sandbox destinations."),
    fail_rate: float = typer.Option(
        0.0, "--fail-rate", help="Share of sandbox 5xx answers (retried), 0..0.9."
    ),
    latency_ms: float = typer.Option(0.0, "--latency-ms", help="Added sandbox latency."),
    redis_port: int = typer.Option(0, "--redis-port", help="Redis port (0: a free one)."),
    sandbox_port: int = typer.Option(0, "--sandbox-port", help="Sandbox port (0: a free one)."),
    flower_port: int = typer.Option(5555, "--flower-port", help="Flower port."),
    no_flower: bool = typer.Option(False, "--no-flower", help="Do not start Flower."),
    duration: float = typer.Option(
        0.0,
        "--duration",
        min=0,
        help="Stop after this many seconds (0: until Ctrl-C).",
    ),
    plain: bool = typer.Option(
        False, "--plain", help="Print events as lines instead of the live view (default off a TTY)."
    ),
    idp: str = typer.Option("okta", "--idp", help="The destinations' IdP: okta or entra."),
    break_things: bool = typer.Option(
        False,
        "--break",
        help="Also show a rehearsal the IdP refuses and a switch the watch reverts.",
    ),
    no_tokens: bool = typer.Option(
        False,
        "--no-tokens",
        help="Receivers do not check verification tokens (no local Secrets Manager, and the "
        "first round rotates no token).",
    ),
) -> None:
    """Run Redis, the sandbox, a worker, beat and Flower locally; show rotations live."""
    from devstack.demo.runner import Demo, DemoOptions
    from devstack.demo.view import EventTail, run_live, run_plain
    from worker.events import EventStream

    options = DemoOptions(
        destinations=destinations,
        fail_rate=fail_rate,
        latency_ms=latency_ms,
        redis_port=redis_port,
        sandbox_port=sandbox_port,
        flower_port=flower_port,
        flower=not no_flower,
        idp=idp,
        break_things=break_things,
        tokens=not no_tokens,
    )
    options.check()
    # SIGHUP too: a closed terminal or dropped SSH session stops every child as Ctrl-C does.
    stops = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {s: signal.signal(s, _raise_stop) for s in stops}
    runner = Demo(options, say=lambda line: err_console.print(f"[dim]demo:[/dim] {line}"))
    tail: EventTail | None = None
    summary = ""
    try:
        runner.start()
        header = _header(runner)
        console.print(header)
        tail = EventTail(EventStream(runner.redis, runner.keys))
        if break_things:
            runner.break_things()
        runner.first_round()
        deadline = time.monotonic() + duration if duration else None

        def until() -> bool:
            return deadline is not None and time.monotonic() >= deadline

        if plain or not console.is_terminal:
            run_plain(tail, console, until)
        else:
            run_live(runner, tail, console, header, until)
    except _Stop:
        pass
    finally:
        for sig in previous:  # a second Ctrl-C must not interrupt the cleanup
            signal.signal(sig, signal.SIG_IGN)
        if tail is not None:
            with contextlib.suppress(redis.RedisError):
                tail.poll()
                summary = tail.summary()
        err_console.print("[dim]demo:[/dim] stopping every process it started ...")
        runner.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if summary:
        console.print(f"demo: rotations: {summary}")
    console.print(f"demo: stopped every process it started; removed {runner.directory}")


def _header(runner: Demo) -> str:
    from devstack.demo.runner import FLOWER_USER

    lines = [
        f"redis    {runner.stack.redis.url}",
        f"sandbox  {runner.stack.sandbox_url}  ({len(runner.destinations)} destinations)",
        f"files    {runner.directory}",
    ]
    if runner.flower_url:
        lines.append(
            f"flower   {runner.flower_url}  user {FLOWER_USER}  password {runner.flower_password}"
        )
    lines.append(f"try      ROTATOR_REDIS_URL={runner.stack.redis.url} rotator events --follow")
    return "\n".join(lines)


def main(args: list[str]) -> int:
    """Run ``rotator demo`` with ``args`` (errors go up to the ``rotator`` error mapping)."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(demo)
    result = app(args=args, prog_name="rotator demo", standalone_mode=False)
    return result if isinstance(result, int) else 0
