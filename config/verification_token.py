"""A destination's verification-token policy: where its receiver reads the token, how often
it rotates, how long the receiver needs to pick a new one up.

Redox sends the destination's ``verificationToken`` in the ``verification-token`` header of
every delivery, and the receiver checks it. Redox holds one token and has no overlap, so a
rotation hands the new token to the receiver first, through the store it reads (a secret
sink, :mod:`config.secret_sinks`): published as *pending*, which the receiver accepts next
to the current one; after ``handover`` the token is switched in Redox; after the watch the
pending version is promoted to *current*. In the registry::

    [[destinations]]
    id = "..."
    environment = "..."
    [destinations.verification_token]
    interval = "90d"        # its own schedule; leave out for on-demand rotations only
    handover = "2m"         # how long receivers take to see a new pending version
    sink = { kind = "aws-secrets-manager", secret_id = "prod/receiver/token", region = "us-east-1" }

The table may sit in ``[defaults]`` or an environment too; the most specific layer's table
applies as a whole (its fields are not merged with a less specific one's).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, field_validator

from config.durations import parse_duration
from config.secret_sinks import SecretSinkSpec

__all__ = [
    "DEFAULT_HANDOVER_SECONDS",
    "MIN_TOKEN_INTERVAL_SECONDS",
    "VerificationTokenPolicy",
]

#: How long a receiver gets to see a new pending token before Redox sends it.
DEFAULT_HANDOVER_SECONDS = 60.0
MIN_TOKEN_INTERVAL_SECONDS = 3600.0
#: A hand-over longer than this does not fit in one task run's default budget.
MAX_HANDOVER_SECONDS = 3600.0


def _seconds(value: object) -> float:
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a duration like '2m', got {value!r}")
    return float(value)


class VerificationTokenPolicy(BaseModel):
    """A ``verification_token`` table: the receiver's store, a schedule, the hand-over."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sink: SecretSinkSpec
    #: Seconds between scheduled token rotations; None: only on demand
    #: (``rotator rotate ID --verification-token``).
    interval: Annotated[float, BeforeValidator(_seconds)] | None = None
    handover: Annotated[float, BeforeValidator(_seconds)] = DEFAULT_HANDOVER_SECONDS

    @field_validator("interval")
    @classmethod
    def _long_enough(cls, value: float | None) -> float | None:
        if value is not None and value < MIN_TOKEN_INTERVAL_SECONDS:
            raise ValueError("must be at least 1h (a token rotation waits for its hand-over)")
        return value

    @field_validator("handover")
    @classmethod
    def _handover_range(cls, value: float) -> float:
        if not 0 <= value <= MAX_HANDOVER_SECONDS:
            raise ValueError("must be between 0s and 1h")
        return value
