"""SandboxControl methods for the fake IdPs, the simulated deliveries and the receivers'
token stores (``/_sandbox/idp``, ``/_sandbox/deliveries``,
``/_sandbox/destinations/{id}/token-store``). Mixed into :class:`sandbox.client.SandboxControl`."""

from __future__ import annotations

from typing import Any

__all__ = ["IdpControlMixin"]


class IdpControlMixin:
    """Needs ``_call(method, path, body=None, **params)`` from the class it is mixed into."""

    def _call(self, method: str, path: str, body: object = None, **params: Any) -> Any:
        raise NotImplementedError  # pragma: no cover - provided by SandboxControl

    def _dict(self, method: str, path: str, body: object = None, **params: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._call(method, path, body, **params)
        return result

    # --- IdP settings and faults ----------------------------------------------------------

    def idp_settings(self) -> dict[str, Any]:
        """``{propagation_delay_seconds, password_limit, management_rate_limit,
        management_rate_window_seconds, token_ttl_seconds}``."""
        return self._dict("GET", "idp/settings")

    def set_idp_settings(self, **changes: Any) -> dict[str, Any]:
        """Change some IdP settings, keep the rest."""
        return self._dict("PATCH", "idp/settings", changes)

    def reset_idp_settings(self) -> dict[str, Any]:
        """Back to the defaults (no delay, two Entra passwords, no rate limit)."""
        return self._dict("PUT", "idp/settings", {})

    def set_propagation_delay(self, seconds: float) -> dict[str, Any]:
        """New secrets are refused at the token endpoints for ``seconds`` after creation."""
        return self.set_idp_settings(propagation_delay_seconds=seconds)

    def set_password_limit(self, limit: int) -> dict[str, Any]:
        """Entra passwords allowed per application."""
        return self.set_idp_settings(password_limit=limit)

    def idp_faults(self) -> dict[str, Any]:
        """The IdP faults in force."""
        return self._dict("GET", "idp/faults")

    def set_idp_faults(self, **settings: Any) -> dict[str, Any]:
        """Replace every IdP fault setting (``set_idp_faults()`` clears them all)."""
        return self._dict("PUT", "idp/faults", settings)

    def patch_idp_faults(self, **changes: Any) -> dict[str, Any]:
        """Change some IdP fault settings, keep the rest."""
        return self._dict("PATCH", "idp/faults", changes)

    def reject_tokens_for(self, *client_ids: str) -> dict[str, Any]:
        """Refuse every token request of these clients (none: accept all again)."""
        return self.patch_idp_faults(reject_token_clients=list(client_ids))

    # --- hold -----------------------------------------------------------------------------

    def hold_idp(self, timeout_seconds: float = 60.0) -> dict[str, Any]:
        """Make management create calls wait until :meth:`release_idp` (or the timeout)."""
        return self._dict("POST", "idp/hold", {"timeout_seconds": timeout_seconds})

    def release_idp(self) -> dict[str, Any]:
        """Lift the hold; ``released`` says how many calls were waiting."""
        return self._dict("POST", "idp/release")

    def idp_hold(self) -> dict[str, Any]:
        """``{hold, waiting, held_total, timeout_seconds}``."""
        return self._dict("GET", "idp/hold")

    # --- IdP inspection and setup ---------------------------------------------------------

    def idp_apps(self) -> dict[str, list[dict[str, Any]]]:
        """``{"okta": [...], "entra": [...]}``: apps with secret ids, statuses, times."""
        result: dict[str, list[dict[str, Any]]] = self._call("GET", "idp/apps")
        return result

    def idp_app(self, app_or_client_id: str) -> dict[str, Any]:
        """One app of :meth:`idp_apps` by app id or client id (KeyError if none)."""
        for apps in self.idp_apps().values():
            for app in apps:
                if app_or_client_id in (app.get("app_id"), app.get("client_id")):
                    return app
        raise KeyError(app_or_client_id)

    def create_idp_app(
        self,
        idp: str,
        *,
        label: str = "sandbox-app",
        client_id: str | None = None,
        scopes: list[str] | None = None,
        owners: list[str] | None = None,
        secret: bool = True,
    ) -> dict[str, Any]:
        """A new app (with one active secret unless ``secret=False``); returns its ids and
        the secret's value."""
        body: dict[str, Any] = {"idp": idp, "label": label, "secret": secret}
        for name, value in (("client_id", client_id), ("scopes", scopes), ("owners", owners)):
            if value is not None:
                body[name] = value
        return self._dict("POST", "idp/apps", body)

    def idp_secret_status(self, client_id: str, client_secret: str) -> dict[str, Any]:
        """``{idp, known, active, usable, secret_id?}`` of a secret value."""
        body = {"client_id": client_id, "client_secret": client_secret}
        return self._dict("POST", "idp/secret-status", body)

    def set_entra_owners(self, app_id: str, owners: list[str]) -> dict[str, Any]:
        """Replace an Entra application's owners (appIds of service principals)."""
        return self._dict("PUT", f"idp/entra/apps/{app_id}/owners", {"owners": owners})

    def set_entra_management(
        self, *, roles: list[str] | None = None, certificate_pem: bytes | None = None
    ) -> dict[str, Any]:
        """Set the management client's Graph roles and/or register a certificate for it."""
        body: dict[str, Any] = {}
        if roles is not None:
            body["roles"] = roles
        if certificate_pem is not None:
            body["certificate_pem"] = certificate_pem.decode()
        return self._dict("PUT", "idp/entra/management", body)

    def idp_credentials(self) -> dict[str, Any]:
        """Okta org URL + API token; Entra tenant, client id/secret, Graph and login URLs."""
        return self._dict("GET", "idp/credentials")

    # --- deliveries -----------------------------------------------------------------------

    def deliveries(self) -> dict[str, Any]:
        """``{interval_seconds, enabled, running, cached_tokens, token_stores}`` (the last: ids
        of destinations whose receiver checks the verification token)."""
        return self._dict("GET", "deliveries")

    def set_deliveries(
        self,
        *,
        interval_seconds: float | None = None,
        enable: list[str] | None = None,
        disable: list[str] | None = None,
    ) -> dict[str, Any]:
        """Change the interval and switch destinations' deliveries on or off."""
        body: dict[str, Any] = {}
        if interval_seconds is not None:
            body["interval_seconds"] = interval_seconds
        if enable:
            body["enable"] = enable
        if disable:
            body["disable"] = disable
        return self._dict("PATCH", "deliveries", body)

    def delivery_stats(self) -> dict[str, Any]:
        """``{interval_seconds, destinations: {id: counters}, totals, last_failure}``."""
        return self._dict("GET", "deliveries/stats")

    def flush_delivery_tokens(self) -> int:
        """Forget cached delivery tokens; returns how many were cached."""
        flushed: int = self._dict("DELETE", "deliveries/tokens")["flushed"]
        return flushed

    def delivery_logs(self, destination_id: str) -> list[dict[str, Any]]:
        """Every kept log of one destination, oldest first."""
        logs: list[dict[str, Any]] = self._dict(
            "GET", "deliveries/logs", destination_id=destination_id
        )["logs"]
        return logs

    # --- the receiver's token store -------------------------------------------------------

    def set_token_store(
        self,
        destination_id: str,
        *,
        endpoint_url: str,
        secret_id: str,
        region: str = "us-east-1",
        refresh_seconds: float = 5.0,
        accept_pending: bool = True,
    ) -> dict[str, Any]:
        """Make the destination's receiver check the ``verification-token`` against an AWS
        Secrets Manager secret (AWSCURRENT, and AWSPENDING when ``accept_pending``) read at
        ``endpoint_url`` (loopback only) and cached ``refresh_seconds``; returns the store's
        view (settings and read counters, no values). Replaces any store, cache included."""
        body = {
            "endpoint_url": endpoint_url,
            "secret_id": secret_id,
            "region": region,
            "refresh_seconds": refresh_seconds,
            "accept_pending": accept_pending,
        }
        found: dict[str, Any] = self._dict(
            "PUT", f"destinations/{destination_id}/token-store", body
        )["token_store"]
        return found

    def token_store(self, destination_id: str) -> dict[str, Any] | None:
        """The destination's token store view (``reads``, ``read_failures``, ``cached``...)
        or None when it has none."""
        found: dict[str, Any] | None = self._dict(
            "GET", f"destinations/{destination_id}/token-store"
        )["token_store"]
        return found

    def clear_token_store(self, destination_id: str) -> bool:
        """Stop checking the destination's token; False if it had no store."""
        detached: bool = self._dict("DELETE", f"destinations/{destination_id}/token-store")[
            "detached"
        ]
        return detached
