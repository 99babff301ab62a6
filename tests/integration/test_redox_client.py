"""RedoxClient against the sandbox over real HTTP: tokens, every call, retries, error mapping."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from config.settings import RedoxSettings, RetrySettings
from sandbox import KeyPair, SandboxConfig, SandboxThread, generate_keypair
from worker.errors import (
    BadRedoxResponse,
    RateLimited,
    RedoxAuthFailed,
    RedoxNotFound,
    RedoxRejected,
    RedoxUnavailable,
)
from worker.redox.client import RedoxClient
from worker.redox.models import ENVELOPE_FIELDS, STRATEGY_FIELDS, NewCredential

pytestmark = pytest.mark.integration

OAUTH = "OAuth_2.0_2-legged"
ORG = 1001
ALLOWED = STRATEGY_FIELDS[OAUTH] + ENVELOPE_FIELDS


@pytest.fixture(scope="module")
def keypair(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return generate_keypair(tmp_path_factory.mktemp("redox-client-keys"))


@pytest.fixture(scope="module")
def sandbox_server(keypair: KeyPair) -> Iterator[SandboxThread]:
    config = SandboxConfig(public_key_pem=keypair.public_key_pem, organization_id=ORG)
    with SandboxThread(config) as server:
        yield server


@pytest.fixture
def sandbox(sandbox_server: SandboxThread) -> SandboxThread:
    """The module's sandbox: no faults, no rate limit, empty state and journal."""
    control = sandbox_server.control
    control.set_faults()
    control.set_rate_limit(None)
    control.reset()
    return sandbox_server


class CountingPacer:
    """A stand-in for the shared Redis limiter that records what the client asks of it."""

    def __init__(self) -> None:
        self.acquired = 0
        self.throttles: list[float | None] = []
        self._lock = threading.Lock()

    def acquire(self) -> float:
        with self._lock:
            self.acquired += 1
        return 0.0

    def throttled(self, retry_after: float | None, limit: str | None = None) -> None:
        self.throttles.append(retry_after)


MakeClient = Callable[..., RedoxClient]


@pytest.fixture
def make_client(sandbox: SandboxThread, keypair: KeyPair) -> Iterator[MakeClient]:
    """Build clients on the sandbox (closed at the end); keywords tune timeouts and retries."""
    made: list[RedoxClient] = []

    def build(
        *,
        pacer: CountingPacer | None = None,
        read_timeout: float = 5.0,
        max_attempts: int = 3,
        max_seconds: float = 10.0,
    ) -> RedoxClient:
        redox = RedoxSettings(
            base_url=sandbox.base_url,
            token_url=sandbox.token_url,
            client_id=sandbox.config.client_id,
            key_id=sandbox.config.key_id,
            private_key_path=keypair.private_key_path,
            allow_insecure_http=True,
            read_timeout=read_timeout,
        )
        retry = RetrySettings(
            max_attempts=max_attempts,
            max_seconds=max_seconds,
            backoff_initial=0.01,
            backoff_max=0.05,
        )
        client = RedoxClient(redox, retry, pacer=pacer)
        made.append(client)
        return client

    yield build
    for client in made:
        client.close()


def by_kind(sandbox: SandboxThread) -> dict[str, int]:
    counts: dict[str, int] = sandbox.control.journal()["summary"]["by_kind"]
    return counts


def by_kind_status(sandbox: SandboxThread) -> dict[str, int]:
    counts: dict[str, int] = sandbox.control.journal()["summary"]["by_kind_status"]
    return counts


def settled_count(sandbox: SandboxThread, kind: str, at_least: int) -> int:
    """The journal count of ``kind`` once ``at_least`` entries are in (hung requests are
    recorded when the sandbox notices the client left, a moment after the client gave up)."""
    deadline = time.monotonic() + 10
    count = by_kind(sandbox).get(kind, 0)
    while count < at_least and time.monotonic() < deadline:
        time.sleep(0.05)
        count = by_kind(sandbox).get(kind, 0)
    return count


def env_id(sandbox: SandboxThread) -> str:
    found: str = sandbox.control.state()["environments"][0]["id"]
    return found


def new_oauth(sandbox: SandboxThread, name: str, secret: str) -> NewCredential:
    return NewCredential(
        name=name,
        environment_id=env_id(sandbox),
        auth_strategy=OAUTH,
        organization=ORG,
        values={
            "grantType": "client_credentials",
            "url": "https://auth.example.test/oauth2/token",
            "clientId": f"{name}-client",
        },
        secrets={"clientSecret": SecretStr(secret)},
    )


# -- tokens -----------------------------------------------------------------------------


