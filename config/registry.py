"""The destination registry file (TOML): which destinations rotate, how often, and how.

Layers resolve most specific first: ``[[destinations]]`` entry, then
``[environments."<id>"]``, then ``[defaults]``, then the built-in defaults below. A layer
that sets ``interval`` or ``cron`` replaces the schedule of the layers under it.

:func:`load_registry` reports every problem at once as one line each (file, entry, field,
reason) inside a :class:`~worker.errors.ConfigError`. Unknown keys are errors, never ignored.
See ``examples/registry.toml`` for a commented example.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from croniter import croniter
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from config.durations import parse_duration, parse_window
from config.errors import ConfigError
from config.registry_errors import describe_error, duplicate_ids, one_line, toml_type
from config.registry_ids import is_redox_id
from config.secret_sources import REGISTRY_CONTEXT, SecretSourceSpec
from config.verification_token import VerificationTokenPolicy

__all__ = [
    "DEFAULT_GRACE_SECONDS",
    "DEFAULT_RETIRE",
    "MIN_INTERVAL_SECONDS",
    "RETIRE_POLICIES",
    "DestinationEntry",
    "DestinationPolicy",
    "PolicyFields",
    "Registry",
    "RegistryFile",
    "RetirePolicy",
    "VerificationTokenPolicy",
    "is_redox_id",
    "load_registry",
    "parse_registry",
]

MIN_INTERVAL_SECONDS = 60.0
DEFAULT_GRACE_SECONDS = 24 * 3600.0

#: Which old credentials retirement may delete after a successful rotation:
#: ``rotated-away`` the credential the rotation replaced (whoever created it),
#: ``created-only`` only if this service created it, ``never`` none (a human deletes them).
#: No other credential is ever deleted.
RetirePolicy = Literal["rotated-away", "created-only", "never"]
RETIRE_POLICIES: tuple[str, ...] = ("rotated-away", "created-only", "never")
DEFAULT_RETIRE: RetirePolicy = "rotated-away"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}


def _check_id(value: str) -> str:
    if not is_redox_id(value):
        raise ValueError(f"bad id {value!r} (use 1-64 letters, digits, '-' or '_')")
    return value


def _duration(value: object, *, allow_zero: bool = False) -> float:
    """A duration from TOML (string or whole seconds) or from JSON (float seconds)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"expected a duration like '30d', got {toml_type(value)}")
    if isinstance(value, str):
        return parse_duration(value, allow_zero=allow_zero)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"bad duration {value!r} (must be finite and not negative)")
    if value == 0 and not allow_zero:
        raise ValueError(f"bad duration {value!r} (must be more than zero)")
    return float(value)


def _grace(value: object) -> float:
    return _duration(value, allow_zero=True)


