"""Single-flight lease per destination: a redis-py Lock renewed by a heartbeat, plus fencing.

The lock keeps two workers from running the same destination's rotation at once (for
example a redelivered message while the first run is still alive). The fencing generation
is bumped on every acquisition; :meth:`Lease.check` runs before each write to Redox, so a
worker that was paused past its TTL (and replaced) stops instead of writing.
:meth:`Lease.write_fenced` is the same check with a record write in the same atomic step,
so a replaced worker cannot leave a stale marker behind either.
"""

from __future__ import annotations

import contextvars
import threading
import time
import uuid
from types import TracebackType
from typing import Protocol

import redis
from redis.exceptions import LockError, LockNotOwnedError
from redis.lock import Lock

from worker.errors import LockLost
from worker.logging import get_logger
from worker.store.keys import Keys

__all__ = ["Fence", "FencedLock", "Lease"]

log = get_logger(__name__)

# KEYS: lock, generation. ARGV: token, ttl in ms. The new generation, or 0 if the lock is held.
_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', tonumber(ARGV[2])) then
  return redis.call('INCR', KEYS[2])
end
return 0
"""

# KEYS: lock, generation[, hash to write]. ARGV: token, generation[, field, value, ...].
_CHECK = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if redis.call('GET', KEYS[2]) ~= ARGV[2] then return 0 end
if #KEYS > 2 and #ARGV > 2 then
  redis.call('HSET', KEYS[3], unpack(ARGV, 3))
end
return 1
"""


class Fence(Protocol):
    """Anything that can veto a write (the single-flight lease)."""

    def check(self) -> None:
        """Raise LockLost if this worker must not write any more."""
        ...

    def write_fenced(self, key: str | None, mapping: dict[str, str]) -> None:
        """:meth:`check` and write ``mapping`` to the hash ``key`` in one atomic step."""
        ...

    def proof(self) -> tuple[list[str], list[str]]:
        """Keys, and the values they must hold while this fence passes: for another
        store's Lua step to check it atomically with its own write."""
        ...


class FencedLock(Lock):
    """redis-py's Lock, whose acquisition also bumps the fencing generation (one Lua step:
    no window in which the lock is ours but the old generation still passes a check)."""

    def __init__(self, client: redis.Redis, name: str, generation_key: str, *, ttl: float) -> None:
        super().__init__(client, name, timeout=ttl, blocking=False, thread_local=False)
        self.generation_key = generation_key
        self.generation = 0
        self._acquire_script = client.register_script(_ACQUIRE)

    def do_acquire(self, token: str) -> bool:
        """Take the lock with ``token`` and bump the generation, or leave both alone."""
        ttl_ms = int((self.timeout or 0) * 1000)
        generation = int(
            self._acquire_script(keys=[self.name, self.generation_key], args=[token, ttl_ms])
        )
        if generation:
            self.generation = generation
            return True
        return False


class Lease:
    """Hold the destination's lock while a rotation runs; use as a context manager."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        destination_id: str,
        *,
        ttl: float,
        renew_every: float,
    ) -> None:
        self._client = client
        self._lock_key = keys.lock(destination_id)
        self._generation_key = keys.generation(destination_id)
        self._ttl = ttl
        self._renew_every = min(renew_every, ttl / 3)
        self._lock = FencedLock(client, self._lock_key, self._generation_key, ttl=ttl)
        self._token = uuid.uuid4().hex
        self._check = client.register_script(_CHECK)
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self.generation = 0
        self.lost = False

    def acquire(self, wait: float = 0.0) -> bool:
        """Take the lock, waiting up to ``wait`` seconds (a run that just finished releases it
        a moment after its claim); on success bump and keep the fencing generation."""
        blocking = wait > 0
        timeout = wait if blocking else None
        if not self._lock.acquire(blocking=blocking, blocking_timeout=timeout, token=self._token):
            return False
        self.generation = self._lock.generation
        # copy_context: the heartbeat's log lines carry the bound rotation_id/destination_id.
        self._heartbeat = threading.Thread(
            target=contextvars.copy_context().run, args=(self._renew,),
            name="lease-heartbeat", daemon=True,
        )  # fmt: skip
        self._heartbeat.start()
        return True

    def remaining(self) -> float:
        """Seconds until the current holder's lock expires (0 when nobody holds it)."""
        ms = int(self._client.pttl(self._lock_key))
        return max(ms, 0) / 1000

    def _renew(self) -> None:
        renewed = time.monotonic()
        while not self._stop.wait(self._renew_every):
            try:
                self._lock.extend(self._ttl, replace_ttl=True)
                renewed = time.monotonic()
            except (LockNotOwnedError, LockError):
                self.lost = True
                log.warning("lease lost", lock=self._lock_key)
                return
            except redis.RedisError as exc:
                log.warning("lease renewal failed", lock=self._lock_key, error=type(exc).__name__)
                if time.monotonic() - renewed >= self._ttl:
                    # Not renewed for a whole TTL: another worker may hold it by now.
                    self.lost = True
                    log.warning("lease lost: not renewed within its ttl", lock=self._lock_key)
                    return

    def check(self) -> None:
        """Raise LockLost unless we still hold the lock at our generation (fencing)."""
        self.write_fenced(None, {})

    def write_fenced(self, key: str | None, mapping: dict[str, str]) -> None:
        """:meth:`check`, and write ``mapping`` to the hash ``key`` in the same atomic step
        (nothing is written when the lease is gone)."""
        if self.lost:
            raise LockLost("single-flight lease lost before a write")
        keys = [self._lock_key, self._generation_key]
        args: list[str | int] = [self._token, self.generation]
        if key is not None and mapping:
            keys.append(key)
            args.extend(item for pair in mapping.items() for item in pair)
        ok = self._check(keys=keys, args=args)
        if not int(ok):
            self.lost = True
            raise LockLost("single-flight lease taken over by another worker")

    def proof(self) -> tuple[list[str], list[str]]:
        """The lock must hold our token and the generation must still be ours."""
        return [self._lock_key, self._generation_key], [self._token, str(self.generation)]

    def release(self) -> None:
        """Stop the heartbeat and release the lock if we still own it."""
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=5)
        try:
            self._lock.release()
        except (LockNotOwnedError, LockError):
            pass
        except redis.RedisError as exc:
            log.warning("lease release failed", lock=self._lock_key, error=type(exc).__name__)

    def __enter__(self) -> Lease:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