def test_one_token_serves_many_calls(sandbox: SandboxThread, make_client: MakeClient) -> None:
    [dest] = sandbox.control.seed(1)
    client = make_client()
    for _ in range(20):
        assert client.get_destination(dest).id == dest
    assert sandbox.control.state()["tokens_issued"] == 1
    counts = by_kind(sandbox)
    assert counts["token"] == 1
    assert counts["get_destination"] == 20
    assert client.tokens.fetched == 1


def test_threads_sharing_a_client_fetch_one_token(
    sandbox: SandboxThread, make_client: MakeClient
) -> None:
    [dest] = sandbox.control.seed(1)
    client = make_client()
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work() -> None:
        try:
            start.wait()
            for _ in range(5):
                client.get_destination(dest)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert by_kind(sandbox) == {"token": 1, "get_destination": 40}


def test_expired_token_is_refreshed_once(sandbox: SandboxThread, make_client: MakeClient) -> None:
    client = make_client()
    [dest] = sandbox.control.seed(1)
    client.get_destination(dest)
    sandbox.control.reset()  # the sandbox forgets every token it issued
    [dest] = sandbox.control.seed(1)
    assert client.get_destination(dest).id == dest
    assert by_kind_status(sandbox) == {
        "get_destination:401": 1,
        "token:200": 1,
        "get_destination:200": 1,
    }


def test_second_401_is_permanent(sandbox: SandboxThread, make_client: MakeClient) -> None:
    [dest] = sandbox.control.seed(1)
    sandbox.control.set_faults(permanent={dest: 401})
    client = make_client()
    with pytest.raises(RedoxAuthFailed) as caught:
        client.get_destination(dest)
    assert caught.value.status == 401
    assert by_kind_status(sandbox) == {"token:200": 2, "get_destination:401": 2}


def test_unknown_key_id_is_refused_without_retry(sandbox: SandboxThread, keypair: KeyPair) -> None:
    redox = RedoxSettings(
        base_url=sandbox.base_url,
        token_url=sandbox.token_url,
        client_id=sandbox.config.client_id,
        key_id="not-the-registered-kid",
        private_key_path=keypair.private_key_path,
        allow_insecure_http=True,
    )
    client = RedoxClient(redox, RetrySettings(max_attempts=3, backoff_initial=0.01))
    try:
        with pytest.raises(RedoxAuthFailed, match="Public key not found"):
            client.list_auth_strategies()
    finally:
        client.close()
    assert by_kind(sandbox) == {"token": 1}


# -- every method -----------------------------------------------------------------------


def test_every_method_round_trips(sandbox: SandboxThread, make_client: MakeClient) -> None:
    dest_id, other_id = sandbox.control.seed(2)
    client = make_client()

    environments = client.list_environments(ORG)
    assert [e.id for e in environments] == [env_id(sandbox)]
    assert environments[0].environment_flag == "Development"
    environment = environments[0].id

    destinations = client.list_destinations(environment)
    assert sorted(d.id for d in destinations) == sorted([dest_id, other_id])
    dest = client.get_destination(dest_id)
    assert dest.environment_id == environment
    old_cred = dest.auth_credential
    assert old_cred is not None

    credentials = client.list_auth_credentials(environment)
    assert old_cred in {c.id for c in credentials}
    fetched = client.get_auth_credential(old_cred)
    assert fetched.auth_strategy == OAUTH
    assert fetched.organization == ORG
    assert "clientSecret" not in fetched.strategy_values(STRATEGY_FIELDS[OAUTH])

    strategies = client.list_auth_strategies()
    assert strategies[OAUTH] == STRATEGY_FIELDS[OAUTH]
    assert strategies["AwsSigv4"] == STRATEGY_FIELDS["AwsSigv4"]

    created = client.create_auth_credential(new_oauth(sandbox, "rot-new", "s3cr3t-new"), ALLOWED)
    assert created.name == "rot-new"
    assert created.environment_id == environment
    assert sandbox.control.secrets()[created.id] == {"clientSecret": "s3cr3t-new"}

    switched = client.update_destination(dest_id, auth_credential=created.id)
    assert switched.auth_credential == created.id
    assert client.get_destination(dest_id).auth_credential == created.id

    client.delete_auth_credential(old_cred)
    assert old_cred not in {c["id"] for c in sandbox.control.state()["credentials"]}
    with pytest.raises(RedoxNotFound):
        client.get_auth_credential(old_cred)
    assert by_kind(sandbox)["token"] == 1


def test_delete_of_a_credential_in_use_is_refused_once(
    sandbox: SandboxThread, make_client: MakeClient
) -> None:
    [dest] = sandbox.control.seed(1)
    client = make_client()
    cred = client.get_destination(dest).auth_credential
    assert cred is not None
    with pytest.raises(RedoxRejected) as caught:
        client.delete_auth_credential(cred)
    assert caught.value.status == 409
    assert "in use" in str(caught.value)
    assert by_kind(sandbox)["delete_credential"] == 1


