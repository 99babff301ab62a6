"""Secret sources: generate, command (a real subprocess) and http (httpx MockTransport), and
building a source from its spec."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from config.errors import ConfigError
from config.secret_sources import CommandSpec, GenerateSpec, HttpSpec
from config.settings import Settings
from worker.errors import SecretSourceError
from worker.secrets.base import IssueRequest, RevokeRequest
from worker.secrets.build import build_source
from worker.secrets.generate import GenerateSource, primary_secret_field
from worker.secrets.hooks import CommandSource, HttpSource

OAUTH = IssueRequest("d-1", "r-1", "e-1", "OAuth_2.0_2-legged", client_id="client-7")
AWS = IssueRequest("d-1", "r-1", "e-1", "AwsSigv4")


def script(tmp_path: Path, body: str) -> list[str]:
    """An executable Python script; returns the command that runs it."""
    path = tmp_path / "source.py"
    path.write_text(f"#!{sys.executable}\nimport json, sys, time\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return [str(path)]


# -- generate ----------------------------------------------------------------------------


@pytest.mark.parametrize("length", [16, 48, 101])
def test_generate_length_and_field(length: int) -> None:
    issued = GenerateSource(length).issue(OAUTH)
    values = issued.values
    assert list(values) == ["clientSecret"] and issued.secret_id is None
    secret = values["clientSecret"].get_secret_value()
    assert len(secret) == length
    again = GenerateSource(length).issue(OAUTH).values["clientSecret"].get_secret_value()
    assert secret != again
    assert secret not in repr(issued)  # never printed


def test_generate_field_per_strategy() -> None:
    assert list(GenerateSource().issue(AWS).values) == ["secretKey"]
    assert primary_secret_field("SMART_Backend") == "clientSecret"
    with pytest.raises(SecretSourceError, match="no default secret field"):
        GenerateSource().issue(IssueRequest("d", "r", "e", "Basic"))


# -- command -----------------------------------------------------------------------------


def test_command_success_with_one_secret(tmp_path: Path) -> None:
    body = (
        "request = json.load(sys.stdin)\n"
        "value = 'S-' + sys.argv[1] + '-' + sys.argv[3] + '-' + request['clientId']\n"
        "print(json.dumps({'secret': value, 'secretId': 'sid-' + request['rotationId']}))"
    )
    issued = CommandSource(script(tmp_path, body)).issue(OAUTH)
    values = {k: v.get_secret_value() for k, v in issued.values.items()}
    assert values == {"clientSecret": "S-issue-r-1-client-7"}
    assert issued.secret_id == "sid-r-1"


def test_command_success_with_named_fields(tmp_path: Path) -> None:
    cmd = script(tmp_path, "print(json.dumps({'secrets': {'accessKey': 'AK', 'secretKey': 'SK'}}))")
    values = CommandSource(cmd).issue(AWS).values
    assert {k: v.get_secret_value() for k, v in values.items()} == {
        "accessKey": "AK",
        "secretKey": "SK",
    }


def revoke_request(**changes: object) -> RevokeRequest:
    values: dict[str, object] = {
        "destination_id": "d-1", "rotation_id": "r-1", "environment_id": "e-1",
        "auth_strategy": "OAuth_2.0_2-legged", "credential_id": "c-9", "client_id": "client-7",
        "secret_id": "sid-1", "keep_secret_ids": ("sid-2",), "reason": "retired",
    }  # fmt: skip
    values.update(changes)
    return RevokeRequest(**values)  # type: ignore[arg-type]


def test_command_revoke_arguments_and_request(tmp_path: Path) -> None:
    out = tmp_path / "args.json"
    body = f"open({str(out)!r}, 'w').write(json.dumps([sys.argv[1:], json.load(sys.stdin)]))"
    assert CommandSource(script(tmp_path, body)).revoke(revoke_request()) == ["sid-1"]
    argv, request = json.loads(out.read_text())
    assert argv == ["revoke", "d-1", "r-1", "c-9", "sid-1"]
    assert request["keepSecretIds"] == ["sid-2"] and request["reason"] == "retired"
    CommandSource(script(tmp_path, body)).revoke(revoke_request(secret_id=None, credential_id=None))
    assert json.loads(out.read_text())[0] == ["revoke", "d-1", "r-1", "-", "-"]


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

    issued = http_source(httpx.MockTransport(reply)).issue(OAUTH)
    assert issued.values["clientSecret"].get_secret_value() == "from-vault"
    (request,) = seen
    assert request.headers["authorization"] == "Bearer tok-123"
    assert json.loads(request.content) == {
        "action": "issue",
        "destinationId": "d-1",
        "rotationId": "r-1",
        "environmentId": "e-1",
        "authStrategy": "OAuth_2.0_2-legged",
        "clientId": "client-7",
    }


def test_http_revoke() -> None:
    bodies: list[dict[str, str]] = []

    def reply(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(204)

    http_source(httpx.MockTransport(reply)).revoke(revoke_request(reason="rolled_back"))
    assert bodies == [
        {
            "action": "revoke", "destinationId": "d-1", "rotationId": "r-1",
            "environmentId": "e-1", "authStrategy": "OAuth_2.0_2-legged", "clientId": "client-7",
            "credentialId": "c-9", "secretId": "sid-1", "keepSecretIds": ["sid-2"],
            "reason": "rolled_back",
        }
    ]  # fmt: skip


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


def test_build_source_per_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(_env_file=None)
    assert isinstance(build_source(GenerateSpec(length=20), settings), GenerateSource)
    assert isinstance(build_source(CommandSpec(command=["x"]), settings), CommandSource)
    monkeypatch.setenv("VAULT_TOKEN", "tok")
    http = build_source(HttpSpec(url="https://v.test", token_env="VAULT_TOKEN"), settings)
    assert isinstance(http, HttpSource)


def test_build_source_refuses_http_and_empty_token_env(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(_env_file=None)
    monkeypatch.setenv("VAULT_TOKEN", "tok")
    with pytest.raises(ConfigError, match="must use https"):
        build_source(HttpSpec(url="http://v.test", token_env="VAULT_TOKEN"), settings)
    sandbox = Settings(_env_file=None, allow_insecure_http=True)
    assert isinstance(
        build_source(HttpSpec(url="http://v.test", token_env="VAULT_TOKEN"), sandbox), HttpSource
    )
    monkeypatch.delenv("VAULT_TOKEN")
    with pytest.raises(ConfigError, match="VAULT_TOKEN"):
        build_source(HttpSpec(url="https://v.test", token_env="VAULT_TOKEN"), settings)
