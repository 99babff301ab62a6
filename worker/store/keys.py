"""Every Redis key this service writes, in one place (arq's ``constants.py`` style).

All keys share one prefix (``Settings.key_prefix``, default ``rotator``) so an operator
can list, size or wipe them with one pattern. Celery's own keys (``celery``, ``_kombu.*``,
``unacked*``) live beside them in the same database.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Keys"]


@dataclass(frozen=True)
class Keys:
    """Key names under one prefix; build one from settings and pass it down."""

    prefix: str = "rotator"

    @property
    def events(self) -> str:
        """Redis Stream of CloudEvents (``rotator:events``)."""
        return f"{self.prefix}:events"

    def rotation(self, rotation_id: str) -> str:
        """Hash: the rotation record (steps, ids, outcome); never a secret."""
        return f"{self.prefix}:rotation:{rotation_id}"

    def active(self, destination_id: str) -> str:
        """String: id of the rotation claimed for this destination (single-flight claim)."""
        return f"{self.prefix}:active:{destination_id}"

    def lock(self, destination_id: str) -> str:
        """redis-py Lock held while a worker runs a rotation of this destination."""
        return f"{self.prefix}:lock:{destination_id}"

    def generation(self, destination_id: str) -> str:
        """Integer fencing generation, bumped on every lock acquisition."""
        return f"{self.prefix}:generation:{destination_id}"

    def destination(self, destination_id: str) -> str:
        """Hash: per-destination state (last rotation, credential, paused, needs_attention)."""
        return f"{self.prefix}:destination:{destination_id}"

    @property
    def destinations(self) -> str:
        """Set: ids of every destination the service knows (registry or rotated on demand)."""
        return f"{self.prefix}:destinations"

    def history(self, destination_id: str) -> str:
        """List: recent rotation ids of a destination, newest first (bounded)."""
        return f"{self.prefix}:history:{destination_id}"

    @property
    def schedule(self) -> str:
        """Sorted set: destination id -> next due time (unix seconds)."""
        return f"{self.prefix}:schedule"

    @property
    def token_schedule(self) -> str:
        """Sorted set: destination id -> next due time of its verification-token rotation."""
        return f"{self.prefix}:token-schedule"

    def policy(self, destination_id: str) -> str:
        """Hash: the destination's policy as loaded from the registry file (JSON)."""
        return f"{self.prefix}:policy:{destination_id}"

    @property
    def policies(self) -> str:
        """Set: destination ids present in the last registry sync."""
        return f"{self.prefix}:policies"

    @property
    def retirement(self) -> str:
        """Sorted set: retirement job id -> due time (unix seconds)."""
        return f"{self.prefix}:retirement"

    def retirement_job(self, job_id: str) -> str:
        """Hash: an old credential waiting to be retired (credential id, env, rotation)."""
        return f"{self.prefix}:retire:{job_id}"

    @property
    def ratelimit(self) -> str:
        """Sorted set: the shared Redox request log (sliding window)."""
        return f"{self.prefix}:ratelimit"

    @property
    def ratelimit_penalty(self) -> str:
        """String: unix time until which Redox told us (429) to hold off."""
        return f"{self.prefix}:ratelimit:penalty"

    @property
    def created_credentials(self) -> str:
        """Hash: credential id -> rotation id, for every credential this service created."""
        return f"{self.prefix}:created"

    @property
    def metrics(self) -> str:
        """Hash: counters read by ``rotator metrics`` (outcomes, Redox calls by status)."""
        return f"{self.prefix}:metrics"

    def credential(self, credential_id: str) -> str:
        """Hash: what the service knows of a credential it made (IdP secret id, client,
        the credential it replaced); ids only."""
        return f"{self.prefix}:credential:{credential_id}"

    def client_credentials(self, source_kind: str, client_id: str) -> str:
        """Set: the live credentials the service made for one OAuth client."""
        return f"{self.prefix}:client:{source_kind}:{client_id}"

    def successor(self, credential_id: str) -> str:
        """String: the credential made to replace this one (siblings adopt it)."""
        return f"{self.prefix}:successor:{credential_id}"

    def client_lock(self, source_kind: str, client_id: str) -> str:
        """Lock held while a new secret is issued for one OAuth client (siblings wait)."""
        return f"{self.prefix}:client-lock:{source_kind}:{client_id}"

    @property
    def watch(self) -> str:
        """Sorted set: watched rotation id -> unix time of its next look."""
        return f"{self.prefix}:watch"

    @property
    def runs(self) -> str:
        """Sorted set: rotation id with a run started -> unix time by which that run (or
        its scheduled retry) must show life, else beat resumes it (see scheduling.reaper)."""
        return f"{self.prefix}:runs"

    def worker(self, name: str) -> str:
        """String with a TTL: a worker process's heartbeat (``*`` matches every one)."""
        return f"{self.prefix}:worker:{name}"