# -- retries ----------------------------------------------------------------------------


def test_503_is_retried_up_to_max_attempts(sandbox: SandboxThread, make_client: MakeClient) -> None:
    [dest] = sandbox.control.seed(1)
    other = sandbox.control.state()["credentials"][0]["id"]
    sandbox.control.set_faults(p503=1.0)
    client = make_client(max_attempts=3)
    with pytest.raises(RedoxUnavailable) as caught:
        client.update_destination(dest, auth_credential=other)
    assert caught.value.status == 503
    assert by_kind_status(sandbox) == {"token:200": 1, "patch_destination:503": 3}


def test_429_is_retried_and_reported_to_the_pacer(
    sandbox: SandboxThread, make_client: MakeClient
) -> None:
    [dest] = sandbox.control.seed(1)
    sandbox.control.set_faults(p429=1.0)
    pacer = CountingPacer()
    client = make_client(pacer=pacer, max_attempts=4)
    with pytest.raises(RateLimited):
        client.get_destination(dest)
    assert by_kind_status(sandbox) == {"token:200": 1, "get_destination:429": 4}
    assert pacer.throttles == [None] * 4  # no Retry-After configured
    assert pacer.acquired == 5


def test_hang_past_read_timeout_is_retried(sandbox: SandboxThread, make_client: MakeClient) -> None:
    [dest] = sandbox.control.seed(1)
    sandbox.control.set_faults(p_hang=1.0, hang_seconds=3.0)
    client = make_client(read_timeout=0.3, max_attempts=3)
    with pytest.raises(RedoxUnavailable, match="timed out"):
        client.get_destination(dest)
    assert settled_count(sandbox, "get_destination", 3) == 3
    assert by_kind(sandbox)["token"] == 1


def test_retry_after_is_honoured(sandbox: SandboxThread, make_client: MakeClient) -> None:
    [dest] = sandbox.control.seed(1)
    pacer = CountingPacer()
    client = make_client(pacer=pacer, max_attempts=3)
    # Two requests per second: the token and the first GET fit, the second GET gets a 429
    # whose Retry-After (1 s) is the only wait after which the window has room again.
    sandbox.control.set_rate_limit(2, 1.0, send_retry_after=True)
    client.get_destination(dest)
    assert client.get_destination(dest).id == dest
    entries = [e for e in sandbox.control.journal()["entries"] if e["kind"] == "get_destination"]
    assert [e["status"] for e in entries] == [200, 429, 200]
    assert pacer.throttles == [1.0]
    assert entries[2]["ts"] - entries[1]["ts"] >= 0.9  # waited Retry-After, not the 10 ms backoff


def test_token_429_is_retried_and_reported(sandbox: SandboxThread, make_client: MakeClient) -> None:
    pacer = CountingPacer()
    client = make_client(pacer=pacer)
    sandbox.control.set_rate_limit(2, 1.0, send_retry_after=True)
    for _ in range(2):  # use up the window with unauthenticated requests (401s)
        httpx.get(sandbox.base_url + "/v1/authcredentials/strategies")
    assert OAUTH in client.list_auth_strategies()
    statuses = [(e["kind"], e["status"]) for e in sandbox.control.journal()["entries"]]
    assert statuses == [
        ("list_strategies", 401),
        ("list_strategies", 401),
        ("token", 429),
        ("token", 200),
        ("list_strategies", 200),
    ]
    assert pacer.throttles == [1.0]
    assert pacer.acquired == 3  # token refused, token issued, the GET


@pytest.mark.parametrize("status", [400, 403, 404, 422])
def test_permanent_statuses_are_not_retried(
    sandbox: SandboxThread, make_client: MakeClient, status: int
) -> None:
    [dest] = sandbox.control.seed(1)
    other = sandbox.control.state()["credentials"][0]["id"]
    sandbox.control.set_faults(permanent={dest: status}, permanent_methods={dest: ["PATCH"]})
    client = make_client(max_attempts=5)
    with pytest.raises(RedoxRejected) as caught:
        client.update_destination(dest, auth_credential=other)
    assert caught.value.status == status
    assert isinstance(caught.value, RedoxNotFound) == (status == 404)
    assert by_kind_status(sandbox) == {"token:200": 1, f"patch_destination:{status}": 1}


def test_real_rejections_are_not_retried(sandbox: SandboxThread, make_client: MakeClient) -> None:
    [dest] = sandbox.control.seed(1)
    client = make_client(max_attempts=5)
    with pytest.raises(RedoxRejected) as unusable:  # 422: no such credential
        client.update_destination(dest, auth_credential="no-such-credential")
    assert unusable.value.status == 422
    assert "authCredential" in str(unusable.value)
    with pytest.raises(RedoxNotFound):
        client.get_destination("no-such-destination")
    bad_env = new_oauth(sandbox, "rot-x", "s").model_copy(update={"environment_id": "nope"})
    with pytest.raises(RedoxRejected) as invalid:  # 400: unknown environment
        client.create_auth_credential(bad_env, ALLOWED)
    assert invalid.value.status == 400
    assert by_kind_status(sandbox) == {
        "token:200": 1,
        "patch_destination:422": 1,
        "get_destination:404": 1,
        "create_credential:400": 1,
    }


