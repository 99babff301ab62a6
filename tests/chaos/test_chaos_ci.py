"""Every chaos scenario at CI size: the invariants must hold (full size: docs/reliability.md).

Each scenario starts its own redis-server, sandbox and workers (``bench.chaos``), injects its
fault, and ends with the shared invariant checks of :mod:`bench.chaos.invariants`. The
figures are counts (runs, completions, duplicates, orphans, leaks), never timings.
"""

from __future__ import annotations

import pytest

from bench.chaos.__main__ import row
from bench.chaos.scenarios import SCENARIOS

pytestmark = [pytest.mark.integration, pytest.mark.chaos]


#: Above every scenario's own waits, so a stuck rotation is reported by the invariants
#: (with where it stopped) rather than cut short by pytest-timeout.
@pytest.mark.timeout(240)
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario_holds_its_invariants(name: str) -> None:
    """Runs the scenario at CI size; every invariant holds and every rotation completed."""
    figures = SCENARIOS[name].run("ci")
    print(row(figures))
    assert figures.violations == []
    assert figures.runs > 0
    assert figures.completions == figures.runs
    assert (figures.duplicates, figures.orphans, figures.leaks) == (0, 0, 0)
    assert figures.terminal_min == figures.terminal_max == 1
