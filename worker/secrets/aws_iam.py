"""AWS IAM as a secret source: a second access key of the same IAM user, for ``AwsSigv4``.

An ``AwsSigv4`` credential (redox-api.md §3: ``accessKey``, ``secretKey``, ``serviceName``,
``awsRegion``, ``sessionToken``) signs Redox's requests to the destination as one IAM user.
IAM allows **two** access keys per user, active or inactive alike, so the rotation has the
same shape as an OAuth client's second secret:

* **Which user.** ``user_name`` from the spec; else the user that owns the old key, asked
  with ``GetAccessKeyLastUsed(<old accessKey>)`` (the old key's id arrives as the
  request's ``client_id``; for a revoke, the key being revoked is asked first).
* :meth:`AwsIamSource.issue` lists the user's keys and refuses a third with
  :class:`~worker.errors.IdpLimitReached` (a person must act: usually the previous
  rotation's old key has not retired yet), else ``CreateAccessKey`` and returns
  ``{"accessKey", "secretKey"}`` with the new key's id as ``secret_id``. The create is sent
  once (botocore retries off for it): a lost reply cannot be told apart from a new key,
  and the two-key limit then stops the next attempt instead of piling keys up.
* :meth:`AwsIamSource.revoke` deactivates (``UpdateAccessKey Inactive``), then deletes a
  key; a key that is already gone is success. With ``secret_id=None`` (a credential older
  than this service) it revokes every key of the user **not** in ``keep_secret_ids``, and
  only when at least one kept key is Active, so the user is never left without a working
  key; otherwise it revokes nothing and says so in the log. Kept keys are never touched.
* :meth:`AwsIamSource.rehearse` is the rehearsal for this kind: an STS
  ``GetCallerIdentity`` signed with the **new** key (a fresh client with only those
  credentials, in the credential's ``awsRegion``, else the spec's region). IAM keys take a
  few seconds to propagate, so ``InvalidClientTokenId`` / ``SignatureDoesNotMatch`` and
  transient failures are retried with full-jitter backoff until ``budget_seconds`` is
  spent; then :class:`~worker.errors.RehearsalFailed` carries AWS's error code and
  message, never the secret. It proves the key authenticates, not that the destination's
  service accepts it (that is the watch's job).

The service itself signs in with the standard AWS credential chain. Its identity needs
``iam:ListAccessKeys``, ``iam:CreateAccessKey``, ``iam:UpdateAccessKey``,
``iam:DeleteAccessKey`` on the user (``arn:aws:iam::<account>:user/<name>``) and, without
``user_name``, ``iam:GetAccessKeyLastUsed``. Access key ids are not secret and are logged;
secret access keys leave only inside :class:`IssuedSecret`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import boto3
from pydantic import SecretStr

from worker.errors import (
    IdpLimitReached,
    IdpRejected,
    IdpUnavailable,
    RehearsalFailed,
    SecretSourceError,
)
from worker.logging import get_logger
from worker.rehearsal import BACKOFF_INITIAL, BACKOFF_MAX
from worker.secrets.base import IdpSecret, IssuedSecret, IssueRequest, RevokeRequest
from worker.sinks.aws import AwsFailure, SessionFactory, aws_client, classify

__all__ = ["MAX_KEYS", "PROPAGATION_CODES", "AwsIamSource"]

log = get_logger(__name__)

#: IAM allows this many access keys (Active + Inactive) per user.
MAX_KEYS = 2
#: What STS answers for a key IAM has not propagated yet (and for a bad or deleted key).
PROPAGATION_CODES = frozenset(
    {"InvalidClientTokenId", "SignatureDoesNotMatch", "UnrecognizedClientException"}
)
_HINTS = {
    "AccessDenied": "the service's AWS identity lacks this IAM permission on the user",
    "NoSuchEntity": "no such IAM user or access key in the account the service signs in to",
}


class AwsIamSource:
    """Issues, rehearses and revokes IAM access keys of one IAM user (``SecretSource``)."""

    kind = "aws-iam"
    manages_secrets = True

    def __init__(
        self,
        region: str,
        *,
        user_name: str | None = None,
        endpoint_url: str | None = None,
        sts_endpoint_url: str | None = None,
        timeout: float = 10.0,
        max_attempts: int = 3,
        session_factory: SessionFactory = boto3.session.Session,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._region = region
        self._user_name = user_name
        self._sts_endpoint = sts_endpoint_url
        self._timeout = timeout
        self._session_factory = session_factory
        self._sleep = sleep
        self._clock = clock
        self._iam = self._iam_client(endpoint_url, max_attempts)
        #: CreateAccessKey is sent once: a retried create could make a key nobody sees.
        self._iam_once = self._iam_client(endpoint_url, 1)

    def _iam_client(self, endpoint_url: str | None, max_attempts: int) -> Any:
        return aws_client(
            "iam",
            region=self._region,
            endpoint_url=endpoint_url,
            timeout=self._timeout,
            max_attempts=max_attempts,
            session_factory=self._session_factory,
        )

    def close(self) -> None:
        """Close pooled connections."""
        self._iam.close()
        self._iam_once.close()

    # -- SecretSource -------------------------------------------------------------------

    def existing(self, client_id: str) -> list[IdpSecret]:
        """The user's access keys (id, status, created), never their secrets; ``client_id``
        is an access key id of the user (used only when ``user_name`` is not set)."""
        return self._keys(self._user(client_id))

    def issue(self, request: IssueRequest) -> IssuedSecret:
        """Create the user's second access key; IdpLimitReached if it already has two."""
        user = self._user(request.client_id)
        current = self._keys(user)
        if len(current) >= MAX_KEYS:
            held = ", ".join(f"{k.id} ({k.status})" for k in current)
            raise IdpLimitReached(
                f"IAM user {user} already holds {len(current)} access keys ({held}), the most "
                "IAM allows; the previous rotation's old key has probably not retired yet: "
                "wait for its grace period to end, or delete one of them in IAM first",
                code="LimitExceeded",
            )
        what = f"create IAM access key for {user}"
        reply = self._call(self._iam_once, what, "create_access_key", UserName=user)
        key = reply.get("AccessKey") or {}
        key_id, secret = key.get("AccessKeyId"), key.get("SecretAccessKey")
        if not isinstance(key_id, str) or not key_id:
            raise SecretSourceError(f"{what}: reply has no AccessKeyId")
        if not isinstance(secret, str) or not secret:
            raise SecretSourceError(f"{what}: reply has no SecretAccessKey")
        log.info("iam access key created", user=user, access_key_id=key_id)
        return IssuedSecret(
            {"accessKey": SecretStr(key_id), "secretKey": SecretStr(secret)}, secret_id=key_id
        )

    def revoke(self, request: RevokeRequest) -> list[str]:
        """Deactivate, then delete access keys; return the ids now gone.

        With ``secret_id``: that key (unless it is in ``keep_secret_ids``). With
        ``secret_id=None``: every key of the user not in ``keep_secret_ids``, and only when
        one kept key is Active; otherwise nothing.
        """
        keep = set(request.keep_secret_ids)
        if request.secret_id is not None:
            key_id = request.secret_id
            if key_id in keep:
                log.warning("iam revoke skipped: key is kept", access_key_id=key_id)
                return []
            user = self._user_of_key(key_id)
            if user is not None:
                self._retire(user, key_id)
            return [key_id]
        user = self._user_of_any([*sorted(keep), request.client_id])
        keys = self._keys(user)
        if not any(k.id in keep and k.status == "active" for k in keys):
            log.warning(
                "iam revoke skipped: no kept key is active",
                user=user,
                kept=sorted(keep),
                listed=[k.id for k in keys],
            )
            return []
        revoked: list[str] = []
        for key in keys:
            if key.id not in keep:
                self._retire(user, key.id)
                revoked.append(key.id)
        return revoked

    # -- rehearsal ----------------------------------------------------------------------

    def rehearse(
        self, issued: IssuedSecret, fields: Mapping[str, Any], *, budget_seconds: float
    ) -> None:
        """STS ``GetCallerIdentity`` signed with the new key, retried while IAM propagates
        it, until it passes or ``budget_seconds`` is spent (RehearsalFailed)."""
        access, secret = issued.values.get("accessKey"), issued.values.get("secretKey")
        if access is None or secret is None:
            raise RehearsalFailed("IAM key rehearsal: the issued secret has no accessKey/secretKey")
        region = _text(fields.get("awsRegion")) or self._region
        key_id = access.get_secret_value()
        where = f"STS GetCallerIdentity with the new access key {key_id} ({region})"
        sts = aws_client(
            "sts",
            region=region,
            endpoint_url=self._sts_endpoint,
            timeout=self._timeout,
            max_attempts=1,
            access_key=access,
            secret_key=secret,
            session_factory=self._session_factory,
        )
        started = self._clock()
        attempts = 0
        try:
            while True:
                attempts += 1
                failure = _attempt(sts, secret)
                elapsed = self._clock() - started
                if failure is None:
                    log.info("iam key rehearsal passed", access_key_id=key_id, attempts=attempts)
                    return
                remaining = budget_seconds - elapsed
                retryable = failure.transient or failure.code in PROPAGATION_CODES
                if not retryable or remaining <= 0:
                    raise _rehearsal_failed(where, attempts, elapsed, failure)
                wait = random.uniform(0, min(BACKOFF_MAX, BACKOFF_INITIAL * 2 ** (attempts - 1)))
                wait = min(wait, remaining)
                log.info(
                    "iam key rehearsal attempt failed",
                    access_key_id=key_id,
                    attempt=attempts,
                    code=failure.code,
                    wait_seconds=round(wait, 3),
                )
                self._sleep(wait)
        finally:
            sts.close()

    # -- steps --------------------------------------------------------------------------

    def _user(self, key_hint: str | None) -> str:
        """The IAM user whose keys rotate: the spec's, else the owner of ``key_hint``."""
        if self._user_name:
            return self._user_name
        if not key_hint:
            raise SecretSourceError(
                "aws-iam: no user_name is configured and the credential has no accessKey to "
                "find its IAM user by"
            )
        user = self._owner(key_hint)
        if user is None:
            raise IdpRejected(
                f"aws-iam: access key {key_hint} is not in the account the service signs in "
                "to (or was deleted); set user_name in the secret source",
                code="NoSuchEntity",
            )
        return user

    def _user_of_key(self, key_id: str) -> str | None:
        """The user holding ``key_id``: None when the key is already gone."""
        if self._user_name:
            return self._user_name
        return self._owner(key_id)

    def _user_of_any(self, hints: list[str | None]) -> str:
        if self._user_name:
            return self._user_name
        for hint in hints:
            if hint and (user := self._owner(hint)) is not None:
                return user
        raise IdpRejected(
            "aws-iam: none of the access keys this revoke names is in the account the service "
            "signs in to; set user_name in the secret source",
            code="NoSuchEntity",
        )

    def _owner(self, key_id: str) -> str | None:
        """``GetAccessKeyLastUsed(key_id).UserName``; None for a key IAM does not know."""
        what = f"find the IAM user of access key {key_id}"
        try:
            reply = self._call(self._iam, what, "get_access_key_last_used", AccessKeyId=key_id)
        except IdpRejected as exc:
            if exc.code == "NoSuchEntity":
                return None
            raise
        user = reply.get("UserName")
        if not isinstance(user, str) or not user:
            raise SecretSourceError(f"{what}: the reply names no user")
        return user

    def _keys(self, user: str) -> list[IdpSecret]:
        what = f"list IAM access keys of {user}"
        reply = self._call(self._iam, what, "list_access_keys", UserName=user)
        keys: list[IdpSecret] = []
        for item in reply.get("AccessKeyMetadata") or []:
            key_id = item.get("AccessKeyId")
            if not isinstance(key_id, str) or not key_id:
                raise SecretSourceError(f"{what}: a key in the reply has no AccessKeyId")
            created = item.get("CreateDate")
            keys.append(
                IdpSecret(
                    id=key_id,
                    status="active" if item.get("Status") == "Active" else "inactive",
                    created=created.isoformat() if isinstance(created, datetime) else None,
                )
            )
        return keys

    def _retire(self, user: str, key_id: str) -> None:
        """Deactivate, then delete one key; a key that is already gone is done."""
        try:
            self._call(
                self._iam,
                f"deactivate IAM access key {key_id}",
                "update_access_key",
                UserName=user,
                AccessKeyId=key_id,
                Status="Inactive",
            )
            self._call(
                self._iam,
                f"delete IAM access key {key_id}",
                "delete_access_key",
                UserName=user,
                AccessKeyId=key_id,
            )
        except IdpRejected as exc:
            if exc.code != "NoSuchEntity":
                raise
            log.info("iam access key already gone", user=user, access_key_id=key_id)
            return
        log.info("iam access key revoked", user=user, access_key_id=key_id)

    def _call(self, client: Any, what: str, method: str, **params: Any) -> Any:
        try:
            return getattr(client, method)(**params)
        except Exception as exc:
            failure = classify(exc)
            if failure is None:
                raise
            raise _error(what, failure) from None


