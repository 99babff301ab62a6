"""Secret sources: generate, command (a real subprocess) and http (httpx MockTransport)."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from worker.errors import SecretSourceError
from worker.rotation.secrets import (
    CommandSource,
    GenerateSource,
    HttpSource,
    SecretRequest,
    build_secret_source,
    primary_secret_field,
)

OAUTH = SecretRequest("d-1", "r-1", "e-1", "OAuth_2.0_2-legged")
AWS = SecretRequest("d-1", "r-1", "e-1", "AwsSigv4")


def script(tmp_path: Path, body: str) -> list[str]:
    """An executable Python script; returns the command that runs it."""
    path = tmp_path / "source.py"
    path.write_text(f"#!{sys.executable}\nimport json, sys, time\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return [str(path)]


# -- generate ----------------------------------------------------------------------------


@pytest.mark.parametrize("length", [16, 48, 101])
def test_generate_length_and_field(length: int) -> None:
    values = GenerateSource(length).issue(OAUTH)
    assert list(values) == ["clientSecret"]
    secret = values["clientSecret"].get_secret_value()
    assert len(secret) == length
    assert secret != GenerateSource(length).issue(OAUTH)["clientSecret"].get_secret_value()
    assert "**" in repr(values["clientSecret"])  # never printed


def test_generate_field_per_strategy() -> None:
    assert list(GenerateSource().issue(AWS)) == ["secretKey"]
    assert primary_secret_field("SMART_Backend") == "clientSecret"
    with pytest.raises(SecretSourceError, match="no default secret field"):
        GenerateSource().issue(SecretRequest("d", "r", "e", "Basic"))


# -- command -----------------------------------------------------------------------------


def test_command_success_with_one_secret(tmp_path: Path) -> None:
    cmd = script(tmp_path, "print(json.dumps({'secret': 'S-' + sys.argv[1] + '-' + sys.argv[3]}))")
    values = CommandSource(cmd).issue(OAUTH)
    assert {k: v.get_secret_value() for k, v in values.items()} == {"clientSecret": "S-issue-r-1"}


def test_command_success_with_named_fields(tmp_path: Path) -> None:
    cmd = script(tmp_path, "print(json.dumps({'secrets': {'accessKey': 'AK', 'secretKey': 'SK'}}))")
    values = CommandSource(cmd).issue(AWS)
    assert {k: v.get_secret_value() for k, v in values.items()} == {
        "accessKey": "AK",
        "secretKey": "SK",
    }


def test_command_revoke_arguments(tmp_path: Path) -> None:
    out = tmp_path / "args.json"
    cmd = script(tmp_path, f"open({str(out)!r}, 'w').write(json.dumps(sys.argv[1:]))")
    CommandSource(cmd).revoke(SecretRequest("d-1", "r-1", "e-1", "AwsSigv4", credential_id="c-9"))
    assert json.loads(out.read_text()) == ["revoke", "d-1", "r-1", "c-9"]


def test_command_not_found(tmp_path: Path) -> None:
    with pytest.raises(SecretSourceError, match="not found"):
        CommandSource([str(tmp_path / "missing")]).issue(OAUTH)


def test_command_not_executable(tmp_path: Path) -> None:
    path = tmp_path / "plain.txt"
    path.write_text("x")
    with pytest.raises(SecretSourceError, match="not executable"):
        CommandSource([str(path)]).issue(OAUTH)


def test_command_nonzero_exit_reports_the_last_stderr_line(tmp_path: Path) -> None:
    cmd = script(
        tmp_path,
        'print(\'{"secret": "LEAKED-OUT"}\')\n'
        "sys.stderr.write('first line\\nvault: permission denied token=abcdefghijkl\\n')\n"
        "sys.exit(3)",
    )
    with pytest.raises(SecretSourceError) as caught:
        CommandSource(cmd).issue(OAUTH)
    message = str(caught.value)
    assert "exited 3" in message
    assert "vault: permission denied" in message
    assert "first line" not in message
    assert "abcdefghijkl" not in message and "LEAKED-OUT" not in message


@pytest.mark.parametrize(
    ("output", "reason"),
    [
        ("not json at all", "did not print JSON"),
        ("[1, 2]", "not an object"),
        ('{"other": 1}', "neither 'secret' nor 'secrets'"),
        ('{"secrets": {"endpoint": "x"}}', "not a rotatable field"),
        ('{"secrets": {"clientSecret": ""}}', "empty or non-string"),
        ('{"secrets": {"clientId": "only-an-id"}}', "no secret field"),
    ],
)
def test_command_bad_output(tmp_path: Path, output: str, reason: str) -> None:
    cmd = script(tmp_path, f"sys.stdout.write({output!r})")
    with pytest.raises(SecretSourceError, match=reason) as caught:
        CommandSource(cmd).issue(OAUTH)
    assert "only-an-id" not in str(caught.value)


def test_command_timeout(tmp_path: Path) -> None:
    cmd = script(tmp_path, "time.sleep(10)")
    with pytest.raises(SecretSourceError, match=r"timed out after 0\.5s"):
        CommandSource(cmd, timeout=0.5).issue(OAUTH)


def test_command_empty_is_refused() -> None:
    with pytest.raises(SecretSourceError, match="empty command"):
        CommandSource([])


# -- http --------------------------------------------------------------------------------


def http_source(handler: httpx.MockTransport, timeout: float = 5.0) -> HttpSource:
    client = httpx.Client(transport=handler)
    return HttpSource("https://vault.test/issue", SecretStr("tok-123"), timeout, client=client)


def test_http_success_sends_ids_and_bearer() -> None:
    seen: list[httpx.Request] = []

    def reply(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"secret": "from-vault"})

    values = http_source(httpx.MockTransport(reply)).issue(OAUTH)
    assert values["clientSecret"].get_secret_value() == "from-vault"
    (request,) = seen
    assert request.headers["authorization"] == "Bearer tok-123"
    assert json.loads(request.content) == {
        "action": "issue",
        "destinationId": "d-1",
        "rotationId": "r-1",
        "environmentId": "e-1",
        "authStrategy": "OAuth_2.0_2-legged",
    }


def test_http_revoke() -> None:
    bodies: list[dict[str, str]] = []

    def reply(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(204)

    http_source(httpx.MockTransport(reply)).revoke(
        SecretRequest("d-1", "r-1", "e-1", "AwsSigv4", credential_id="c-9")
    )
    assert bodies == [
        {"action": "revoke", "destinationId": "d-1", "rotationId": "r-1", "credentialId": "c-9"}
    ]


def test_http_error_status_never_quotes_the_body() -> None:
    source = http_source(httpx.MockTransport(lambda r: httpx.Response(500, text="secret=zzz")))
    with pytest.raises(SecretSourceError, match="answered 500") as caught:
        source.issue(OAUTH)
    assert "zzz" not in str(caught.value)


def test_http_timeout_and_unreachable() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(SecretSourceError, match="timed out"):
        http_source(httpx.MockTransport(slow)).issue(OAUTH)
    with pytest.raises(SecretSourceError, match="unreachable: ConnectError"):
        http_source(httpx.MockTransport(down)).issue(OAUTH)


def test_http_bad_json() -> None:
    source = http_source(httpx.MockTransport(lambda r: httpx.Response(200, text="<html>")))
    with pytest.raises(SecretSourceError, match="did not print JSON"):
        source.issue(OAUTH)


# -- building ----------------------------------------------------------------------------


def test_build_secret_source_kinds(tmp_path: Path) -> None:
    assert isinstance(build_secret_source({"kind": "generate", "length": 20}), GenerateSource)
    assert isinstance(build_secret_source({"kind": "command", "command": ["x"]}), CommandSource)
    http = build_secret_source({"kind": "http", "url": "https://v.test", "token": "t"})
    assert isinstance(http, HttpSource)
    with pytest.raises(SecretSourceError, match="unknown secret source kind"):
        build_secret_source({"kind": "carrier-pigeon"})