def test_create_is_attempted_once_on_503(sandbox: SandboxThread, make_client: MakeClient) -> None:
    sandbox.control.seed(1)
    sandbox.control.set_faults(p503=1.0)
    client = make_client(max_attempts=5)
    with pytest.raises(RedoxUnavailable):
        client.create_auth_credential(new_oauth(sandbox, "rot-once", "s3cr3t"), ALLOWED)
    assert by_kind_status(sandbox) == {"token:200": 1, "create_credential:503": 1}


def test_undocumented_field_is_refused_before_sending(
    sandbox: SandboxThread, make_client: MakeClient
) -> None:
    sandbox.control.seed(1)
    client = make_client()
    good = new_oauth(sandbox, "rot-extra", "s3cr3t")
    extra = good.model_copy(update={"values": {**good.values, "webhookSecretHeader": "x"}})
    with pytest.raises(ValueError, match="webhookSecretHeader"):
        client.create_auth_credential(extra, ALLOWED)
    assert "create_credential" not in by_kind(sandbox)


# -- malformed replies ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("non_json", "not JSON (application/json)"),
        ("missing_payload", "no payload object"),
        ("wrong_types", "destination"),
        ("html", "not JSON (text/html)"),
        ("huge", "reply larger than"),
    ],
)
def test_malformed_reply_is_a_clear_bad_response(
    sandbox: SandboxThread, make_client: MakeClient, kind: str, expected: str
) -> None:
    [dest] = sandbox.control.seed(1)
    sandbox.control.set_faults(malformed={dest: kind})
    client = make_client(max_attempts=3)
    with pytest.raises(BadRedoxResponse) as caught:
        client.get_destination(dest)
    message = str(caught.value)
    assert expected in message
    assert dest in message
    assert "\n" not in message and len(message) < 200
    assert by_kind(sandbox)["get_destination"] == 1


@pytest.mark.parametrize("kind", ["wrong_types", "missing_payload"])
@pytest.mark.parametrize(
    "call",
    ["list_destinations", "list_auth_credentials", "list_strategies", "list_environments"],
)
def test_malformed_lists_are_bad_responses(
    sandbox: SandboxThread, make_client: MakeClient, kind: str, call: str
) -> None:
    sandbox.control.seed(2)
    environment = env_id(sandbox)
    sandbox.control.set_faults(malformed={"*": kind})
    client = make_client()
    calls: dict[str, Callable[[], Any]] = {
        "list_destinations": lambda: client.list_destinations(environment),
        "list_auth_credentials": lambda: client.list_auth_credentials(environment),
        "list_strategies": client.list_auth_strategies,
        "list_environments": lambda: client.list_environments(ORG),
    }
    with pytest.raises(BadRedoxResponse) as caught:
        calls[call]()
    assert "\n" not in str(caught.value)


# -- secrets ----------------------------------------------------------------------------


def test_secrets_stay_out_of_reprs_and_logs(
    sandbox: SandboxThread, make_client: MakeClient, keypair: KeyPair
) -> None:
    dest_id, other_id = sandbox.control.seed(2)
    secret = "s3cr3t-value-that-must-not-leak"
    credential = new_oauth(sandbox, "rot-leak", secret)
    assert secret not in repr(credential) and secret not in str(credential)
    client = make_client(max_attempts=2)
    raised: list[str] = []
    with capture_logs() as logs:
        created = client.create_auth_credential(credential, ALLOWED)
        client.update_destination(dest_id, auth_credential=created.id)
        first_token = client.tokens.token()
        sandbox.control.set_faults(p503=1.0)
        with pytest.raises(RedoxUnavailable) as unavailable:
            client.get_destination(dest_id)
        raised.append(str(unavailable.value))
        sandbox.control.set_faults(permanent={other_id: 401})
        with pytest.raises(RedoxAuthFailed) as refused:
            client.get_destination(other_id)
        raised.append(str(refused.value))
    token = client.tokens.token()
    text = repr(logs) + " ".join(raised) + repr(client) + repr(client.tokens) + repr(created)
    assert logs, "expected the retries and token fetches to be logged"
    assert first_token != token
    leaks = [secret, first_token, token, keypair.private_key_path.read_text().splitlines()[1]]
    leaks += [v for values in sandbox.control.secrets().values() for v in values.values()]
    for value in leaks:
        assert value not in text
