"""Bad input met *during* a real rotation: a failing secret source, malformed Redox replies.

Each case runs a real worker against the sandbox over HTTP and must end cleanly: exactly one
terminal event naming the error class, no retry of a permanent error, nothing half-done
(no credential left behind, the destination still on its old credential) and no secret
anywhere in the event.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from devstack.rig import Rig, outcome_of
from worker.trigger import request_rotation

pytestmark = pytest.mark.integration

#: Each failing secret source as a registry ``secret_source`` value (tmp scripts filled in).
SOURCES = {
    "command not found": '{ kind = "command", command = ["/nonexistent/secret-tool"] }',
    "non-zero exit": '{ kind = "command", command = ["PY", "EXIT3"] }',
    "bad JSON": '{ kind = "command", command = ["PY", "BADJSON"] }',
    "timeout": '{ kind = "command", command = ["PY", "SLOW"], timeout = "1s" }',
    "http unreachable": (
        '{ kind = "http", url = "http://127.0.0.1:9/rotate", token_env = "SOURCE_TOKEN" }'
    ),
}
SCRIPTS = {
    "EXIT3": "import sys; sys.stderr.write('vault sealed\\n'); sys.exit(3)",
    "BADJSON": "print('{not json')",
    "SLOW": "import time; time.sleep(30)",
}


def write_registry(rig: Rig, tmp_path: Path, sources: dict[str, str]) -> Path:
    """A registry giving each destination its (failing) secret source."""
    environment = rig.control.state()["environments"][0]["id"]
    lines = ["[defaults]", 'interval = "30d"', ""]
    for dest, template in sources.items():
        source = template.replace('"PY"', json.dumps(sys.executable))
        for name, code in SCRIPTS.items():
            script = tmp_path / f"{name.lower()}.py"
            script.write_text(code)
            source = source.replace(f'"{name}"', json.dumps(str(script)))
        lines += ["[[destinations]]", f'id = "{dest}"', f'environment = "{environment}"',
                  f"secret_source = {source}", ""]  # fmt: skip
    path = tmp_path / "registry.toml"
    path.write_text("\n".join(lines))
    return path


def assert_nothing_done(rig: Rig, dest: str, old_id: str) -> None:
    """The destination keeps its old credential and no new credential exists for it."""
    assert rig.destination(dest)["authCredential"] == old_id
    name = rig.destination(dest)["name"]
    assert [c for c in rig.credentials().values() if c["name"].startswith(f"{name}-rot-")] == []


def test_secret_source_failures_fail_cleanly(rig: Rig, tmp_path: Path) -> None:
    """Each broken secret source: SecretSourceError, no POST, destination untouched."""
    dests = rig.seed(len(SOURCES))
    by_dest = dict(zip(dests, SOURCES.values(), strict=True))
    registry = write_registry(rig, tmp_path, by_dest)
    synced = rig.rotator("registry", "sync", str(registry))
    assert synced.returncode == 0, synced.stderr
    olds = {d: rig.destination(d)["authCredential"] for d in dests}
    # Workers read secret sources from the registry file itself, never from Redis.
    rig.worker(
        concurrency=3,
        env={"ROTATOR_REGISTRY_PATH": str(registry), "SOURCE_TOKEN": "not-a-real-token"},
    )
    ids = {}
    for dest in dests:
        result = rig.rotator("rotate", dest, "--wait", "--json", "--timeout", "60")
        assert result.returncode == 1, (result.stdout, result.stderr)  # a failed rotation
        assert "Traceback" not in result.stderr
        ids[dest] = json.loads(result.stdout.splitlines()[-1])["rotationId"]

    terminal = rig.terminal_events()
    for dest, case in zip(dests, SOURCES, strict=True):
        (event,) = terminal[ids[dest]]
        # A hook that timed out or printed garbage may have issued a secret, so it is asked
        # to revoke it: the garbage printer does (failed), the slow one times out again (a
        # person must look). The others proved nothing was issued.
        stuck = case == "timeout"
        assert outcome_of(event) == ("needs_attention" if stuck else "failed"), case
        assert event["data"]["error"]["class"] == "SecretSourceError", (case, event)
        assert "\n" not in event["data"]["error"]["message"]
        assert_nothing_done(rig, dest, olds[dest])
        record = rig.store().record(ids[dest])
        assert record is not None and record.attempt == 1, case  # permanent: no task retry
    assert not [e for e in rig.journal() if e["kind"] in ("create_credential", "patch_destination")]
    rig.assert_one_terminal_each(list(ids.values()))


MALFORMATIONS = ("non_json", "missing_payload", "wrong_types", "html", "huge")


def test_malformed_destination_reply_fails_before_any_write(rig: Rig) -> None:
    """GET destination answered with garbage (each kind): failed + BadRedoxResponse, no write."""
    dests = rig.seed(len(MALFORMATIONS))
    olds = {d: rig.destination(d)["authCredential"] for d in dests}
    rig.control.set_faults(malformed=dict(zip(dests, MALFORMATIONS, strict=True)))
    rig.worker(concurrency=3)
    app, store = rig.app(), rig.store()
    ids = [request_rotation(app, store, d, trigger="operator").rotation_id for d in dests]
    outcomes = rig.wait_terminal(ids)
    rig.control.set_faults()
    terminal = rig.terminal_events()
    for dest, rid, kind in zip(dests, ids, MALFORMATIONS, strict=True):
        assert outcomes[rid] == "failed", kind
        assert terminal[rid][0]["data"]["error"]["class"] == "BadRedoxResponse", kind
        assert_nothing_done(rig, dest, olds[dest])
    writes = [e for e in rig.journal() if e["kind"] in ("create_credential", "patch_destination")]
    assert writes == []
    rig.assert_one_terminal_each(ids)


@pytest.mark.parametrize("call", ["get_credential", "create_credential"])
def test_malformed_credential_replies_leave_nothing_half_done(rig: Rig, call: str) -> None:
    """The old credential's GET, or the create reply, is garbage: the rotation fails with
    BadRedoxResponse and a credential Redox made anyway is found by name and removed."""
    rig.worker(concurrency=2)
    app, store = rig.app(), rig.store()
    for kind in MALFORMATIONS:
        (dest,) = rig.seed(1)
        old_id = rig.destination(dest)["authCredential"]
        if call == "get_credential":
            rig.control.set_faults(malformed={f"v1/authcredentials/{old_id}": kind})
        else:  # the create is the only POST to /v1/authcredentials
            rig.control.set_faults(
                malformed={"v1/authcredentials": kind},
                malformed_methods={"v1/authcredentials": ["POST"]},
            )
        rid = request_rotation(app, store, dest, trigger="operator").rotation_id
        outcome = rig.wait_terminal([rid])[rid]
        rig.control.set_faults()
        (event,) = rig.terminal_events()[rid]
        assert event["data"]["error"]["class"] == "BadRedoxResponse", (kind, event["data"])
        assert outcome in ("failed", "rolled_back"), (kind, event["data"])
        assert_nothing_done(rig, dest, old_id)
    rig.assert_one_terminal_each()


def test_an_undo_redox_garbles_too_needs_attention(rig: Rig) -> None:
    """The create reply and the undo's DELETE reply are both garbage: the destination is
    untouched, and the event says a person must look (the credential may still exist)."""
    rig.worker(concurrency=1)
    (dest,) = rig.seed(1)
    old_id = rig.destination(dest)["authCredential"]
    rig.control.set_faults(
        malformed={"v1/authcredentials": "huge"},
        malformed_methods={"v1/authcredentials": ["POST", "DELETE"]},
    )
    rid = request_rotation(rig.app(), rig.store(), dest, trigger="operator").rotation_id
    outcome = rig.wait_terminal([rid])[rid]
    rig.control.set_faults()
    assert outcome == "needs_attention"
    (event,) = rig.terminal_events()[rid]
    assert event["data"]["error"]["class"] == "BadRedoxResponse", event["data"]
    record = rig.store().record(rid)
    assert record is not None and record.get("rollback") == "failed: BadRedoxResponse"
    assert rig.destination(dest)["authCredential"] == old_id
    rig.assert_one_terminal_each([rid])
