"""AWS Secrets Manager as a secret sink: a new version per rotation, moved by staging labels.

Secrets Manager keeps versions of one secret and marks them with *staging labels*; each
label sits on at most one version. Its own rotation uses three, and so does this sink:

* ``AWSPENDING``: :meth:`~AwsSecretsManagerSink.publish_pending` writes the new value with
  ``PutSecretValue(ClientRequestToken=<version id>, VersionStages=["AWSPENDING"])``. The
  version id is the rotation id (a UUID; any other id is mapped to a UUID5 of it), so a
  rotation that crashed after the write and runs again finds its version and writes
  nothing: the value is compared first, the same value is a no-op and a different one is
  refused (AWS answers ``ResourceExistsException`` to that too). A pending label still on
  another version (an abandoned rotation) moves to the new one, as AWS does.
* ``AWSCURRENT``: :meth:`~AwsSecretsManagerSink.promote` moves it onto the rotation's
  version (``UpdateSecretVersionStage`` with ``RemoveFromVersionId`` = the version holding
  it) and then takes ``AWSPENDING`` off; AWS moves ``AWSPREVIOUS`` onto the replaced
  version by itself. Only a version that is still pending is promoted: one that was
  discarded, or whose pending label moved on, is refused.
* :meth:`~AwsSecretsManagerSink.discard` (rollback) takes ``AWSPENDING`` off the
  rotation's version; the current value never changed. If the version had already been
  promoted, ``AWSCURRENT`` goes back to the ``AWSPREVIOUS`` version first and no label is
  left on the discarded one. A version without labels is *deprecated*: AWS no longer
  lists it and eventually deletes it.

Each step reads the labels first (``DescribeSecret``) and changes only what is not done
yet, so every call is safe to repeat. IAM permissions the sink's identity needs on the
secret: ``secretsmanager:DescribeSecret``, ``GetSecretValue``, ``PutSecretValue``,
``UpdateSecretVersionStage`` (and ``kms:Encrypt``/``Decrypt`` on a customer-managed key).
"""

from __future__ import annotations

import hmac
import re
import uuid
from typing import Any

import boto3
from pydantic import SecretStr

from worker.errors import SinkRejected, SinkUnavailable
from worker.logging import get_logger
from worker.sinks.aws import AwsFailure, SessionFactory, aws_client, classify

__all__ = ["CURRENT", "PENDING", "PREVIOUS", "AwsSecretsManagerSink", "version_id_for"]

log = get_logger(__name__)

PENDING = "AWSPENDING"
CURRENT = "AWSCURRENT"
PREVIOUS = "AWSPREVIOUS"
#: What ``ClientRequestToken`` (the version id) accepts: 32-64 characters.
_TOKEN = re.compile(r"[A-Za-z0-9-]{32,64}")
_NAMESPACE = uuid.UUID("6f1b7c52-3f0e-4c52-9a43-7d0c1d4f9e21")


def version_id_for(rotation_id: str) -> str:
    """The Secrets Manager version id a rotation writes: its id, when AWS accepts it."""
    if not rotation_id:
        raise ValueError("a rotation id is required")
    if _TOKEN.fullmatch(rotation_id):
        return rotation_id
    return str(uuid.uuid5(_NAMESPACE, rotation_id))


