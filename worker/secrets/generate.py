"""``generate``: a random secret made in the worker, for receivers that learn it another way.

Never the default: an OAuth destination's IdP does not know a generated secret, so its
rehearsal fails (and the rotation rolls back) unless the receiver validates client secrets
itself. Nothing to list or revoke: the value lives only in Redox.
"""

from __future__ import annotations

import secrets

from pydantic import SecretStr

from worker.errors import SecretSourceError
from worker.secrets.base import IdpSecret, IssuedSecret, IssueRequest, RevokeRequest

__all__ = ["GenerateSource", "primary_secret_field"]

#: The field a single new secret goes into, per strategy.
_PRIMARY = {
    "OAuth_2.0_2-legged": "clientSecret",
    "SMART_Backend": "clientSecret",
    "AwsSigv4": "secretKey",
}


def primary_secret_field(auth_strategy: str) -> str:
    """The field a single secret fills for this strategy (SecretSourceError if unknown)."""
    try:
        return _PRIMARY[auth_strategy]
    except KeyError:
        raise SecretSourceError(
            f"no default secret field for strategy {auth_strategy!r}: use a command or http "
            "source that names its fields"
        ) from None


class GenerateSource:
    """Random URL-safe secrets from :mod:`secrets`."""

    kind = "generate"
    manages_secrets = False

    def __init__(self, length: int = 48) -> None:
        self._length = length

    def existing(self, client_id: str) -> list[IdpSecret]:
        """Nothing to list."""
        return []

    def issue(self, request: IssueRequest) -> IssuedSecret:
        """One random value of ``length`` characters in the strategy's secret field."""
        field = primary_secret_field(request.auth_strategy)
        value = secrets.token_urlsafe(self._length)[: self._length]
        return IssuedSecret({field: SecretStr(value)})

    def revoke(self, request: RevokeRequest) -> list[str]:
        """Nothing to revoke: the value lived only in Redox."""
        return []
