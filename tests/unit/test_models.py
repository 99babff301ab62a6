"""Redox models: tolerant when reading replies, strict about what a request body may carry."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from worker.errors import BadRedoxResponse
from worker.redox.models import (
    ENVELOPE_FIELDS,
    STRATEGY_FIELDS,
    AuthCredential,
    Destination,
    Environment,
    NewCredential,
    parse_payload,
    pick_list,
    pick_object,
    validate_model,
)

OAUTH = "OAuth_2.0_2-legged"
ALLOWED = STRATEGY_FIELDS[OAUTH] + ENVELOPE_FIELDS
SECRET = "very-secret-client-secret-value"


def credential(**changes: Any) -> NewCredential:
    fields: dict[str, Any] = {
        "name": "rot-1",
        "environment_id": "env-1",
        "auth_strategy": OAUTH,
        "organization": 1001,
        "values": {"clientId": "c-1", "url": "https://auth.example.test/token"},
        "secrets": {"clientSecret": SecretStr(SECRET)},
    }
    fields.update(changes)
    return NewCredential(**fields)


def test_body_has_envelope_values_and_revealed_secrets() -> None:
    assert credential().body(ALLOWED) == {
        "name": "rot-1",
        "environmentId": "env-1",
        "authStrategy": OAUTH,
        "organization": 1001,
        "clientId": "c-1",
        "url": "https://auth.example.test/token",
        "clientSecret": SECRET,
    }


def test_body_leaves_out_an_unknown_organization() -> None:
    assert "organization" not in credential(organization=None).body(ALLOWED)


@pytest.mark.parametrize(
    "changes",
    [
        {"values": {"webhookSecretHeader": "x"}},
        {"secrets": {"apiKey": SecretStr("x")}},
    ],
)
def test_undocumented_fields_are_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"not documented for OAuth_2\.0_2-legged") as caught:
        credential(**changes).body(ALLOWED)
    assert SECRET not in str(caught.value)


def test_secret_field_in_plain_values_is_refused() -> None:
    leaky = credential(values={"clientSecret": SECRET}, secrets={})
    with pytest.raises(ValueError, match="must be passed in secrets") as caught:
        leaky.body(ALLOWED)
    assert SECRET not in str(caught.value)


def test_unknown_constructor_argument_is_refused() -> None:
    with pytest.raises(ValueError, match="extra"):
        credential(webhook="x")


def test_secrets_never_show_in_repr_or_dump() -> None:
    new = credential()
    assert SECRET not in repr(new)
    assert SECRET not in str(new)
    assert SECRET not in new.model_dump_json()
    assert SECRET not in repr(new.model_dump())


def test_destination_is_tolerant() -> None:
    dest = Destination.model_validate(
        {
            "id": "d-1",
            "authCredential": "",
            "environment": {"id": "env-1", "environmentFlag": "Staging"},
            "setupState": None,
            "newField": 1,
        }
    )
    assert dest.auth_credential is None
    assert dest.environment_id == "env-1"
    assert dest.model_extra == {"setupState": None, "newField": 1}
    assert Destination.model_validate({"id": "d-2"}).environment_id is None


def test_auth_credential_normalises_ids_and_organization() -> None:
    cred = AuthCredential.model_validate(
        {
            "id": 42,
            "organization": {"id": "1001"},
            "authStrategy": OAUTH,
            "clientId": "c-1",
            "hasClientSecret": True,
            "clientSecret": "should-never-be-returned",
            "scopes": None,
        }
    )
    assert cred.id == "42"
    assert cred.organization == 1001
    assert cred.strategy_values(STRATEGY_FIELDS[OAUTH]) == {"clientId": "c-1"}


def test_parse_payload() -> None:
    assert parse_payload({"meta": {}, "payload": {"a": 1}}, "x") == {"a": 1}
    with pytest.raises(BadRedoxResponse, match=r"^GET x: reply is not a JSON object$"):
        parse_payload([1], "GET x")
    with pytest.raises(BadRedoxResponse, match=r"^GET x: reply has no payload object$"):
        parse_payload({"payload": "text"}, "GET x")


def test_pick_object_accepts_each_wrapper() -> None:
    assert pick_object({"credential": {"id": "a"}}, ("credential", "authCredential"), "w") == {
        "id": "a"
    }
    assert pick_object({"authCredential": {"id": "b"}}, ("credential", "authCredential"), "w") == {
        "id": "b"
    }
    assert pick_object({"id": "c"}, ("credential",), "w") == {"id": "c"}
    with pytest.raises(BadRedoxResponse, match="payload has none of credential, authCredential"):
        pick_object({"other": 1}, ("credential", "authCredential"), "w")


def test_pick_list_requires_objects() -> None:
    assert pick_list({"items": [{"id": "a"}]}, "items", "w") == [{"id": "a"}]
    for bad in ({"items": {"id": "a"}}, {"items": ["a"]}, {}):
        with pytest.raises(BadRedoxResponse, match=r"payload\.items is not a list of objects"):
            pick_list(bad, "items", "w")


def test_validate_model_gives_one_line() -> None:
    with pytest.raises(BadRedoxResponse) as caught:
        validate_model(Environment, {"id": 12345, "name": ["x"]}, "list environments")
    message = str(caught.value)
    assert message.startswith("list environments: id: ")
    assert "\n" not in message
