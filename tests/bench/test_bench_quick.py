"""``python -m bench --quick``: every figure runs end to end and is printed (no timing asserts).

The benchmark numbers depend on the machine, so CI only checks that the benches work: each
figure runs against the real stack, prints its value, goal, ratio, verdict and the command
that reproduces it, and the functional parts of the figures hold (rotations succeed, the
call counts come from the sandbox journal).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import FIGURES

pytestmark = pytest.mark.integration


@pytest.mark.timeout(300)
def test_quick_bench_prints_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
        # One worker process per figure: the quick sizes need no more, and CI's other tests
        # share the machine (the figures' own worker setup is BENCH_PROCESSES, default 3).
        env={**os.environ, "BENCH_PROCESSES": "1"},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = {f["name"]: f for f in json.loads(out.read_text())}
    assert set(figures) == set(FIGURES)
    for name, figure in figures.items():
        assert f"] {name}: " in done.stdout
        assert figure["value"] and figure["goal"]
        assert figure["command"] == f"python -m bench --only {name} --quick"
        assert figure["command"] in done.stdout
    assert f"| {name} |" in done.stdout  # the summary table
    # Functional facts that do not depend on speed.
    assert "5.00 calls/rotation" in figures["calls"]["value"]
    assert " 0 x 429" in figures["ratelimit"]["value"]
    assert "succeeded 300" in " ".join(figures["memory"]["details"])


def test_only_and_unknown_names() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "scheduler"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "scheduler" in done.stdout and "ratelimit" not in done.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "bench", "--only", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2
    assert "invalid choice" in bad.stderr