def _attempt(sts: Any, secret: SecretStr) -> AwsFailure | None:
    """One GetCallerIdentity; None when it passed (the identity is only logged)."""
    try:
        identity = sts.get_caller_identity()
    except Exception as exc:
        failure = classify(exc, scrub=[secret.get_secret_value()])
        if failure is None:
            raise
        return failure
    log.info("iam key rehearsal identity", arn=identity.get("Arn"))
    return None


def _rehearsal_failed(
    where: str, attempts: int, elapsed: float, last: AwsFailure
) -> RehearsalFailed:
    log.warning(
        "iam key rehearsal failed",
        where=where,
        attempts=attempts,
        code=last.code,
        status=last.status,
    )
    return RehearsalFailed(
        f"{where}: no success after {attempts} attempt(s) in {elapsed:.1f}s; AWS last "
        f"answered {last.label()}: {last.message}",
        status=last.status,
        error=last.code,
        description=last.message,
    )


def _error(what: str, failure: AwsFailure) -> Exception:
    label = failure.label()
    if failure.transient:
        return IdpUnavailable(
            f"{what}: AWS answered {label}: {failure.message}", status=failure.status
        )
    hint = _HINTS.get(failure.code or "")
    detail = "; ".join(part for part in (failure.message, hint) if part)
    cls = IdpLimitReached if failure.code == "LimitExceeded" else IdpRejected
    return cls(f"{what}: AWS answered {label}: {detail}", status=failure.status, code=failure.code)


def _text(value: object) -> str | None:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if not isinstance(value, str):
        return None
    return value.strip() or None
