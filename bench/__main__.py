"""``python -m bench``: run the benchmark figures and print each with its goal and PASS/FAIL.

    python -m bench                  every figure, full size (about 4 minutes on 2 cores)
    python -m bench --quick          tiny sizes, for CI (under a minute; never fails on time)
    python -m bench --only ratelimit --only calls
    python -m bench --only adaptive  figure 7: a 429 slows every worker (about 2 minutes)
    python -m bench --only watch     figure 8: the watch at its defaults (about 17 minutes)
    python -m bench --only cost      figure 9: bytes per rotation, 100 vs 10,000 credentials
    python -m bench --json out.json  also write the figures as JSON

Exit 0 when every figure passed, 1 otherwise (``--quick`` always exits 0 once every figure
ran: CI checks that the benches work, not how fast a shared runner is).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench import calls, cost, memory, overhead, ratelimit, scheduler, speedup, watch
from bench.harness import Figure, bench_rig
from devstack.rig import Rig

__all__ = ["FIGURES", "main", "run_figures"]

StackFigure = Callable[[Rig, bool], Figure]

#: Figure name -> (issue number, function). Stack-less figures take ``None``.
FIGURES: dict[str, tuple[int, StackFigure | None]] = {
    "ratelimit": (1, ratelimit.run),
    "calls": (2, calls.run),
    "speedup": (3, speedup.run),
    "overhead": (4, overhead.run),
    "scheduler": (5, None),
    "memory": (6, memory.run),
    "adaptive": (7, ratelimit.run_adaptive),
    "watch": (8, watch.run),
    "cost": (9, cost.run),
}


def run_figures(names: list[str], quick: bool, echo: Callable[[str], None] = print) -> list[Figure]:
    """Run the named figures in issue order on one shared stack; print each as it ends."""
    ordered = sorted(names, key=lambda n: FIGURES[n][0])
    figures: list[Figure] = []
    stack: Rig | None = None
    try:
        for name in ordered:
            number, function = FIGURES[name]
            started = time.monotonic()
            if function is None:
                figure = scheduler.run(quick)
            else:
                if stack is None:
                    stack = bench_rig()
                figure = function(stack, quick)
            figure.details.append(f"took {time.monotonic() - started:.0f} s")
            figures.append(figure)
            echo(f"{number}. {figure.render()}\n")
    finally:
        if stack is not None:
            stack.close()
    return figures


def summary_table(figures: list[Figure]) -> str:
    """The markdown table of a run (as in docs/performance.md)."""
    rows = ["| figure | measured | goal | ratio | result |", "|---|---|---|---|---|"]
    for f in figures:
        verdict = "PASS" if f.passed else "FAIL"
        rows.append(f"| {f.name} | {f.value} | {f.goal} | {f.ratio:.3f} | {verdict} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run, print the summary; return the exit code."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", action="append", choices=sorted(FIGURES), metavar="NAME",
        help=f"only this figure (repeatable): {', '.join(FIGURES)}",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="tiny sizes for CI")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    names = args.only or list(FIGURES)
    started = time.monotonic()
    figures = run_figures(names, args.quick)
    print(summary_table(figures))
    print(f"\n{len(figures)} figures in {time.monotonic() - started:.0f} s"
          + (" (quick sizes: timings are not goals)" if args.quick else ""))  # fmt: skip
    if args.json is not None:
        args.json.write_text(json.dumps([f.as_dict() for f in figures], indent=2) + "\n")
    if args.quick:
        return 0
    return 0 if all(f.passed for f in figures) else 1


if __name__ == "__main__":
    sys.exit(main())
