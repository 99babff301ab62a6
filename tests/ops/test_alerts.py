"""deploy/prometheus/alerts.yml and deploy/grafana/redox-rotator.json: promtool checks the
rules and runs their unit tests on synthetic series (alerts.test.yml); every rule carries
the annotations an operator needs and a runbook anchor that exists in docs/operations.md;
every metric the rules and the dashboard name is one the exporter serves (or one announced
below, not exported yet)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from ruamel.yaml import YAML

from worker.metrics import RedisCollector
from worker.store.keys import Keys

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "deploy" / "prometheus"
RULES = RULES_DIR / "alerts.yml"
RULE_TESTS = RULES_DIR / "alerts.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "redox-rotator.json"
OPERATIONS = ROOT / "docs" / "operations.md"
PROMTOOL = shutil.which("promtool")

#: Metrics the rules and the dashboard use before the exporter serves them (each added with
#: its own change: the policy's interval + grace per destination, the age of the oldest
#: claimed rotation that is not watching, the watch's reverts, live workers from heartbeats).
ANNOUNCED = {
    "rotator_credential_max_age_seconds",
    "rotator_rotation_oldest_running_seconds",
    "rotator_watch_reverts_total",
    "rotator_workers_up",
}
_METRIC = re.compile(r"\brotator_[a-z0-9_]+\b")

needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not found (Debian/Ubuntu: apt-get install prometheus; .ci/run installs it)",
)


def rules() -> list[dict[str, Any]]:
    data = YAML(typ="safe").load(RULES.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=RULES_DIR, capture_output=True, text=True, timeout=60, check=False
    )


@needs_promtool
def test_promtool_check_rules() -> None:
    result = promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


@needs_promtool
def test_promtool_unit_tests_pass() -> None:
    result = promtool("test", "rules", RULE_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_unit_tested_firing() -> None:
    data = YAML(typ="safe").load(RULE_TESTS.read_text())
    firing = {
        case["alertname"]
        for test in data["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert {rule["alert"] for rule in rules()} <= firing


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    found = set()
    for line in markdown.splitlines():
        match = re.match(r"#{1,6}\s+(.*)", line)
        if match:
            text = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower())
            found.add(text.replace(" ", "-"))
    return found


def test_every_alert_has_annotations_and_a_runbook_anchor() -> None:
    known = anchors(OPERATIONS.read_text())
    assert "alerts-and-what-to-do" in known
    for rule in rules():
        name = rule["alert"]
        notes = rule.get("annotations", {})
        assert notes.get("summary") and notes.get("description"), name
        assert rule.get("labels", {}).get("severity") in {"critical", "warning", "info"}, name
        url = urlsplit(notes.get("runbook_url", ""))
        assert url.scheme == "https" and url.path.endswith("/docs/operations.md"), name
        assert url.fragment == name.lower(), name
        assert url.fragment in known, f"{name}: no heading for #{url.fragment} in operations.md"


def test_the_dashboard_parses_and_every_panel_has_a_query() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "redox-rotator"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert panels
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"]), panel
        assert panel["datasource"]["uid"] == "${datasource}"


def exported_names(client: redis.Redis) -> set[str]:
    """Every series name ``rotator metrics`` serves (an empty Redis still shows every
    family: counters as ``_total``, summaries as ``_sum``/``_count``)."""
    names: set[str] = set()
    for family in RedisCollector(client, Keys()).collect():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "summary":
            names.update({f"{family.name}_sum", f"{family.name}_count"})
    return names


def used_names() -> dict[str, set[str]]:
    """Metric names each file refers to."""
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    return {
        RULES.name: {n for rule in rules() for n in _METRIC.findall(rule["expr"])},
        DASHBOARD.name: {n for expr in exprs for n in _METRIC.findall(expr)},
    }


def test_rules_and_dashboard_use_only_exported_metrics(redis_client: redis.Redis) -> None:
    exported = exported_names(redis_client)
    assert "rotator_redis_up" in exported and "rotator_rotations_total" in exported
    for where, names in used_names().items():
        unknown = names - exported - ANNOUNCED
        assert not unknown, f"{where} uses metrics the exporter does not serve: {sorted(unknown)}"
    # Once an announced metric is served, it is simply exported; none is a typo of another.
    for name in ANNOUNCED:
        assert name.startswith("rotator_")
    assert 'up{job="redox-rotator"}' in RULES.read_text()
