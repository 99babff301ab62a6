"""``rotator rotate --all``: a fleet rotation of 200 sandbox destinations, some failing."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from devstack.stack import LocalStack
from tests.integration.lifecycle_helpers import (
    completed,
    control,
    current_credentials,
    events,
    run_json,
    sandbox_ids,
    stack_factory,
    write_registry,
)

pytestmark = pytest.mark.integration
__all__ = ["stack_factory"]  # the fixture, re-exported for pytest


def test_fleet_rotation_continues_past_failures_and_summarises(
    stack_factory: Callable[..., LocalStack], tmp_path: Path
) -> None:
    stack = stack_factory(200)
    ctl = control(stack)
    environment_id, ids = sandbox_ids(ctl)
    before = current_credentials(ctl)
    broken = ids[5::20]  # 10 destinations whose PATCH is always refused
    assert len(broken) == 10
    ctl.patch_faults(
        permanent={d: 403 for d in broken}, permanent_methods={d: ["PATCH"] for d in broken}
    )
    registry = write_registry(tmp_path / "registry.toml", environment_id, ids)
    synced = stack.rotator("registry", "sync", str(registry))
    assert synced.returncode == 0, completed(synced)
    stack.start_worker("w1", concurrency=8)

    report = run_json(stack, "rotate", "--all", "--yes", "--json", "--concurrency", "20", code=1)

    assert report["total"] == 200
    assert report["summary"] == {
        "succeeded": 190, "failed": 0, "rolled_back": 10, "needs_attention": 0
    }  # fmt: skip
    by_outcome = {r["destinationId"]: r["outcome"] for r in report["results"]}
    assert sorted(d for d, o in by_outcome.items() if o == "rolled_back") == sorted(broken)
    assert all(r["error"]["class"] for r in report["results"] if r["outcome"] != "succeeded")
    assert len({r["rotationId"] for r in report["results"]}) == 200
    # Redox agrees: the broken ones kept their credential, every other one has a new one.
    after = current_credentials(ctl)
    assert [d for d in ids if after[d] == before[d]] == broken
    # Exactly one terminal event per rotation, all with trigger "fleet".
    terminal = [e for e in events(stack) if e["type"].rsplit(".", 1)[-1] in report["summary"]]
    assert Counter(e["data"]["rotationId"] for e in terminal) == Counter(
        {r["rotationId"]: 1 for r in report["results"]}
    )
    assert {e["data"]["trigger"] for e in terminal} == {"fleet"}


def test_fleet_environment_filter_and_confirmation(
    stack_factory: Callable[..., LocalStack], tmp_path: Path
) -> None:
    stack = stack_factory(3)
    ctl = control(stack)
    environment_id, ids = sandbox_ids(ctl)
    registry = write_registry(
        tmp_path / "registry.toml", environment_id, ids, extra={ids[2]: "paused = true"}
    )
    assert stack.rotator("registry", "sync", str(registry)).returncode == 0
    stack.start_worker("w1", concurrency=2)

    unknown = stack.rotator("rotate", "--all", "--yes", "--environment", "no-such-env")
    assert unknown.returncode == 2, completed(unknown)
    assert "no destination to rotate in environment no-such-env" in unknown.stderr
    no_yes = stack.rotator("rotate", "--all")  # stdin is not a terminal
    assert no_yes.returncode == 2, completed(no_yes)
    assert "without --yes" in no_yes.stderr
    assert len(no_yes.stderr.strip().splitlines()) == 1

    report = run_json(stack, "rotate", "--all", "--yes", "--json", "--environment", environment_id)
    assert report["summary"]["succeeded"] == 2 and report["total"] == 2
    assert report["skipped"] == [{"destinationId": ids[2], "reason": "paused"}]
