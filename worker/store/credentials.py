"""What the service knows about the credentials it made: their IdP secret and their lineage.

Redox never returns a secret, and its credentials carry no link to the IdP's secret ids, so
the service keeps, per credential it created (hash ``<prefix>:credential:<id>``): the IdP
secret id it holds, the OAuth client, the source kind, and the credential it replaced.
From that:

* retirement revokes *exactly* the secret a retired credential held (by id);
* ``keep_secret_ids(client)`` are the secrets of the client's live credentials, which no
  revoke rule may touch;
* ``successor(old)`` is the newest live credential made to replace ``old``, which a sibling
  destination still on ``old`` adopts instead of minting a third secret (two-secret limits).

Ids only, never a value.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

import redis

from worker.store.keys import Keys

__all__ = ["CredentialInfo", "CredentialLedger"]

#: A successor chain longer than this is a loop or garbage: stop following it.
_MAX_CHAIN = 20


@dataclass(frozen=True)
class CredentialInfo:
    """One credential this service created."""

    credential_id: str
    environment_id: str = ""
    client_id: str = ""
    source_kind: str = ""
    #: The IdP's id of the secret the credential holds ("" when the source has no ids).
    secret_id: str = ""
    #: The credential it replaced.
    replaces: str = ""
    rotation_id: str = ""
    destination_id: str = ""

    @classmethod
    def from_hash(cls, credential_id: str, raw: dict[Any, Any]) -> CredentialInfo:
        """Parse the stored hash (unknown fields are ignored)."""
        names = set(cls.__dataclass_fields__) - {"credential_id"}
        values = {str(k): str(v) for k, v in raw.items() if str(k) in names}
        return cls(credential_id, **values)

    def as_hash(self) -> dict[str, str]:
        """The fields to store."""
        return {k: str(v) for k, v in self.__dict__.items() if k != "credential_id"}


class CredentialLedger:
    """Reads and writes :class:`CredentialInfo` and the indexes built on it."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._r = client
        self._keys = keys

    def record(self, info: CredentialInfo) -> None:
        """Remember a credential this service made, its client and its lineage (one MULTI)."""
        with self._r.pipeline(transaction=True) as pipe:
            mapping: Any = info.as_hash()
            pipe.hset(self._keys.credential(info.credential_id), mapping=mapping)
            if info.client_id:
                pipe.sadd(
                    self._keys.client_credentials(info.source_kind, info.client_id),
                    info.credential_id,
                )
            if info.replaces:
                pipe.set(self._keys.successor(info.replaces), info.credential_id)
            pipe.execute()

    def get(self, credential_id: str) -> CredentialInfo | None:
        """What is known of a credential, or None when the service did not make it."""
        raw = cast(dict[Any, Any], self._r.hgetall(self._keys.credential(credential_id)))
        return CredentialInfo.from_hash(credential_id, raw) if raw else None

    def forget(self, info: CredentialInfo) -> None:
        """Drop a retired (or never used) credential from the ledger and its indexes."""
        with self._r.pipeline(transaction=True) as pipe:
            pipe.delete(self._keys.credential(info.credential_id))
            if info.client_id:
                pipe.srem(
                    self._keys.client_credentials(info.source_kind, info.client_id),
                    info.credential_id,
                )
            if info.replaces:
                pipe.delete(self._keys.successor(info.replaces))
            pipe.delete(self._keys.successor(info.credential_id))
            pipe.execute()

    def siblings(self, source_kind: str, client_id: str) -> list[CredentialInfo]:
        """Every live credential the service made for this OAuth client."""
        ids = sorted(
            str(i)
            for i in cast(
                Iterable[Any],
                self._r.smembers(self._keys.client_credentials(source_kind, client_id)),
            )
        )
        found = [self.get(ident) for ident in ids]
        return [info for info in found if info is not None]

    def keep_secret_ids(
        self, source_kind: str, client_id: str, *, except_credential: str = ""
    ) -> tuple[str, ...]:
        """Secret ids held by the client's live credentials (never revoked by a rule)."""
        return tuple(
            sorted(
                info.secret_id
                for info in self.siblings(source_kind, client_id)
                if info.secret_id and info.credential_id != except_credential
            )
        )

    def successor(self, credential_id: str) -> str | None:
        """The newest live credential made to replace ``credential_id`` (following the
        chain of replacements), or None."""
        current, found = credential_id, None
        for _ in range(_MAX_CHAIN):
            nxt = self._r.get(self._keys.successor(current))
            if nxt is None or not self._r.exists(self._keys.credential(str(nxt))):
                return found
            current = found = str(nxt)
        return found