class AwsSecretsManagerSink:
    """Publishes a destination's new secret as staged versions of one secret (``SecretSink``)."""

    kind = "aws-secrets-manager"

    def __init__(
        self,
        secret_id: str,
        *,
        region: str,
        endpoint_url: str | None = None,
        timeout: float = 10.0,
        max_attempts: int = 3,
        session_factory: SessionFactory = boto3.session.Session,
    ) -> None:
        self._secret_id = secret_id
        self._client = aws_client(
            "secretsmanager",
            region=region,
            endpoint_url=endpoint_url,
            timeout=timeout,
            max_attempts=max_attempts,
            session_factory=session_factory,
        )

    @property
    def secret_id(self) -> str:
        """The secret's ARN or name, as configured."""
        return self._secret_id

    def close(self) -> None:
        """Close pooled connections."""
        self._client.close()

    # -- SecretSink ---------------------------------------------------------------------

    def publish_pending(self, value: SecretStr, *, rotation_id: str) -> str:
        """Write ``value`` as this rotation's ``AWSPENDING`` version (once); its version id."""
        version = version_id_for(rotation_id)
        plain = value.get_secret_value()
        if not plain:
            raise SinkRejected(f"{self._what('publish', rotation_id)}: the value is empty")
        what = self._what("publish", rotation_id)
        written = self._read(what, VersionId=version, scrub=plain)
        if written is not None:
            if not hmac.compare_digest(written.get_secret_value(), plain):
                raise SinkRejected(
                    f"{what}: version {version} already holds a different value; a rotation "
                    "publishes one value only (start a new rotation)",
                    code="ResourceExistsException",
                )
            log.info("secret version already published", secret=self._secret_id, version=version)
            return version
        self._call(
            what,
            "put_secret_value",
            scrub=plain,
            ClientRequestToken=version,
            SecretString=plain,
            VersionStages=[PENDING],
        )
        log.info("secret published as pending", secret=self._secret_id, version=version)
        return version

    def promote(self, rotation_id: str) -> None:
        """Move ``AWSCURRENT`` to this rotation's version, then take ``AWSPENDING`` off it."""
        version = version_id_for(rotation_id)
        what = self._what("promote", rotation_id)
        stages = self._stages(what)
        labels = stages.get(version, [])
        if CURRENT not in labels:
            if PENDING not in labels:
                raise SinkRejected(
                    f"{what}: version {version} is not pending (never published, discarded, "
                    "or a later rotation took the pending label); not promoting it",
                    code="NotPending",
                )
            holder = _holder(stages, CURRENT)
            extra = {"RemoveFromVersionId": holder} if holder else {}
            self._call(
                what,
                "update_secret_version_stage",
                VersionStage=CURRENT,
                MoveToVersionId=version,
                **extra,
            )
            log.info("secret version promoted", secret=self._secret_id, version=version)
        if PENDING in labels:
            self._call(
                what,
                "update_secret_version_stage",
                VersionStage=PENDING,
                RemoveFromVersionId=version,
            )

    def discard(self, rotation_id: str) -> None:
        """Withdraw this rotation's version: off ``AWSPENDING`` (and ``AWSCURRENT``, which
        goes back to the previous version, if it had been promoted)."""
        version = version_id_for(rotation_id)
        what = self._what("discard", rotation_id)
        stages = self._stages(what)
        labels = stages.get(version, [])
        if not labels:
            log.info("secret version: nothing to discard", secret=self._secret_id, version=version)
            return
        if CURRENT in labels:
            previous = _holder(stages, PREVIOUS)
            if previous is None or previous == version:
                raise SinkRejected(
                    f"{what}: version {version} is current and no previous version is left "
                    "to restore; set AWSCURRENT by hand",
                    code="NoPreviousVersion",
                )
            self._call(
                what,
                "update_secret_version_stage",
                VersionStage=CURRENT,
                MoveToVersionId=previous,
                RemoveFromVersionId=version,
            )
            log.warning(
                "secret version demoted: previous value is current again",
                secret=self._secret_id,
                version=version,
                restored=previous,
            )
            labels = self._stages(what).get(version, [])
        for label in (PENDING, PREVIOUS):
            if label in labels:
                self._call(
                    what,
                    "update_secret_version_stage",
                    VersionStage=label,
                    RemoveFromVersionId=version,
                )
        log.info("secret version discarded", secret=self._secret_id, version=version)

    def published(self, rotation_id: str) -> SecretStr | None:
        """This rotation's version's value (whatever its labels now), or None."""
        version = version_id_for(rotation_id)
        return self._read(self._what("read", rotation_id), VersionId=version)

    def current(self) -> SecretStr | None:
        """The ``AWSCURRENT`` value (None when no version is current)."""
        return self._labelled(CURRENT)

    def pending(self) -> SecretStr | None:
        """The ``AWSPENDING`` value (None when no version is pending)."""
        return self._labelled(PENDING)

    def stages(self) -> dict[str, list[str]]:
        """Version id -> its staging labels (versions AWS still lists)."""
        return self._stages(f"Secrets Manager {self._secret_id}: describe")

    # -- calls --------------------------------------------------------------------------

    def _labelled(self, label: str) -> SecretStr | None:
        what = f"Secrets Manager {self._secret_id}: read {label}"
        holder = _holder(self._stages(what), label)
        return None if holder is None else self._read(what, VersionId=holder)

    def _stages(self, what: str) -> dict[str, list[str]]:
        reply = self._call(what, "describe_secret")
        raw = reply.get("VersionIdsToStages") or {}
        return {str(k): [str(label) for label in v] for k, v in raw.items()}

    def _read(self, what: str, *, scrub: str = "", **selector: str) -> SecretStr | None:
        """One version's SecretString; None when there is no such version."""
        try:
            reply = self._call(what, "get_secret_value", scrub=scrub, **selector)
        except SinkRejected as exc:
            if exc.code == "ResourceNotFoundException":
                # No such version, or no such secret: a write reports the secret itself.
                return None
            raise
        value = reply.get("SecretString")
        if not isinstance(value, str):
            raise SinkRejected(f"{what}: the version holds binary data, not a string")
        return SecretStr(value)

    def _call(self, what: str, method: str, *, scrub: str = "", **params: Any) -> Any:
        try:
            return getattr(self._client, method)(SecretId=self._secret_id, **params)
        except Exception as exc:
            failure = classify(exc, scrub=[scrub])
            if failure is None:
                raise
            raise _error(what, failure) from None

    def _what(self, step: str, rotation_id: str) -> str:
        return f"Secrets Manager {self._secret_id}: {step} (rotation {rotation_id})"


def _holder(stages: dict[str, list[str]], label: str) -> str | None:
    return next((version for version, labels in stages.items() if label in labels), None)


def _error(what: str, failure: AwsFailure) -> SinkUnavailable | SinkRejected:
    message = f"{what}: {failure.label()}: {failure.message}"
    if failure.transient:
        return SinkUnavailable(message, status=failure.status, code=failure.code)
    return SinkRejected(message, status=failure.status, code=failure.code)
