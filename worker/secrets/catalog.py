"""Which secret source a destination uses (its registry entry, else the Settings' default),
and where its verification token is handed to its receiver (its registry entry only).

Specs come only from the registry file (``ROTATOR_REGISTRY_PATH``) and Settings, never from
Redis. The registry is read again when the file changes (checked at most every
``RELOAD_SECONDS``); a file that no longer validates keeps the last good one in force and
says so in the log. Live sources are built once per distinct spec and process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

from config.errors import ConfigError
from config.registry import Registry, load_registry
from config.secret_sources import SecretSourceSpec, merged_spec, spec_problems
from config.settings import Settings
from config.verification_token import VerificationTokenPolicy
from worker.errors import SourceNotConfigured
from worker.logging import get_logger
from worker.secrets.base import SecretSource
from worker.secrets.build import build_source
from worker.sinks.base import SecretSink
from worker.sinks.build import build_sink

_Built = TypeVar("_Built")

__all__ = ["RELOAD_SECONDS", "SourceCatalog", "no_source_reason"]

log = get_logger(__name__)

#: How often the registry file's modification time is looked at.
RELOAD_SECONDS = 5.0


def no_source_reason(destination_id: str) -> str:
    """The one-line reason a destination without a secret source is refused."""
    return (
        f"no secret source for destination {destination_id}: set ROTATOR_SECRET_SOURCE__KIND "
        "(okta, entra, command, http, generate or aws-iam) or secret_source in its registry entry"
    )


class SourceCatalog:
    """Resolves and builds the secret source of each destination."""

    def __init__(
        self,
        settings: Settings,
        *,
        loader: Callable[[Path], Registry] = load_registry,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._path = settings.registry_path
        self._loader = loader
        self._clock = clock
        self._lock = threading.Lock()
        self._registry: Registry | None = None
        self._mtime: float | None = None
        self._checked = float("-inf")
        self._built: dict[str, SecretSource] = {}
        self._sinks: dict[str, SecretSink] = {}

    def registry(self) -> Registry | None:
        """The registry in force (re-read when the file changed), or None without one."""
        if self._path is None:
            return None
        with self._lock:
            now = self._clock()
            if now - self._checked >= RELOAD_SECONDS or self._registry is None:
                self._checked = now
                self._reload()
            return self._registry

    def _reload(self) -> None:
        assert self._path is not None
        try:
            mtime = self._path.stat().st_mtime
        except OSError as exc:
            if self._registry is None:
                raise ConfigError(f"{self._path}: cannot read registry file: {exc}") from None
            log.warning("registry file unreadable; keeping the last good one", error=str(exc))
            return
        if mtime == self._mtime and self._registry is not None:
            return
        try:
            self._registry = self._loader(self._path)
        except ConfigError as exc:
            if self._registry is None:
                raise
            log.warning("registry file invalid; keeping the last good one", problems=exc.problems)
            return
        self._mtime = mtime

    def spec_for(self, destination_id: str) -> SecretSourceSpec | None:
        """The destination's spec (registry entry over Settings, else Settings), or None."""
        registry = self.registry()
        named = registry.secret_source(destination_id) if registry is not None else None
        if named is not None:
            return merged_spec(self._settings.secret_source, named)
        return self._settings.secret_source.selected()

    def source_for(self, destination_id: str) -> SecretSource:
        """The live source (SourceNotConfigured when there is none or it is incomplete)."""
        spec = self.spec_for(destination_id)
        if spec is None:
            raise SourceNotConfigured(no_source_reason(destination_id))
        problems = spec_problems(spec, "ROTATOR_SECRET_SOURCE")
        if problems:
            raise SourceNotConfigured(f"destination {destination_id}: {problems[0]}")
        return self._once(self._built, spec, lambda: build_source(spec, self._settings),
                          destination_id)  # fmt: skip

    def token_policy(self, destination_id: str) -> VerificationTokenPolicy:
        """The destination's verification-token policy (SourceNotConfigured without one:
        the service does not know where the destination's receiver reads its token)."""
        registry = self.registry()
        policy = registry.verification_token(destination_id) if registry is not None else None
        if policy is None:
            raise SourceNotConfigured(
                f"no verification_token policy for destination {destination_id}: add "
                "[destinations.verification_token] with its receiver's sink to the registry"
            )
        return policy

    def sink_for(self, destination_id: str) -> SecretSink:
        """The live sink of the destination's verification token (built once per spec)."""
        spec = self.token_policy(destination_id).sink
        return self._once(self._sinks, spec, lambda: build_sink(spec, self._settings),
                          destination_id)  # fmt: skip

    def _once(
        self, cache: dict[str, _Built], spec: BaseModel, build: Callable[[], _Built], dest: str
    ) -> _Built:
        """The part built from ``spec``, built on first use (a ConfigError names ``dest``)."""
        key = spec.model_dump_json()
        with self._lock:
            part = cache.get(key)
            if part is None:
                try:
                    part = build()
                except ConfigError as exc:
                    raise SourceNotConfigured(f"destination {dest}: {exc}") from None
                cache[key] = part
        return part