#: A duration field: "20s", 20 (TOML) or 20.0 (JSON); more than zero.
Duration = Annotated[float, BeforeValidator(_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class PolicyFields(_Strict):
    """One layer of policy (``[defaults]``, an environment); unset fields fall through."""

    interval: float | None = None
    cron: str | None = None
    window: tuple[int, int] | None = None
    grace: Annotated[float, BeforeValidator(_grace)] | None = None
    retire: RetirePolicy | None = None
    secret_source: SecretSourceSpec | None = None
    verification_token: VerificationTokenPolicy | None = None

    @field_validator("interval", mode="before")
    @classmethod
    def _interval(cls, value: object) -> float | None:
        if value is None:
            return None
        seconds = _duration(value)
        if seconds < MIN_INTERVAL_SECONDS:
            raise ValueError(f"{value!r} is shorter than the minimum of 60s")
        return seconds

    @field_validator("window", mode="before")
    @classmethod
    def _window(cls, value: object) -> tuple[int, int] | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError(f"expected a window like '02:00-05:00', got {toml_type(value)}")
        return parse_window(value)

    @field_validator("cron", mode="before")
    @classmethod
    def _cron(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        fields = value.split()
        if len(fields) != 5 or not croniter.is_valid(" ".join(fields)):
            raise ValueError(f"bad cron {value!r} (use 5 fields in UTC, e.g. '0 3 * * 1')")
        return " ".join(fields)

    @model_validator(mode="after")
    def _one_schedule(self) -> PolicyFields:
        if self.interval is not None and self.cron is not None:
            raise ValueError("interval/cron: set one of interval or cron, not both")
        return self


class DestinationEntry(PolicyFields):
    """One ``[[destinations]]`` entry: a destination plus its overrides."""

    id: str
    environment: str
    name: str | None = None
    paused: bool = Field(False, strict=True)
    enabled: bool = Field(True, strict=True)

    @field_validator("id", "environment")
    @classmethod
    def _ids(cls, value: str) -> str:
        return _check_id(value)


class RegistryFile(_Strict):
    """The whole file as written (before resolution)."""

    defaults: PolicyFields = PolicyFields()
    environments: dict[Annotated[str, AfterValidator(_check_id)], PolicyFields] = Field(
        default_factory=dict
    )
    destinations: list[DestinationEntry] = Field(default_factory=list)


class DestinationPolicy(BaseModel):
    """The resolved policy of one destination (stored in Redis as JSON)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    destination_id: str
    environment_id: str
    name: str | None = None
    interval_seconds: float | None = None
    cron: str | None = None
    window: tuple[int, int] | None = None
    grace_seconds: float = DEFAULT_GRACE_SECONDS
    retire: RetirePolicy = DEFAULT_RETIRE
    paused: bool = False
    enabled: bool = True
    #: The verification token's own schedule (None: on demand only, or no token policy).
    token_interval_seconds: float | None = None

    @field_validator("window")
    @classmethod
    def _window_range(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and (not all(0 <= m < 1440 for m in value) or value[0] == value[1]):
            raise ValueError(f"bad window {value!r} (minutes of the day, start != end)")
        return value

    @model_validator(mode="after")
    def _one_schedule(self) -> DestinationPolicy:
        if (self.interval_seconds is None) == (self.cron is None):
            raise ValueError("exactly one of interval_seconds or cron must be set")
        return self

    @property
    def scheduled(self) -> bool:
        """Whether the destination belongs on the schedule (enabled and not paused)."""
        return self.enabled and not self.paused

    def schedule_key(self) -> tuple[float | None, str | None, tuple[int, int] | None]:
        """The fields that decide due times; a change here means recompute the due time."""
        return (self.interval_seconds, self.cron, self.window)


@dataclass(frozen=True)
class Registry:
    """A loaded, valid registry file."""

    source: str
    file: RegistryFile
    _policies: tuple[DestinationPolicy, ...]
    _sources: Mapping[str, SecretSourceSpec | None]
    _tokens: Mapping[str, VerificationTokenPolicy | None]

    def policies(self) -> list[DestinationPolicy]:
        """Every destination's resolved policy, in file order."""
        return list(self._policies)

    def secret_source(self, destination_id: str) -> SecretSourceSpec | None:
        """The secret source the file names for a destination (entry, environment or
        defaults), or None: then the Settings' default applies, if there is one. Kept out of
        :class:`DestinationPolicy`, which is stored in Redis: specs never come from Redis."""
        return self._sources.get(destination_id)

    def verification_token(self, destination_id: str) -> VerificationTokenPolicy | None:
        """The destination's verification-token policy (its receiver's store), or None:
        its token is not rotated by this service. Kept out of Redis like secret sources."""
        return self._tokens.get(destination_id)


def load_registry(path: Path) -> Registry:
    """Read and validate the registry at ``path``; raise ConfigError, one line per problem."""
    source = str(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{source}: registry file does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"{source}: is a directory, not a registry file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read registry file: {exc.strerror}") from None
    return parse_registry(text, source)


def parse_registry(text: str, source: str = "registry.toml") -> Registry:
    """Validate registry TOML ``text``; ``source`` names the file in error lines."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: TOML syntax error: {exc}") from None
    problems = [f"{source}: {line}" for line in duplicate_ids(data)]
    try:
        parsed = RegistryFile.model_validate(data, context={REGISTRY_CONTEXT: True})
    except ValidationError as exc:
        lines = [f"{source}: {describe_error(err, data)}" for err in exc.errors()]
        raise ConfigError([one_line(p) for p in lines + problems]) from None
    policies: list[DestinationPolicy] = []
    sources: dict[str, SecretSourceSpec | None] = {}
    tokens: dict[str, VerificationTokenPolicy | None] = {}
    for index, entry in enumerate(parsed.destinations):
        try:
            policies.append(_resolve(entry, parsed))
        except ValueError as exc:
            problems.append(f"{source}: destinations[{index}] (id={entry.id}): {exc}")
        sources[entry.id] = _layers_pick(entry, parsed, "secret_source")
        tokens[entry.id] = _layers_pick(entry, parsed, "verification_token")
    if problems:
        raise ConfigError([one_line(p) for p in problems])
    return Registry(source, parsed, tuple(policies), sources, tokens)


def _layers(entry: DestinationEntry, file: RegistryFile) -> tuple[PolicyFields, ...]:
    """The entry's policy layers, most specific first."""
    return (entry, file.environments.get(entry.environment, PolicyFields()), file.defaults)


def _layers_pick(entry: DestinationEntry, file: RegistryFile, name: str) -> Any:
    """The most specific layer's value of ``name`` (None when no layer sets it)."""
    layers = _layers(entry, file)
    return next((v for v in (getattr(x, name) for x in layers) if v is not None), None)


def _resolve(entry: DestinationEntry, file: RegistryFile) -> DestinationPolicy:
    layers = _layers(entry, file)

    def pick(name: str) -> Any:
        return _layers_pick(entry, file, name)

    schedule = next((x for x in layers if x.interval is not None or x.cron is not None), None)
    if schedule is None:
        raise ValueError(
            "interval/cron: none set (set one in [defaults], the environment or the entry)"
        )
    grace = pick("grace")
    retire = pick("retire")
    token: VerificationTokenPolicy | None = pick("verification_token")
    return DestinationPolicy(
        destination_id=entry.id,
        environment_id=entry.environment,
        name=entry.name,
        interval_seconds=schedule.interval,
        cron=schedule.cron,
        window=pick("window"),
        grace_seconds=DEFAULT_GRACE_SECONDS if grace is None else grace,
        retire=DEFAULT_RETIRE if retire is None else retire,
        paused=entry.paused,
        enabled=entry.enabled,
        token_interval_seconds=token.interval if token is not None else None,
    )
