"""What the demo shows: a live Rich view of destinations and events, or plain event lines.

Both read only Redis: the destinations' state hashes, the schedule, the claims and the
event stream (read incrementally by :class:`EventTail`).
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from devstack.demo.runner import Demo
from worker.events import TERMINAL_OUTCOMES, EventStream, StreamEntry, format_event

__all__ = ["EventTail", "run_live", "run_plain"]

_COLOURS = {
    "succeeded": "green",
    "failed": "red",
    "rolled_back": "yellow",
    "needs_attention": "bold red",
}


@dataclass
class EventTail:
    """Reads new events since the last call; keeps counts and the newest ``keep``."""

    stream: EventStream
    keep: int = 12
    last_id: str = "0-0"
    outcomes: Counter[str] = field(default_factory=Counter)
    per_destination: Counter[str] = field(default_factory=Counter)
    recent: deque[StreamEntry] = field(default_factory=deque)

    def poll(self) -> list[StreamEntry]:
        """New entries (oldest first), also counted and remembered."""
        new: list[StreamEntry] = []
        while True:
            batch = self.stream.read(since=self.last_id, count=500)
            if not batch:
                return new
            for entry in batch:
                self.last_id = entry.stream_id
                outcome = str(entry.event.get("type", "")).rsplit(".", 1)[-1]
                if outcome in TERMINAL_OUTCOMES:
                    self.outcomes[outcome] += 1
                    if outcome == "succeeded":
                        self.per_destination[str(entry.event.get("subject", ""))] += 1
                self.recent.append(entry)
                while len(self.recent) > self.keep:
                    self.recent.popleft()
            new.extend(batch)

    def summary(self) -> str:
        """``3 succeeded, 0 failed, ...``."""
        return ", ".join(f"{self.outcomes[o]} {o.replace('_', ' ')}" for o in TERMINAL_OUTCOMES)


def _ago(seconds: float) -> str:
    return f"{seconds:.0f}s ago" if seconds < 120 else f"{seconds / 60:.0f}m ago"


def _destination_table(demo: Demo, tail: EventTail, now: float) -> Table:
    keys = demo.keys
    with demo.redis.pipeline(False) as pipe:
        for dest in demo.destinations:
            pipe.hgetall(keys.destination(dest.id))
            pipe.zscore(keys.schedule, dest.id)
            pipe.get(keys.active(dest.id))
        replies: list[Any] = pipe.execute()
    active_ids = [replies[3 * n + 2] for n in range(len(demo.destinations))]
    with demo.redis.pipeline(False) as pipe:
        for rid in active_ids:
            pipe.hmget(keys.rotation(rid or "-"), ["status", "step"])
        steps: list[Any] = pipe.execute()
    deliveries = _deliveries(demo)
    table = Table(expand=True, title="destinations", title_justify="left")
    for name in (
        "destination", "credential", "deliveries ok / failed", "rotations", "last outcome",
        "in progress", "next",
    ):  # fmt: skip
        table.add_column(name, no_wrap=True)
    for n, dest in enumerate(demo.destinations):
        state: dict[str, str] = replies[3 * n] or {}
        due, rid = replies[3 * n + 1], active_ids[n]
        outcome = state.get("last_outcome", "")
        colour = _COLOURS.get(outcome, "white")
        finished = float(state.get("last_finished_at") or 0)
        last = f"[{colour}]{outcome}[/{colour}] {_ago(now - finished)}" if outcome else "-"
        status, step = steps[n]
        progress = f"[cyan]{step or status or 'queued'}[/cyan] {rid[:8]}" if rid else "-"
        credential = state.get("credential_id") or dest.initial_credential
        next_due = f"in {max(0.0, float(due) - now):.0f}s" if due is not None else "-"
        ok, failed = deliveries.get(dest.id, (0, 0))
        table.add_row(
            f"{dest.name} [dim]{dest.id[:8]}[/dim]",
            credential[:8],
            f"[green]{ok}[/green] / " + (f"[bold red]{failed}[/bold red]" if failed else "0"),
            str(tail.per_destination[dest.id]),
            last,
            progress,
            next_due,
        )
    return table


def _deliveries(demo: Demo) -> dict[str, tuple[int, int]]:
    """Per destination: (succeeded, failed) deliveries the sandbox made so far."""
    if demo.control is None:
        return {}
    try:
        stats = demo.control.delivery_stats()["destinations"]
    except Exception:
        return {}
    return {d: (int(v.get("succeeded", 0)), int(v.get("failed", 0))) for d, v in stats.items()}


def _events_table(tail: EventTail) -> Table:
    table = Table(expand=True, title="latest events", title_justify="left")
    for name in ("time", "event", "destination", "rotation", "detail"):
        table.add_column(name, no_wrap=True, overflow="ellipsis")
    for entry in reversed(tail.recent):
        event = entry.event
        data: dict[str, Any] = event.get("data") or {}
        kind = str(event.get("type", "?")).removeprefix("rotator.")
        colour = _COLOURS.get(kind.rsplit(".", 1)[-1], "cyan")
        error = data.get("error")
        old = str(data.get("oldCredentialId") or data.get("credentialId") or "")[:8]
        new = str(data.get("newCredentialId") or "")[:8]
        detail = f"{old} -> {new}" if new else old
        if isinstance(error, dict):
            detail = f"{error.get('class')}: {error.get('message')}"
        table.add_row(
            str(event.get("time", ""))[11:19],
            f"[{colour}]{kind}[/{colour}]",
            str(event.get("subject", ""))[:8],
            str(data.get("rotationId") or "")[:8],
            detail,
        )
    return table


def _render(demo: Demo, tail: EventTail, header: str) -> RenderableType:
    now = time.time()
    up = now - demo.started_at
    title = f"rotator demo - up {up:.0f}s - {tail.summary()} - Ctrl-C stops everything"
    return Group(
        Panel(header, title=title, title_align="left"),
        _destination_table(demo, tail, now),
        _events_table(tail),
    )


def run_live(
    demo: Demo, tail: EventTail, console: Console, header: str, until: Callable[[], bool]
) -> None:
    """Refresh the live view about twice a second until ``until()`` is true."""
    tail.poll()
    with Live(_render(demo, tail, header), console=console, refresh_per_second=4) as live:
        while not until():
            time.sleep(0.5)
            tail.poll()
            live.update(_render(demo, tail, header))


def run_plain(tail: EventTail, console: Console, until: Callable[[], bool]) -> None:
    """Print each event as one line as it arrives until ``until()`` is true."""
    while not until():
        for entry in tail.poll():
            console.print(format_event(entry), highlight=False, soft_wrap=True)
        time.sleep(0.5)
    for entry in tail.poll():
        console.print(format_event(entry), highlight=False, soft_wrap=True)
