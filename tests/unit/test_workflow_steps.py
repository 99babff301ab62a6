"""RotationWorkflow + RotationSteps without Celery: the in-process sandbox over real HTTP,
a real redis-server, a real RedoxClient. The secret source is the ``generate`` kind with a
passing rehearsal (a stand-in through the SelfRehearsing seam: this sandbox has no IdP; the
IdP side is proven end to end in tests/integration/test_idp_rotation.py); no watch."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from config.settings import RedoxSettings, RetrySettings, Settings, VerifySettings
from sandbox import KeyPair, SandboxConfig, SandboxThread, generate_keypair
from worker import guard
from worker.errors import DriftDetected, LockLost, SecretSourceError, TransientError
from worker.redox.client import RedoxClient
from worker.rotation.outcomes import Finisher
from worker.rotation.secret_steps import SecretSteps
from worker.rotation.steps import RotationSteps, StrategyCatalog, credential_name
from worker.rotation.workflow import RotationWorkflow
from worker.secrets.base import IdpSecret, IssuedSecret, IssueRequest, RevokeRequest, SecretSource
from worker.secrets.generate import GenerateSource
from worker.store.credentials import CredentialLedger
from worker.store.destinations import DestinationStates
from worker.store.keys import Keys
from worker.store.records import RotationRecord, RotationStore
from worker.watch.store import WatchStore

RETRY = RetrySettings(max_attempts=2, max_seconds=5, backoff_initial=0.01, backoff_max=0.02)


class Gate:
    """A fence that can be closed (as when another worker takes the lease over)."""

    KEY = "test:gate"

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.open = True
        self.checks = 0

    @property
    def open(self) -> bool:
        return bool(self.client.get(self.KEY) == b"open" or self.client.get(self.KEY) == "open")

    @open.setter
    def open(self, value: bool) -> None:
        self.client.set(self.KEY, "open" if value else "closed")

    def proof(self) -> tuple[list[str], list[str]]:
        return [self.KEY], ["open"]

    def check(self) -> None:
        self.checks += 1
        if not self.open:
            raise LockLost("taken over")

    def write_fenced(self, key: str | None, mapping: dict[str, str]) -> None:
        self.check()
        if key is not None and mapping:
            self.client.hset(key, mapping=dict(mapping))  # type: ignore[arg-type]


class RehearsedGenerate(GenerateSource):
    """``generate`` whose rehearsal passes (this sandbox has no IdP to ask)."""

    def rehearse(
        self, issued: IssuedSecret, fields: dict[str, Any], *, budget_seconds: float
    ) -> None:
        """Nothing to ask."""


class BrokenSource:
    kind = "broken"
    manages_secrets = False

    def existing(self, client_id: str) -> list[IdpSecret]:
        return []

    def issue(self, request: IssueRequest) -> IssuedSecret:
        raise SecretSourceError("vault sealed")

    def revoke(self, request: RevokeRequest) -> list[str]:
        return []


@pytest.fixture(scope="module")
def keypair(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return generate_keypair(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def server(keypair: KeyPair) -> Iterator[SandboxThread]:
    config = SandboxConfig(public_key_pem=keypair.public_key_pem, environments={"Development": 1})
    with SandboxThread(config) as running:
        yield running


@pytest.fixture
def sandbox(server: SandboxThread) -> SandboxThread:
    server.control.set_faults()
    server.control.reset()
    return server


@pytest.fixture
def redox(sandbox: SandboxThread, keypair: KeyPair) -> Iterator[RedoxClient]:
    settings = RedoxSettings(
        base_url=sandbox.base_url,
        token_url=sandbox.token_url,
        client_id="sandbox-client",
        key_id="sandbox-kid",
        private_key_path=Path(keypair.private_key_path),
        allow_insecure_http=True,
    )
    client = RedoxClient(settings, RETRY)
    yield client
    client.close()


class Parts:
    def __init__(self, redox: RedoxClient, client: redis.Redis, sandbox: SandboxThread) -> None:
        self.sandbox = sandbox
        keys = Keys()
        self.store = RotationStore(client, keys, claim_ttl=3600, stream_maxlen=1000)
        ledger = CredentialLedger(client, keys)
        self.steps = RotationSteps(redox, self.store, RETRY, StrategyCatalog(redox), ledger)
        self.after: list[RotationRecord] = []
        self.source: SecretSource = RehearsedGenerate(24)
        settings = Settings(_env_file=None, verify=VerifySettings(watch_seconds=0))
        self.workflow = RotationWorkflow(
            steps=self.steps,
            secrets=SecretSteps(self.store, ledger, client, keys, settings),
            store=self.store,
            source_for=lambda _destination: self.source,
            verify=settings.verify,
            watch=WatchStore(client, keys),
            finisher=Finisher(self.store, self.after.append),
        )
        self.client = client

    def gate(self) -> Gate:
        return Gate(self.client)

    def claim(self, dest: str) -> str:
        return self.store.claim(dest, trigger="operator").rotation_id

    def record(self, rid: str) -> RotationRecord:
        record = self.store.record(rid)
        assert record is not None
        return record

    def journal_kinds(self) -> list[str]:
        entries: list[dict[str, Any]] = self.sandbox.control.journal()["entries"]
        return [e["kind"] for e in entries if e["kind"] != "token"]

    def outcomes(self) -> list[str]:
        rows: Any = self.client.xrange(Keys().events)
        return [str(json.loads(f["event"])["type"]).rsplit(".", 1)[-1] for _, f in rows]

    def dest(self, dest_id: str) -> dict[str, Any]:
        dests = self.sandbox.control.state()["destinations"]
        found: dict[str, Any] = next(d for d in dests if d["id"] == dest_id)
        return found


@pytest.fixture
def parts(redox: RedoxClient, redis_client: redis.Redis, sandbox: SandboxThread) -> Parts:
    return Parts(redox, redis_client, sandbox)


def test_credential_name() -> None:
    rid = "0123abcd-ef01-4000-8000-000000000000"
    assert credential_name("Lab feed", "abcdef123456", rid) == "Lab feed-rot-0123abcd"
    assert credential_name("", "abcdef123456", "0123abcd-ef01") == "abcdef12-rot-0123abcd"
    assert len(credential_name("n" * 200, "x", "0123abcd")) == 80 + len("-rot-0123abcd")


def test_run_succeeds_once_and_a_redelivery_publishes_nothing(parts: Parts) -> None:
    (dest,) = parts.sandbox.control.seed(1)
    rid = parts.claim(dest)
    gate = parts.gate()
    assert parts.workflow.run(rid, dest, gate, final_attempt=False) == "succeeded"
    record = parts.record(rid)
    assert parts.dest(dest)["authCredential"] == record.get("new_credential_id")
    # Fenced writes: the old credential, issue started, the secret id, the name before the
    # POST, and the switch before the PATCH.
    assert gate.checks == 5
    assert parts.workflow.run(rid, dest, gate, final_attempt=False) == "succeeded"  # redelivered
    assert parts.outcomes() == ["started", "switched", "succeeded"]
    assert len(parts.after) == 2 and parts.after[0].outcome == "succeeded"  # idempotent hook
    assert parts.store.created_by_us(str(record.get("new_credential_id")))
    assert parts.journal_kinds() == [
        "get_destination", "get_credential", "create_credential", "get_destination",
        "patch_destination",
    ]  # fmt: skip


def test_a_lost_create_reply_finds_its_own_credential_by_name(parts: Parts) -> None:
    (dest,) = parts.sandbox.control.seed(1)
    rid = parts.claim(dest)
    _, _, old_id = parts.steps.read(parts.record(rid), parts.gate())
    old = parts.steps.old_credential(old_id)
    issued = parts.source.issue(IssueRequest(dest, rid, "env", old.strategy))
    first = parts.steps.create(parts.record(rid), old, issued, "generate", parts.gate())
    parts.store.write(parts.record(rid), new_credential_id="")  # as if the reply was lost
    assert parts.steps.new_credential(parts.record(rid)) == first  # found by its unique name
    assert parts.journal_kinds().count("create_credential") == 1


def test_drift_is_detected_and_never_overwritten(parts: Parts) -> None:
    (dest,) = parts.sandbox.control.seed(1)
    rid = parts.claim(dest)
    parts.steps.read(parts.record(rid), parts.gate())  # records the old credential
    foreign = parts.sandbox.control.drift(dest)
    with pytest.raises(DriftDetected):
        parts.steps.read(parts.record(rid), parts.gate())
    assert parts.workflow.run(rid, dest, parts.gate(), final_attempt=False) == "failed"
    assert parts.dest(dest)["authCredential"] == foreign
    assert parts.outcomes() == ["started", "drift_detected", "failed"]


def test_undo_after_the_switch_restores_the_old_credential(parts: Parts) -> None:
    (dest,) = parts.sandbox.control.seed(1)
    old = parts.dest(dest)["authCredential"]
    rid = parts.claim(dest)
    assert parts.workflow.run(rid, dest, parts.gate(), final_attempt=False) == "succeeded"
    new = parts.record(rid).get("new_credential_id")
    record = parts.record(rid)
    done = parts.steps.switch_back(record, parts.gate())
    done += parts.steps.discard_new(record, parts.gate())
    assert done == [f"switched back to {old}", f"deleted {new}"]
    assert parts.dest(dest)["authCredential"] == old
    ids = [c["id"] for c in parts.sandbox.control.state()["credentials"]]
    assert ids == [old]


def test_transient_errors_retry_then_need_attention(parts: Parts) -> None:
    (dest,) = parts.sandbox.control.seed(1)
    rid = parts.claim(dest)
    parts.sandbox.control.set_faults(p503=1.0)
    with pytest.raises(TransientError):
        parts.workflow.run(rid, dest, parts.gate(), final_attempt=False)
    assert parts.record(rid).outcome is None
    assert parts.workflow.run(rid, dest, parts.gate(), final_attempt=True) == "needs_attention"
    state = DestinationStates(parts.client, Keys()).get(dest)
    assert state.needs_attention and state.last_outcome == "needs_attention"
    assert parts.record(rid).attempt == 2
    assert parts.outcomes() == ["started", "needs_attention"]


def test_lost_lease_stops_before_any_write(parts: Parts) -> None:
    (dest,) = parts.sandbox.control.seed(1)
    rid = parts.claim(dest)
    gate = parts.gate()
    gate.open = False
    with pytest.raises(LockLost):
        parts.workflow.run(rid, dest, gate, final_attempt=True)
    assert "create_credential" not in parts.journal_kinds()
    assert parts.record(rid).outcome is None
    assert parts.outcomes() == ["started"]


def test_secret_source_failure_fails_without_leftovers(parts: Parts) -> None:
    (dest,) = parts.sandbox.control.seed(1)
    old = parts.dest(dest)["authCredential"]
    rid = parts.claim(dest)
    parts.source = BrokenSource()
    assert parts.workflow.run(rid, dest, parts.gate(), final_attempt=False) == "failed"
    assert parts.dest(dest)["authCredential"] == old
    assert [c["id"] for c in parts.sandbox.control.state()["credentials"]] == [old]
    assert parts.record(rid).get("error_class") == "SecretSourceError"


def test_an_unexpected_error_ends_in_needs_attention_once(parts: Parts) -> None:
    """A bug (here: a source raising ValueError) never leaves a rotation running."""
    (dest,) = parts.sandbox.control.seed(1)
    rid = parts.claim(dest)

    class Buggy(RehearsedGenerate):
        def issue(self, request: IssueRequest) -> IssuedSecret:
            raise ValueError("field 'foo' is not documented for OAuth_2.0_2-legged")

    parts.source = Buggy()
    assert parts.workflow.run(rid, dest, parts.gate(), final_attempt=False) == "needs_attention"
    assert parts.record(rid).get("error_class") == "ValueError"
    assert parts.outcomes() == ["started", "needs_attention"]
    assert parts.store.active(dest) is None  # the claim is released


def test_a_rehearsal_longer_than_what_is_left_of_the_run_is_cut_to_fit(parts: Parts) -> None:
    """A refused rehearsal must end as RehearsalFailed inside the run (a clean rollback),
    not as the run's time-out: its budget is at most 3/4 of what the run has left."""
    settings = Settings(_env_file=None, verify=VerifySettings(rehearsal_seconds=120))
    ledger = CredentialLedger(parts.client, Keys())
    steps = SecretSteps(parts.store, ledger, parts.client, Keys(), settings)
    assert steps._rehearsal_budget() == 120  # outside a run: the setting
    with guard.guarded_run(8.0, None):
        assert 5.0 < steps._rehearsal_budget() <= 6.0
    with guard.guarded_run(240.0, None):
        assert steps._rehearsal_budget() == 120
