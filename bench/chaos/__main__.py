"""``python -m bench.chaos [--scenario NAME ...] [--size ci|full] [--list]``.

Prints one row of figures per scenario and exits 1 if any invariant broke.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback

from bench.chaos.invariants import Figures
from bench.chaos.scenarios import SCENARIOS
from worker.logging import configure_logging

HEADER = (
    f"{'scenario':<20} {'size':<4} {'runs':>5} {'done':>5} {'dup':>4} {'orph':>4} "
    f"{'leak':>4} {'term/rot':>8} {'secs':>6}  outcomes / extra"
)


def row(f: Figures) -> str:
    """One table row."""
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(f.outcomes.items()))
    extra = ", ".join(f"{k} {v}" for k, v in sorted(f.extra.items()))
    terminal = f"{f.terminal_min}..{f.terminal_max}"
    return (
        f"{f.scenario:<20} {f.size:<4} {f.runs:>5} {f.completions:>5} {f.duplicates:>4} "
        f"{f.orphans:>4} {f.leaks:>4} {terminal:>8} {f.seconds:>6.0f}  {outcomes}; {extra}"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the chosen scenarios; exit status 1 if any invariant broke."""
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__)
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS))
    parser.add_argument("--size", choices=("ci", "full"), default="ci")
    parser.add_argument("--json", action="store_true", help="also print one JSON line per run")
    parser.add_argument("--list", action="store_true", help="list scenarios and exit")
    args = parser.parse_args(argv)
    if args.list:
        for scenario in SCENARIOS.values():
            print(f"{scenario.name:<20} {scenario.summary}")
        return 0
    configure_logging("console", "WARNING")
    failed = False
    print(HEADER, flush=True)
    for name in args.scenario or list(SCENARIOS):
        try:
            figures = SCENARIOS[name].run(args.size)
        except Exception as exc:  # a harness error is a failed scenario, not a crash
            traceback.print_exc(file=sys.stderr)
            figures = Figures(name, args.size)
            figures.fail(f"scenario crashed: {type(exc).__name__}: {exc}")
        print(row(figures), flush=True)
        for violation in figures.violations:
            print(f"  VIOLATION {violation}", flush=True)
        if args.json:
            print(json.dumps({**figures.__dict__, "outcomes": dict(figures.outcomes)}), flush=True)
        failed = failed or not figures.ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
