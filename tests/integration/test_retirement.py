"""Retirement of old credentials against the sandbox: after grace, deferred while in use,
never for what the policy keeps, and the secret source is told to revoke."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from config.settings import load_settings
from devstack.stack import LocalStack
from sandbox.client import SandboxControl
from tests.integration.lifecycle_helpers import (
    completed,
    control,
    credential_ids,
    current_credentials,
    events,
    sandbox_ids,
    stack_factory,
    write_registry,
)
from worker.lifecycle import attach_lifecycle
from worker.retirement import RetirementQueue, retire_due
from worker.runtime import Runtime

pytestmark = pytest.mark.integration
__all__ = ["stack_factory"]

GRACE = 3600.0
RETRY = 600.0
#: A ``command`` hook for an IdP the service has no adapter for: it issues the secret with
#: the (sandbox) Okta API itself and logs every revoke it is asked for.
SECRET_SCRIPT = """
import json, os, sys, urllib.request
body = json.load(sys.stdin)
if sys.argv[2] == "issue":
    org = os.environ["ROTATOR_SECRET_SOURCE__OKTA__ORG_URL"]
    token = os.environ["ROTATOR_SECRET_SOURCE__OKTA__API_TOKEN"]
    request = urllib.request.Request(
        f"{org}/api/v1/apps/{body['clientId']}/credentials/secrets", data=b"{}", method="POST",
        headers={"Authorization": f"SSWS {token}", "Content-Type": "application/json",
                 "Accept": "application/json"},
    )
    made = json.load(urllib.request.urlopen(request, timeout=10))
    print(json.dumps({"secret": made["client_secret"], "secretId": made["id"]}))
else:
    with open(sys.argv[1], "a") as log:
        log.write(" ".join(sys.argv[2:]) + "\\n")
"""


@pytest.fixture
def runtime_of(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[LocalStack], Runtime]]:
    built: list[Runtime] = []

    def make(stack: LocalStack) -> Runtime:
        for name, value in stack.child_env().items():
            if name.startswith("ROTATOR_"):
                monkeypatch.setenv(name, value)
        runtime = Runtime.build(load_settings())
        attach_lifecycle(runtime)
        built.append(runtime)
        return runtime

    yield make
    for runtime in built:
        runtime.close()


def rotate(stack: LocalStack, destination_id: str) -> dict[str, str]:
    result = stack.rotator("rotate", destination_id, "--wait", "--json")
    assert result.returncode == 0, completed(result)
    summary: dict[str, str] = json.loads(result.stdout)
    assert summary["outcome"] == "succeeded"
    return summary


def delete_original_okta_secret(stack: LocalStack, ctl: SandboxControl, credential: str) -> None:
    """What an operator does in Okta's console: deactivate and delete the secret that the
    (foreign, kept) original credential holds."""
    (found,) = [c for c in ctl.state()["credentials"] if c["id"] == credential]
    client_id = found["clientId"]
    app = ctl.idp_app(client_id)
    original = app["secrets"][0]["id"]  # the oldest: the seed's
    okta = ctl.idp_credentials()["okta"]
    url = f"{okta['org_url']}/api/v1/apps/{app['app_id']}/credentials/secrets/{original}"
    headers = {"Authorization": f"SSWS {okta['api_token']}"}
    httpx.post(f"{url}/lifecycle/deactivate", headers=headers).raise_for_status()
    httpx.delete(url, headers=headers).raise_for_status()


def test_retirement_after_grace_deferred_while_in_use_and_per_policy(
    stack_factory: Callable[..., LocalStack],
    runtime_of: Callable[[LocalStack], Runtime],
    tmp_path: Path,
) -> None:
    stack = stack_factory(4, {"ROTATOR_SCHEDULER__RETIRE_RETRY_SECONDS": str(RETRY)})
    ctl = control(stack)
    env_id, (a, b, c, d) = sandbox_ids(ctl)
    script = tmp_path / "secret.py"
    script.write_text(SECRET_SCRIPT)
    revoked_log = tmp_path / "revoked.log"
    command = json.dumps([sys.executable, str(script), str(revoked_log)])
    registry = write_registry(
        tmp_path / "registry.toml", env_id, [a, b, c, d], grace=f"{GRACE:.0f}s",
        extra={b: f'secret_source = {{ kind = "command", command = {command} }}',
               d: 'retire = "created-only"'},
    )  # fmt: skip
    assert stack.rotator("registry", "sync", str(registry)).returncode == 0
    stack.extra_env["ROTATOR_REGISTRY_PATH"] = str(registry)  # sources come from the file
    stack.start_worker("w1", concurrency=2)
    runtime = runtime_of(stack)
    originals = current_credentials(ctl)

    def retire(at: float) -> tuple[int, int]:
        report = retire_due(
            RetirementQueue(runtime.redis, runtime.keys), runtime.redox, runtime.events,
            runtime.sources.source_for, runtime.ledger, retry_seconds=RETRY, now=at,
        )  # fmt: skip
        return report.retired, report.deferred

    for destination in (a, b, d):
        rotate(stack, destination)
    queue = RetirementQueue(runtime.redis, runtime.keys)
    # created-only: d's seeded original was not created by the service, so it is not queued.
    assert {cred for cred, _ in queue.pending()} == {originals[a], originals[b]}

    # Inside the grace period nothing happens.
    assert retire(time.time()) == (0, 0)
    assert {originals[a], originals[b]} <= credential_ids(ctl)

    # c now references b's old credential (an operator reused it in the dashboard).
    ctl.drift(c, originals[b])
    after_grace = time.time() + GRACE + 1
    assert retire(after_grace) == (1, 1)
    existing = credential_ids(ctl)
    assert originals[a] not in existing
    assert originals[b] in existing and originals[d] in existing
    kinds = [(e["type"], e["data"].get("credentialId")) for e in events(stack)]
    assert ("rotator.credential.retired", originals[a]) in kinds
    assert ("rotator.credential.retirement_deferred", originals[b]) in kinds
    deferred = next(e for e in events(stack) if e["type"].endswith("retirement_deferred"))
    assert deferred["data"]["reason"] == "still referenced by a destination"
    assert deferred["subject"] == b

    # Still referenced: the next try (after the retry delay) defers again.
    assert retire(after_grace + RETRY + 1) == (0, 1)
    # Once c moves on, b's old credential goes, and b's command source is told to revoke it.
    ctl.drift(c)
    assert retire(after_grace + 2 * RETRY + 2) == (1, 0)
    assert originals[b] not in credential_ids(ctl)
    revoked = revoked_log.read_text().split()
    assert revoked[0] == "revoke" and revoked[1] == b and revoked[3] == originals[b]
    assert queue.pending() == []

    # d again. Okta holds two secrets per app: the foreign original's (kept, created-only)
    # and the first rotation's, so the IdP refuses a third; a person deletes the original's.
    refused = stack.rotator("rotate", d, "--wait", "--json")
    assert json.loads(refused.stdout)["error"]["class"] == "IdpLimitReached", completed(refused)
    delete_original_okta_secret(stack, ctl, originals[d])
    # Now the old credential is one the service created, so it is retired; the foreign
    # original stays forever.
    second = rotate(stack, d)
    assert [cred for cred, _ in queue.pending()] == [second["oldCredentialId"]]
    assert retire(time.time() + GRACE + 1) == (1, 0)
    existing = credential_ids(ctl)
    assert second["oldCredentialId"] not in existing and originals[d] in existing
    retired = [e for e in events(stack) if e["type"] == "rotator.credential.retired"]
    assert len(retired) == 3
    assert all(e["data"]["environmentId"] == env_id for e in retired)
