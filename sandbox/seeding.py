"""Seeding destinations, optionally with apps at one of the fake IdPs.

Without an IdP, seeding is :meth:`SandboxState.seed` as before (credentials for a token URL no
IdP knows, no deliveries). With ``idp="okta"`` or ``"entra"`` each credential gets an IdP app
with ONE active secret; the credential (in a Development environment, so http URLs are
allowed) points at this sandbox's token endpoint of that IdP, and the destinations' deliveries
are enabled. ``shared`` makes all destinations of one seed reference one credential (one app).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sandbox.runtime import SandboxRuntime

__all__ = ["seed_destinations"]

OKTA_SCOPE = "redox.deliver"
FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class _Issued:
    app_id: str
    client_id: str
    secret_id: str


def _values(
    runtime: SandboxRuntime, idp: str, base_url: str, name: str, issued: list[_Issued]
) -> dict[str, str | int]:
    state = runtime.idp
    common: dict[str, str | int] = {
        "grantType": "client_credentials",
        "grantTypeName": "grant_type",
        "clientIdName": "client_id",
        "clientSecretName": "client_secret",
        "contentType": FORM,
    }
    if idp == "okta":
        okta = state.create_okta_app(f"{name}-app", scopes=[OKTA_SCOPE])
        secret = state.add_okta_secret(okta, delay=0)
        issued.append(_Issued(okta.id, okta.client_id, secret.id))
        return {
            **common,
            "url": f"{base_url}/idp/okta/oauth2/default/v1/token",
            "clientId": okta.client_id,
            "clientSecret": secret.value,
            "scopes": OKTA_SCOPE,
        }
    entra = state.create_entra_app(f"{name}-app")
    password = state.add_password(entra, "initial", delay=0)
    issued.append(_Issued(entra.app_id, entra.app_id, password.key_id))
    return {
        **common,
        "url": f"{base_url}/idp/entra/login/{state.entra_tenant_id}/oauth2/v2.0/token",
        "clientId": entra.app_id,
        "clientSecret": password.value,
        "scopes": f"api://{entra.app_id}/.default",
        "noBasic": "true",  # client_secret_post, Entra's documented form (§B7)
    }


def seed_destinations(
    runtime: SandboxRuntime,
    count: int,
    *,
    environment_flag: str | None = None,
    idp: str | None = None,
    shared: bool = False,
    deliveries: bool | None = None,
    base_url: str | None = None,
    environment_id: str | None = None,
) -> dict[str, Any]:
    """Seed ``count`` destinations; returns ids, credential ids and the IdP apps made.

    ``deliveries`` (default: on with an IdP, off without) enables their simulated deliveries.
    ``base_url`` defaults to the runtime's; an IdP seed needs one (ValueError otherwise).
    """
    state = runtime.state
    issued: list[_Issued] = []
    if idp is None:
        ids = state.seed(count, environment_flag, shared=shared, environment_id=environment_id)
    else:
        if idp not in ("okta", "entra"):
            raise ValueError("idp must be okta or entra")
        if environment_flag not in (None, "Development") or (
            environment_id is not None
            and state.environments.get(environment_id) is not None
            and state.environments[environment_id].flag != "Development"
        ):
            raise ValueError("an IdP seed needs a Development environment (its URLs are http)")
        url = base_url or runtime.base_url
        if url is None:
            raise ValueError("the sandbox's own URL is not known yet")
        ids = state.seed(
            count,
            "Development",
            values_for=lambda name: _values(runtime, idp, url.rstrip("/"), name, issued),
            shared=shared,
            environment_id=environment_id,
        )
    credential_ids = list(dict.fromkeys(state.destinations[d].auth_credential or "" for d in ids))
    if deliveries if deliveries is not None else idp is not None:
        runtime.deliveries.enable(ids)
    apps = []
    for cred_id, made in zip(credential_ids, issued, strict=False):
        users = [d for d in ids if state.destinations[d].auth_credential == cred_id]
        apps.append(
            {
                "app_id": made.app_id,
                "client_id": made.client_id,
                "secret_id": made.secret_id,
                "credential_id": cred_id,
                "destination_ids": users,
            }
        )
    return {
        "destination_ids": ids,
        "credential_ids": credential_ids,
        "idp": idp,
        "shared": shared,
        "deliveries": bool(deliveries if deliveries is not None else idp is not None),
        "apps": apps,
    }
