"""``rotator demo --break``: two things go wrong on purpose, and the service copes.

* The first destination's IdP refuses every token request for its client: its rotation's
  rehearsal fails, the new secret is revoked and the destination is never touched
  (``rolled_back`` / ``RehearsalFailed``). The IdP is healed when that rotation ends.
* Right after the second destination is switched, its new secret is revoked at the IdP (as
  an IdP administrator might by mistake) and the tokens Redox holds expire: its deliveries
  fail, the watch sees it at its next look and switches the destination back
  (``rolled_back`` / ``DeliveriesFailing``); deliveries recover on the old secret.
"""

from __future__ import annotations

import threading
from typing import Any

import redis

from config.settings import Settings
from sandbox.client import SandboxControl
from worker.events import TERMINAL_OUTCOMES, EventStream
from worker.secrets.base import RevokeRequest
from worker.secrets.build import build_source
from worker.store.keys import Keys

__all__ = ["Breaker"]


class Breaker:
    """Breaks two destinations once each, from a daemon thread following the events."""

    def __init__(
        self,
        control: SandboxControl,
        client: redis.Redis,
        settings: Settings,
        destinations: list[str],
    ) -> None:
        self._control = control
        self._redis = client
        self._settings = settings
        self._refused, self._reverted = destinations[0], destinations[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="demo-breaker", daemon=True)
        self._refused_client = self._client_of(self._refused)

    def _client_of(self, destination_id: str) -> str:
        state = self._control.state()
        credential = next(d for d in state["destinations"] if d["id"] == destination_id)
        found = next(c for c in state["credentials"] if c["id"] == credential["authCredential"])
        return str(found["clientId"])

    def start(self) -> None:
        """Break the first destination's IdP now; the second after its switch."""
        self._control.reject_tokens_for(self._refused_client)
        self._thread.start()

    def close(self) -> None:
        """Stop following the events."""
        self._stop.set()

    def _follow(self) -> None:
        stream = EventStream(self._redis, Keys())
        for entry in stream.follow(since="0-0", block_ms=500):
            if self._stop.is_set():
                return
            if entry is None:
                continue
            event: dict[str, Any] = entry.event
            kind = str(event.get("type", "")).rsplit(".", 1)[-1]
            subject = event.get("subject")
            if subject == self._refused and kind in TERMINAL_OUTCOMES:
                self._control.reject_tokens_for()  # the IdP is healed
            if subject == self._reverted and kind == "switched":
                self._revoke_new_secret(str((event.get("data") or {}).get("rotationId")))
                return

    def _revoke_new_secret(self, rotation_id: str) -> None:
        record = self._redis.hgetall(Keys().rotation(rotation_id))
        spec = self._settings.secret_source.selected()
        if spec is None or not record.get("new_secret_id"):
            return
        build_source(spec, self._settings).revoke(
            RevokeRequest(
                self._reverted,
                rotation_id,
                str(record.get("environment_id", "")),
                str(record.get("auth_strategy", "")),
                credential_id=None,
                client_id=str(record.get("client_id") or "") or None,
                secret_id=str(record["new_secret_id"]),
                reason="retired",
            )
        )
        self._control.flush_delivery_tokens()  # the tokens Redox holds expire now
