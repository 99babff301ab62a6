"""The registry file: valid files resolve; every bad field is named in one error line."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.registry import DestinationPolicy, load_registry, parse_registry
from config.secret_sources import CommandSpec, HttpSpec, OktaSpec
from worker.cli.common import run_cli
from worker.cli.main import app
from worker.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "registry.toml"
ENV = "env-1"
HEAD = '[defaults]\ninterval = "30d"\n\n'


def dest(ident: str = "d1", **extra: str) -> str:
    """A [[destinations]] table; ``extra`` values are raw TOML."""
    lines = ["[[destinations]]", f'id = "{ident}"', f'environment = "{ENV}"']
    lines += [f"{key} = {value}" for key, value in extra.items()]
    return "\n".join(lines) + "\n\n"


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_registry(text, "registry.toml")
    return info.value.problems


def one_problem(text: str) -> str:
    found = problems(text)
    assert len(found) == 1, found
    assert "\n" not in found[0]
    return found[0]


# --- valid files -----------------------------------------------------------------------------


def test_example_file_loads() -> None:
    registry = load_registry(EXAMPLE)
    policies = registry.policies()
    assert len(policies) == 3
    first, second, third = policies
    assert first.name == "Acme EHR webhook"
    assert first.interval_seconds == 14 * 86400
    assert first.window == (22 * 60, 2 * 60)  # from the environment
    assert second.cron == "30 1 * * 1" and second.interval_seconds is None
    assert isinstance(registry.secret_source(first.destination_id), OktaSpec)
    assert isinstance(registry.secret_source(second.destination_id), CommandSpec)
    assert second.retire == "created-only"
    assert third.paused is True and third.grace_seconds == 3600
    http = registry.secret_source(third.destination_id)
    assert isinstance(http, HttpSpec)
    assert http.token_env == "ROTATOR_SECRET_TOKEN"


def test_resolution_order_destination_env_defaults_builtin() -> None:
    text = (
        '[defaults]\ninterval = "30d"\nwindow = "02:00-05:00"\n\n'
        f'[environments."{ENV}"]\ncron = "0 3 * * 1"\ngrace = "1h"\n\n'
        + dest("a")
        + dest("b", interval='"2d"', grace='"0s"')
        + '[[destinations]]\nid = "c"\nenvironment = "other"\n'
    )
    registry = parse_registry(text)
    a, b, c = registry.policies()
    assert (a.cron, a.interval_seconds, a.grace_seconds, a.window) == (
        "0 3 * * 1",
        None,
        3600,
        (120, 300),
    )
    assert (b.cron, b.interval_seconds, b.grace_seconds) == (None, 2 * 86400, 0)
    assert (c.cron, c.interval_seconds, c.grace_seconds) == (None, 30 * 86400, 86400)
    assert registry.secret_source("c") is None  # no layer names one: the Settings' default
    assert c.retire == "rotated-away" and c.enabled and not c.paused


def test_retire_policy_values_and_resolution() -> None:
    text = (
        '[defaults]\ninterval = "30d"\nretire = "never"\n\n'
        f'[environments."{ENV}"]\nretire = "created-only"\n\n'
        + dest("a")
        + dest("b", retire='"rotated-away"')
        + '[[destinations]]\nid = "c"\nenvironment = "other"\n'
    )
    a, b, c = parse_registry(text).policies()
    assert (a.retire, b.retire, c.retire) == ("created-only", "rotated-away", "never")
    with pytest.raises(ConfigError) as info:
        parse_registry('[defaults]\ninterval = "30d"\nretire = true\n' + dest())
    assert info.value.problems == [
        "registry.toml: defaults: retire: must be one of rotated-away, created-only, never, "
        "got True"
    ]


def test_integer_seconds_and_empty_file() -> None:
    (policy,) = parse_registry("[defaults]\ninterval = 3600\n" + dest()).policies()
    assert policy.interval_seconds == 3600
    assert parse_registry("").policies() == []


def test_policy_json_round_trip() -> None:
    for policy in load_registry(EXAMPLE).policies():
        again = DestinationPolicy.model_validate_json(policy.model_dump_json())
        assert again == policy
        assert again.model_dump_json() == policy.model_dump_json()


def test_secret_sources_are_kept_out_of_the_stored_policy() -> None:
    source = '{ kind = "http", url = "http://127.0.0.1:8200/rotate", token_env = "TOKEN" }'
    registry = parse_registry(HEAD + dest(secret_source=source))
    (policy,) = registry.policies()
    spec = registry.secret_source("d1")
    assert isinstance(spec, HttpSpec) and spec.timeout == 10.0
    assert "secret_source" not in policy.model_dump_json()  # Redis never holds a spec


def test_a_secret_written_in_the_registry_is_refused() -> None:
    source = '{ kind = "okta", org_url = "https://x.okta.com", api_token = "00abc" }'
    assert one_problem(HEAD + dest(secret_source=source)) == (
        "registry.toml: destinations[0] (id=d1): secret_source: api_token: a secret does not "
        "belong in the registry file: name the environment variable that holds it "
        "(api_token_env)"
    )


# --- bad input: each problem names file, entry, field, reason ------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            HEAD + dest("a") + dest("b") + dest("c") + dest("abc", interval='"3x"'),
            "registry.toml: destinations[3] (id=abc): interval: "
            "bad duration '3x' (use e.g. 30d, 12h, 90m)",
        ),
        (
            HEAD + dest("a") + dest("b") + dest("c", intervall='"3d"'),
            "registry.toml: destinations[2] (id=c): unknown key 'intervall'",
        ),
        ('colour = "red"\n', "registry.toml: top level: unknown key 'colour'"),
        (
            '[defaults]\ninterval = "30d"\ncolour = 1\n',
            "registry.toml: defaults: unknown key 'colour'",
        ),
        (
            f'[environments."{ENV}"]\nfoo = 1\n',
            f"registry.toml: environments.\"{ENV}\": unknown key 'foo'",
        ),
        (
            HEAD + dest(secret_source='{ kind = "generate", lenght = 20 }'),
            "registry.toml: destinations[0] (id=d1): secret_source: unknown key 'lenght'",
        ),
        (
            HEAD + dest(interval="true"),
            "registry.toml: destinations[0] (id=d1): interval: "
            "expected a duration like '30d', got boolean",
        ),
        (
            HEAD + dest(paused='"no"'),
            "registry.toml: destinations[0] (id=d1): paused: expected true or false, got string",
        ),
        (
            HEAD + dest(name="5"),
            "registry.toml: destinations[0] (id=d1): name: expected a string, got integer",
        ),
        (
            '[defaults]\ninterval = "30s"\n',
            "registry.toml: defaults: interval: '30s' is shorter than the minimum of 60s",
        ),
        (
            HEAD + dest(cron='"61 * * * *"', interval='"1d"'),
            "registry.toml: destinations[0] (id=d1): cron: "
            "bad cron '61 * * * *' (use 5 fields in UTC, e.g. '0 3 * * 1')",
        ),
        (
            HEAD + dest(cron='"0 3 * * 1 2030"'),
            "registry.toml: destinations[0] (id=d1): cron: "
            "bad cron '0 3 * * 1 2030' (use 5 fields in UTC, e.g. '0 3 * * 1')",
        ),
        (
            HEAD + dest(cron='"0 3 * * 1"', interval='"1d"'),
            "registry.toml: destinations[0] (id=d1): "
            "interval/cron: set one of interval or cron, not both",
        ),
        (
            dest(),
            "registry.toml: destinations[0] (id=d1): "
            "interval/cron: none set (set one in [defaults], the environment or the entry)",
        ),
        (
            HEAD + dest(window='"02:00-02:00"'),
            "registry.toml: destinations[0] (id=d1): window: "
            "bad window '02:00-02:00' (start and end are the same time)",
        ),
        (
            HEAD + dest(window='"2am-4am"'),
            "registry.toml: destinations[0] (id=d1): window: "
            "bad window '2am-4am' (use HH:MM-HH:MM in UTC, e.g. 02:00-05:00)",
        ),
        (
            HEAD + dest(grace='"-1h"'),
            "registry.toml: destinations[0] (id=d1): grace: "
            "bad duration '-1h' (use e.g. 30d, 12h, 90m)",
        ),
        (
            HEAD + dest(secret_source='{ kind = "http", url = "vault/x", token_env = "T" }'),
            "registry.toml: destinations[0] (id=d1): secret_source.url: "
            "must be an absolute https URL, got 'vault/x'",
        ),
        (
            HEAD + dest(secret_source='{ kind = "http", url = "https://v/x", token_env = "a b" }'),
            "registry.toml: destinations[0] (id=d1): secret_source.token_env: "
            "must be the name of an environment variable, got 'a b'",
        ),
        (
            HEAD + dest(secret_source='{ kind = "generate", length = 8 }'),
            "registry.toml: destinations[0] (id=d1): secret_source.length: "
            "Input should be greater than or equal to 16",
        ),
        (
            HEAD + dest(secret_source='{ kind = "command", command = [] }'),
            "registry.toml: destinations[0] (id=d1): secret_source.command: must not be empty",
        ),
        (
            HEAD + dest(secret_source='{ kind = "command", command = ["x"], timeout = "3x" }'),
            "registry.toml: destinations[0] (id=d1): secret_source.timeout: "
            "bad duration '3x' (use e.g. 30d, 12h, 90m)",
        ),
        (
            HEAD + dest(secret_source='{ kind = "vault" }'),
            "registry.toml: destinations[0] (id=d1): secret_source: "
            "unknown kind 'vault' (one of okta, entra, command, http, generate, aws-iam)",
        ),
        (
            HEAD + dest(secret_source="{ length = 20 }"),
            "registry.toml: destinations[0] (id=d1): secret_source: "
            "missing 'kind' (one of okta, entra, command, http, generate, aws-iam)",
        ),
        (
            HEAD + '[[destinations]]\nenvironment = "e"\n',
            "registry.toml: destinations[0]: id: required key is missing",
        ),
        (
            HEAD + '[[destinations]]\nid = "has space"\nenvironment = "e"\n',
            "registry.toml: destinations[0]: id: "
            "bad id 'has space' (use 1-64 letters, digits, '-' or '_')",
        ),
        (
            HEAD + '[[destinations]]\nid = ""\nenvironment = "e"\n',
            "registry.toml: destinations[0]: id: bad id '' (use 1-64 letters, digits, '-' or '_')",
        ),
        (
            HEAD + '[environments."a/b"]\ngrace = "1h"\n',
            "registry.toml: environments.\"a/b\": bad id 'a/b' "
            "(use 1-64 letters, digits, '-' or '_')",
        ),
        (
            "destinations = 3\n",
            "registry.toml: destinations: expected an array, got integer",
        ),
        (
            "defaults = 3\n",
            "registry.toml: defaults: expected a table, got integer",
        ),
    ],
)
def test_bad_field_is_named(text: str, expected: str) -> None:
    assert one_problem(text) == expected


def test_duplicate_ids_name_both_entries() -> None:
    found = problems(HEAD + dest("x") + dest("y") + dest("x"))
    assert found == ["registry.toml: destinations[2] (id=x): id: duplicate of destinations[0]"]


def test_all_problems_reported_at_once() -> None:
    text = HEAD + dest("a", interval='"3x"') + dest("b", foo="1") + dest("a")
    found = problems(text)
    assert len(found) == 3
    assert any("destinations[0] (id=a): interval" in line for line in found)
    assert any("destinations[1] (id=b): unknown key 'foo'" in line for line in found)
    assert any("destinations[2] (id=a): id: duplicate of destinations[0]" in line for line in found)


def test_toml_syntax_error_has_line_and_column() -> None:
    line = one_problem('[defaults]\ninterval = "30d"\nwindow = \n')
    assert line.startswith("registry.toml: TOML syntax error: ")
    assert "line 3" in line and "column" in line


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_registry(path)
    assert info.value.problems == [f"{path}: registry file does not exist"]


def test_directory_and_non_utf8(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_registry(tmp_path)
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b'name = "\xff"\n')
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_registry(bad)


def test_file_name_in_every_line(tmp_path: Path) -> None:
    path = tmp_path / "registry.toml"
    path.write_text(HEAD + dest(interval='"3x"'))
    with pytest.raises(ConfigError) as info:
        load_registry(path)
    assert info.value.problems[0].startswith(f"{path}: destinations[0] (id=d1): interval: ")


# --- CLI --------------------------------------------------------------------------------------


def test_cli_check(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["rotator", "registry", "check", str(EXAMPLE), "-q"])
    assert run_cli(app) == 0
    assert capsys.readouterr().out.strip() == "OK: 3 destinations (1 paused)"


def test_cli_check_bad_file_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "registry.toml"
    path.write_text(HEAD + dest(interval='"3x"') + dest("d2", foo="1"))
    monkeypatch.setattr(sys, "argv", ["rotator", "registry", "check", str(path)])
    assert run_cli(app) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2
    assert "Traceback" not in "".join(err)
    assert err[0].endswith(
        "destinations[0] (id=d1): interval: bad duration '3x' (use e.g. 30d, 12h, 90m)"
    )


# --- fuzz: random TOML never fails with anything but ConfigError --------------------------------


def _toml_str(value: str) -> str:
    out = ['"']
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value) if math.isfinite(value) else "nan"
    if isinstance(value, str):
        return _toml_str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{_toml_str(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"


KNOWN_KEYS = [
    "defaults", "environments", "destinations", "id", "environment", "name", "interval",
    "cron", "window", "grace", "retire", "secret_source", "paused", "enabled",
    "kind", "length", "command", "timeout", "url", "token_env", ENV,
]  # fmt: skip
KNOWN_STRINGS = [
    "30d", "3x", "0s", "02:00-05:00", "22:00-02:00", "0 3 * * 1", "bad cron", "generate",
    "command", "http", "https://v/x", "http://v/x", "TOKEN", ENV, "d1", "",
]  # fmt: skip
keys_st = st.one_of(st.sampled_from(KNOWN_KEYS), st.text(max_size=8))
scalars = st.one_of(
    st.sampled_from(KNOWN_STRINGS),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=12),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.booleans(),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(keys_st, inner, max_size=5)
    ),
    max_leaves=20,
)


@settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.dictionaries(keys_st, values, max_size=5))
def test_fuzz_only_config_errors(data: dict[str, Any]) -> None:
    text = "\n".join(f"{_toml_str(k)} = {_toml_value(v)}" for k, v in data.items())
    try:
        registry = parse_registry(text)
    except ConfigError as exc:
        assert exc.problems
        assert all(line.startswith("registry.toml: ") and "\n" not in line for line in exc.problems)
    else:
        for policy in registry.policies():
            assert DestinationPolicy.model_validate_json(policy.model_dump_json()) == policy
