"""SandboxControl: a small httpx client for the ``/_sandbox`` control endpoints.

The IdP and delivery methods come from :class:`sandbox.client_idp.IdpControlMixin`.
"""

from __future__ import annotations

from typing import Any

import httpx

from sandbox.client_idp import IdpControlMixin
from sandbox.config import FaultConfig

__all__ = ["SandboxControl"]


class SandboxControl(IdpControlMixin):
    """Drive a running sandbox from tests, the demo or benchmarks (``url`` without /_sandbox)."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._client = httpx.Client(base_url=f"{self.url}/_sandbox/", timeout=timeout)

    def close(self) -> None:
        """Close the underlying connection pool."""
        self._client.close()

    def __enter__(self) -> SandboxControl:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _call(self, method: str, path: str, body: object = None, **params: Any) -> Any:
        response = self._client.request(method, path, json=body, params=params or None)
        response.raise_for_status()
        return response.json()

    # --- faults and rate limit ------------------------------------------------------------

    def faults(self) -> FaultConfig:
        """The faults in force."""
        return FaultConfig.from_dict(self._call("GET", "faults"))

    def set_faults(self, faults: FaultConfig | None = None, **settings: Any) -> FaultConfig:
        """Replace every fault setting (``set_faults()`` clears them all)."""
        body = faults.to_dict() if faults is not None else FaultConfig(**settings).to_dict()
        return FaultConfig.from_dict(self._call("PUT", "faults", body))

    def patch_faults(self, **changes: Any) -> FaultConfig:
        """Change some fault settings, keep the rest."""
        return FaultConfig.from_dict(self._call("PATCH", "faults", changes))

    def set_rate_limit(
        self,
        requests: int | None,
        window_seconds: float = 300.0,
        *,
        send_retry_after: bool = False,
    ) -> dict[str, Any]:
        """Set (or with ``requests=None`` lift) the rolling rate limit; the window restarts."""
        body = {
            "requests": requests,
            "window_seconds": window_seconds,
            "send_retry_after": send_retry_after,
        }
        result: dict[str, Any] = self._call("PUT", "ratelimit", body)
        return result

    # --- observation ----------------------------------------------------------------------

    def journal(self, since: int = 0) -> dict[str, Any]:
        """``{since, next, entries[], summary{total, by_kind, by_status, by_kind_status}}``."""
        result: dict[str, Any] = self._call("GET", "journal", since=since)
        return result

    def clear_journal(self) -> None:
        """Drop every journal entry."""
        self._call("DELETE", "journal")

    def state(self) -> dict[str, Any]:
        """Environments, destinations, credentials (no secrets), tokens_issued."""
        result: dict[str, Any] = self._call("GET", "state")
        return result

    def secrets(self) -> dict[str, dict[str, str]]:
        """Every secret value by credential / destination id, plus ``idp:*`` groups (IdP
        client secrets ever issued, Okta API tokens, Entra management secret, IdP access
        tokens); test-only."""
        result: dict[str, dict[str, str]] = self._call("GET", "secrets")
        return result

    def health(self) -> bool:
        """True when the sandbox answers."""
        try:
            return bool(self._call("GET", "health").get("status") == "ok")
        except httpx.HTTPError:
            return False

    # --- changes --------------------------------------------------------------------------

    def reset(self) -> None:
        """Empty the state and the journal (keys, config and faults stay)."""
        self._call("POST", "reset")

    def seed(
        self,
        count: int,
        environment_flag: str | None = None,
        *,
        idp: str | None = None,
        shared: bool = False,
        deliveries: bool | None = None,
        environment_id: str | None = None,
    ) -> list[str]:
        """Create ``count`` destinations with OAuth credentials; return their ids.

        ``idp="okta"|"entra"`` gives each credential an app with one active secret at that
        fake IdP (deliveries on); ``shared`` makes them all reference one credential;
        ``environment_id`` picks the environment (see :meth:`add_environment`).
        """
        report = self.seed_report(
            count, environment_flag, idp=idp, shared=shared, deliveries=deliveries,
            environment_id=environment_id,
        )  # fmt: skip
        ids: list[str] = report["destination_ids"]
        return ids

    def seed_report(
        self,
        count: int,
        environment_flag: str | None = None,
        *,
        idp: str | None = None,
        shared: bool = False,
        deliveries: bool | None = None,
        environment_id: str | None = None,
    ) -> dict[str, Any]:
        """Like :meth:`seed`, returning the whole reply (credential ids, IdP apps)."""
        body: dict[str, Any] = {"count": count}
        if environment_id is not None:
            body["environment_id"] = environment_id
        if environment_flag is not None:
            body["environment_flag"] = environment_flag
        if idp is not None:
            body["idp"] = idp
        if shared:
            body["shared"] = True
        if deliveries is not None:
            body["deliveries"] = deliveries
        result: dict[str, Any] = self._call("POST", "seed", body)
        return result

    def add_environment(self, environment_flag: str = "Development") -> str:
        """Create one more environment of the organization; its id."""
        found: str = self._call("POST", "environments", {"environment_flag": environment_flag})[
            "id"
        ]
        return found

    def add_credentials(self, count: int, environment_id: str | None = None) -> dict[str, Any]:
        """Add ``count`` unused OAuth credentials (``filler-NNNNN``) to an environment (default:
        the first) in one request; ``{environment_id, created, credentials}``, the last being
        how many credentials the environment holds now."""
        body: dict[str, Any] = {"count": count}
        if environment_id is not None:
            body["environment_id"] = environment_id
        result: dict[str, Any] = self._call("POST", "credentials", body)
        return result

    def drift(self, destination_id: str, auth_credential: str | None = None) -> str:
        """Re-point a destination behind the service's back; return the credential id used."""
        body: dict[str, Any] = {"destination_id": destination_id}
        if auth_credential is not None:
            body["authCredential"] = auth_credential
        new_id: str = self._call("POST", "drift", body)["authCredential"]
        return new_id

    def set_public_key(
        self, public_key_pem: bytes, *, key_id: str | None = None, client_id: str | None = None
    ) -> None:
        """Accept assertions signed with the matching private key (optionally a new kid/iss)."""
        body: dict[str, Any] = {"public_key_pem": public_key_pem.decode()}
        if key_id is not None:
            body["key_id"] = key_id
        if client_id is not None:
            body["client_id"] = client_id
        self._call("PUT", "keys", body)
