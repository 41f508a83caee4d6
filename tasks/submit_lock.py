"""The lock around a paid submit: two runs of the same request at the same moment pay once.

Why a lock: the submit cache (``tasks/generation.py``) lets a *re-run* find the task id an
earlier run paid for, but two runs submitting the same request at the same moment (two
processes, two workers) would both look, both miss and both pay. ``submit_generation``'s
cache policy therefore runs its transaction at Prefect's ``SERIALIZABLE`` isolation level
with the lock manager below: the first run takes the lock on the cache key, submits,
persists the task id and releases the lock; the second waits for the lock, then finds the
record and returns the same task id without sending anything.

Which lock manager (environment variable ``HAILUO_SUBMIT_LOCK_MANAGER``, read at the first
submit of a process):

* unset or ``filesystem`` (the default): lock files in ``HAILUO_SUBMIT_LOCK_DIR``, by
  default ``<Prefect's local result storage>/hailuo-submit-locks``. Every process and
  worker of one machine shares it. A lock left by a process that died (SIGKILL, OOM) is
  recognised at once (its pid, process start time and pid namespace are in the file) and
  broken; a lock written from another machine (a shared folder) counts as abandoned after
  ``HAILUO_SUBMIT_LOCK_HOLD_SECONDS`` (default 1800).
* ``prefect``: locks on the Prefect server itself (``PrefectLockManager``), for workers on
  several machines that share a Prefect server but no file system. Pair it with shared
  result storage (``PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK`` naming an S3 bucket block), or
  the second run gets the lock but not the first run's record;
  ``deployments.setup --results-bucket`` configures both for every worker of a pool.

  - *A lock is a slot of a global concurrency limit of limit 1*: the server's atomic
    increment grants it to one holder; the others get 423 and ask again (reading the
    count first, so waiting costs reads, not refused writes). A SQLite-backed server's 503
    ("database is locked") is answered here after a short pause, not with the Prefect
    client's seconds-long back-off (``submit_slots.asking_client``).
  - *Striped*: a cache key is hashed onto one of ``SUBMIT_LOCK_STRIPES`` (64) limits named
    ``hailuo-lock-00`` .. ``hailuo-lock-63``, created on demand. One limit per paid request
    would leave a limit object on the server for every request ever made; 64 fixed ones
    do not grow, and keys never reach the server. The price: two *different* requests
    that hash to the same stripe wait for each other (for one submit's duration). That is
    only a wait: every holder (a Prefect transaction) holds one key, so nobody waits for
    itself and there is no deadlock. ``is_locked`` may likewise say locked for a key
    nobody holds; callers only wait on it.
  - *Leased*: the slot is taken with a lease (``LEASE_SECONDS``, 2 minutes) that a thread
    of the holding process renews until the lock is released or its hold timeout
    (``HAILUO_SUBMIT_LOCK_HOLD_SECONDS``) ends. A worker that dies (SIGKILL, OOM, lost
    machine) stops renewing; the server's ``repossessor`` service frees the slot once the
    lease has expired (its loop runs every 15 s by default), so that request is blocked
    for about two minutes, never forever, and a failed release costs the same. Limits of
    Prefect's leases: at least 60 s (a shorter hold timeout still holds a minute), and
    expiry needs the repossessor: ``prefect server start`` runs it, the ephemeral
    test/auto-started server does not (there an unreleased lease holds until released).
    Leases live in the server's lease storage, by default in its memory: a server
    restart while a lock is held leaves that stripe taken (reset it with
    ``prefect gcl update hailuo-lock-NN --active-slots 0``), unless the server keeps
    leases persistently (``PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE`` naming
    ``prefect.server.concurrency.lease_storage.filesystem`` or prefect-redis's).
  - A stripe that someone deactivated or gave another limit or a slot decay is refused
    with an error (nothing is paid): it would lock nothing.

* ``memory``: Prefect's in-process ``MemoryLockManager`` (one process only).
* ``module:attribute``: any Prefect ``LockManager``, as an instance or as a class/factory
  called without arguments, e.g. prefect-redis's (not a dependency of this package;
  ``pip install prefect-redis``)::

      # my_locks.py, importable on every worker
      from prefect_redis.locking import RedisLockManager
      lock_manager = RedisLockManager(host="redis.internal", port=6379)

      # in the workers' environment
      HAILUO_SUBMIT_LOCK_MANAGER=my_locks:lock_manager

  The result storage must then be shared too (e.g. ``PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK``
  naming an S3 bucket block), or the second run gets the lock but not the first run's
  record. Such locks are taken with a hold timeout of ``HAILUO_SUBMIT_LOCK_HOLD_SECONDS``,
  so a worker that dies holding one does not block that request forever.

Every manager is wrapped in ``SubmitLockManager``, which resolves it lazily (settings are
read when the first submit runs, not at import) and makes releasing a lock that is no
longer held a no-op: Prefect releases a nested SERIALIZABLE transaction's lock once when
it commits and again when its parent commits (our submits run inside an EAGER parent
transaction, see ``flows/pipeline.py::_submit``), and every bundled manager raises on the
second release.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import importlib
import json
import logging
import os
import random
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
from prefect.locking.protocol import LockManager

from prefect_hailuo.defaults import (
    SUBMIT_LOCK_DIR_ENV,
    SUBMIT_LOCK_HOLD_ENV,
    SUBMIT_LOCK_LIMIT_PREFIX,
    SUBMIT_LOCK_MANAGER_ENV,
    SUBMIT_LOCK_MANAGER_PREFECT,
    SUBMIT_LOCK_STRIPES,
)
from prefect_hailuo.tasks.submit_slots import asking_client

logger = logging.getLogger("prefect_hailuo.submit_lock")

DEFAULT_HOLD_SECONDS = 1800.0
LOCK_FOLDER_NAME = "hailuo-submit-locks"
#: A lock file that exists but cannot be parsed (never written by this module, which
#: creates the file with its content in one step) counts as abandoned after this long.
_UNREADABLE_GRACE_SECONDS = 30.0
_POLL_SECONDS = 0.05


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            return handle.read().strip()
    except OSError:
        return None


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), None elsewhere."""
    stat = _read_text(f"/proc/{pid}/stat")
    if not stat:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None  # field 22 of proc(5)


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def this_process() -> dict[str, Any]:
    """What identifies the running process on this machine, as written into a lock."""
    return {"host": socket.gethostname(), "boot": _read_text("/proc/sys/kernel/random/boot_id"),
            "pidns": _pid_namespace(), "pid": os.getpid(), "start": _start_time(os.getpid())}


def _alive(pid: int, start: str | None) -> bool:
    if start is not None:
        return _start_time(pid) == start  # gone, or the pid was reused by another process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class FileLockManager(LockManager):
    """Locks as files, one per key, created atomically with their content (a hard link
    of a fully written temporary file), so a reader never sees a half-written lock.

    A lock is free when its file is absent or abandoned: written by a process of this
    machine (same host name, boot and pid namespace) that no longer runs, or, for
    any other writer, past its expiration."""

    def __init__(self, directory: Path | str,
                 foreign_hold_seconds: float = DEFAULT_HOLD_SECONDS) -> None:
        self.directory = Path(directory).expanduser()
        self.foreign_hold_seconds = foreign_hold_seconds
        self._me = this_process()

    # -- files -----------------------------------------------------------------------
    def path_for(self, key: str) -> Path:
        """Cache keys may hold any character: the file is named by the key's hash."""
        return self.directory / f"{hashlib.sha256(key.encode()).hexdigest()[:40]}.lock"

    def _write_exclusive(self, path: Path, content: dict[str, Any]) -> bool:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / f".{uuid.uuid4().hex}.tmp"
        tmp.write_text(json.dumps(content))
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        except OSError:  # a filesystem without hard links: exclusive create, then fill
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w") as handle:
                handle.write(json.dumps(content))
            return True
        finally:
            tmp.unlink(missing_ok=True)

    def _read(self, path: Path) -> dict[str, Any] | None:
        """The lock's content; None when there is no lock; ``{}`` when unreadable."""
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError:
            return {}
        try:
            info = json.loads(raw)
        except ValueError:
            return {}
        return info if isinstance(info, dict) else {}

    def _abandoned(self, path: Path, info: dict[str, Any]) -> bool:
        if not info.get("holder"):
            try:
                age = time.time() - path.stat().st_mtime
            except FileNotFoundError:
                return True
            return age > _UNREADABLE_GRACE_SECONDS
        me = self._me
        local = (info.get("host") == me["host"] and info.get("pidns") == me["pidns"])
        if local and info.get("boot") and me["boot"] and info["boot"] != me["boot"]:
            return True  # written before this machine restarted
        if local and isinstance(info.get("pid"), int) and sys.platform != "win32":
            # (on Windows os.kill(pid, 0) would terminate the process: expiration only)
            return not _alive(info["pid"], info.get("start"))
        expiration = info.get("expiration")
        if expiration is None:
            return False
        try:
            return datetime.fromisoformat(expiration) < datetime.now(UTC)
        except ValueError:
            return True

    def _break(self, path: Path, stale: dict[str, Any]) -> None:
        """Remove an abandoned lock, unless it changed meanwhile (another process may have
        broken it and taken a fresh one): the removal happens under a short breaker lock,
        and only if the file still holds the abandoned content."""
        breaker = path.with_suffix(".break")
        mine = {**self._me, "holder": f"breaker-{uuid.uuid4().hex}",
                "expiration": (datetime.now(UTC) + timedelta(seconds=60)).isoformat()}
        if not self._write_exclusive(breaker, mine):
            other = self._read(breaker)
            if other is not None and self._abandoned(breaker, other):
                with contextlib.suppress(FileNotFoundError):
                    breaker.unlink()
            return  # another process is breaking it: look again
        try:
            if self._read(path) == stale:
                logger.warning("breaking an abandoned submit lock %s (holder pid %s on %s)",
                               path.name, stale.get("pid"), stale.get("host"))
                path.unlink(missing_ok=True)
        finally:
            breaker.unlink(missing_ok=True)

    def _current(self, key: str) -> dict[str, Any] | None:
        """The live lock on ``key`` (abandoned ones are broken on the way), or None."""
        path = self.path_for(key)
        for _ in range(3):
            info = self._read(path)
            if info is None:
                return None
            if not self._abandoned(path, info):
                return info
            self._break(path, info)
        return self._read(path)

    # -- the LockManager protocol ----------------------------------------------------
    def acquire_lock(self, key: str, holder: str, acquire_timeout: float | None = None,
                     hold_timeout: float | None = None) -> bool:
        path = self.path_for(key)
        hold = hold_timeout if hold_timeout is not None else self.foreign_hold_seconds
        deadline = None if acquire_timeout is None else time.monotonic() + acquire_timeout
        while True:
            content = {**self._me, "holder": holder, "key": key[:200],
                       "expiration": (datetime.now(UTC) + timedelta(seconds=hold)).isoformat()}
            if self._write_exclusive(path, content):
                return True
            current = self._current(key)
            if current is not None and current.get("holder") == holder:
                return True
            if current is None:
                continue
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_SECONDS)

    async def aacquire_lock(self, key: str, holder: str, acquire_timeout: float | None = None,
                            hold_timeout: float | None = None) -> bool:
        deadline = None if acquire_timeout is None else time.monotonic() + acquire_timeout
        while True:
            if self.acquire_lock(key, holder, acquire_timeout=0, hold_timeout=hold_timeout):
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            await asyncio.sleep(_POLL_SECONDS)

    def release_lock(self, key: str, holder: str) -> None:
        path = self.path_for(key)
        info = self._read(path)
        if not info or info.get("holder") != holder:
            raise ValueError(f"No lock held by {holder} for transaction with key {key}")
        path.unlink(missing_ok=True)

    def is_locked(self, key: str) -> bool:
        return self._current(key) is not None

    def is_lock_holder(self, key: str, holder: str) -> bool:
        current = self._current(key)
        return current is not None and current.get("holder") == holder

    def wait_for_lock(self, key: str, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.is_locked(key):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_SECONDS)
        return True

    async def await_for_lock(self, key: str, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.is_locked(key):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            await asyncio.sleep(_POLL_SECONDS)
        return True


# -- locks on the Prefect server (several machines) ------------------------------------
#: The server accepts leases of one minute to one day (``increment-with-lease``).
_MIN_LEASE_SECONDS = 60.0
_MAX_LEASE_SECONDS = 86400.0
#: The lease a living holder keeps renewing (every quarter of it, in a background thread):
#: a worker that dies frees its lock within this (plus the repossessor's loop) rather than
#: after the whole hold timeout.
LEASE_SECONDS = 120.0
#: How long a busy (503) SQLite-backed server is asked again before a call gives up.
_BUSY_PATIENCE_SECONDS = 60.0


def _clamp_lease(seconds: float) -> float:
    return min(_MAX_LEASE_SECONDS, max(_MIN_LEASE_SECONDS, seconds))


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _lease_holder() -> Any:
    """The task run taking the lock, recorded with the lease (the server shows who holds
    a slot); None outside a task run."""
    from prefect.client.schemas.objects import ConcurrencyLeaseHolder
    from prefect.context import TaskRunContext

    context = TaskRunContext.get()
    task_run = getattr(context, "task_run", None)
    return ConcurrencyLeaseHolder(type="task_run", id=task_run.id) if task_run else None


@dataclass
class _Held:
    """A lock this process holds: its lease, and until when it keeps renewing it."""

    stripe: str
    lease_id: UUID
    until: float  # time.monotonic() at which the hold timeout ends
    expires: float  # time.monotonic() at which the lease runs out unless renewed
    #: The acquiring thread's context: the renewal thread renews in it, so it asks the
    #: same server (Prefect settings such as the API URL may be set per context, and a
    #: new thread would otherwise see only the process's global ones).
    context: contextvars.Context


class PrefectLockManager(LockManager):
    """Locks as leased slots of Prefect global concurrency limits of limit 1 (see the
    module docstring): the server's atomic increment is the mutex, its lease the dead
    holder's release.

    A key is hashed onto one of ``stripes`` limits (``<prefix><nn>``), created when first
    needed. Which lease a (key, holder) holds is remembered in this process only, which is
    all the protocol needs: Prefect's transaction holders are per-transaction UUIDs, so
    only the process that took a lock ever releases it or asks whether it holds it.
    """

    def __init__(self, stripes: int = SUBMIT_LOCK_STRIPES,
                 prefix: str = SUBMIT_LOCK_LIMIT_PREFIX,
                 lease_seconds: float = LEASE_SECONDS,
                 default_hold_seconds: float = DEFAULT_HOLD_SECONDS,
                 poll_seconds: tuple[float, float] = (0.1, 0.3)) -> None:
        if stripes < 1:
            raise ValueError("a Prefect lock manager needs at least one stripe")
        self.stripes = stripes
        self.prefix = prefix
        self.lease_seconds = _clamp_lease(lease_seconds)
        self.default_hold_seconds = default_hold_seconds
        self.poll_seconds = poll_seconds
        self._held: dict[tuple[str, str], _Held] = {}
        self._guard = threading.Lock()
        self._renewer: threading.Thread | None = None
        self._wake = threading.Event()

    # -- the server --------------------------------------------------------------------
    def stripe_for(self, key: str) -> str:
        """The limit guarding ``key``: a hash, so keys (which may hold any character)
        never reach the server and spread evenly over the stripes."""
        index = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % self.stripes
        return f"{self.prefix}{index:0{len(str(self.stripes - 1))}d}"

    @staticmethod
    def _client() -> Any:
        """A client that hands a busy (503) or full (423) answer straight back: the waits
        here are ours, never the Prefect client's growing back-off (see ``asking_client``)."""
        return asking_client()

    @staticmethod
    def _patiently(call: Any, patience: float = _BUSY_PATIENCE_SECONDS) -> Any:
        """``call()``, asked again after a short jittered pause while the server's database
        is busy (503)."""
        deadline = time.monotonic() + patience
        while True:
            try:
                return call()
            except httpx.HTTPStatusError as exc:
                if _status(exc) != 503 or time.monotonic() >= deadline:
                    raise
            time.sleep(random.uniform(0.05, 0.2))

    def _read_stripe(self, client: Any, name: str, create: bool = True) -> Any:
        """The stripe's limit, created (limit 1, no decay) when missing; None when missing
        and ``create`` is false. A stripe someone changed so that it no longer excludes
        (inactive, a limit other than 1, slot decay) is refused: taking a slot of it
        would lock nothing, and the caller would pay unprotected."""
        from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
        from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

        for _ in range(5):
            try:
                limit = self._patiently(lambda: client.read_global_concurrency_limit_by_name(name))
            except ObjectNotFound:
                if not create:
                    return None
                with contextlib.suppress(ObjectAlreadyExists):  # another process raced us
                    self._patiently(lambda: client.create_global_concurrency_limit(
                        GlobalConcurrencyLimitCreate(name=name, limit=1, active=True,
                                                     slot_decay_per_second=0.0)))
                continue
            if not limit.active or limit.limit != 1 or limit.slot_decay_per_second:
                raise RuntimeError(
                    f"global concurrency limit {name!r} is a submit lock but is not an active "
                    f"limit of 1 without slot decay (active={limit.active}, limit="
                    f"{limit.limit}, decay={limit.slot_decay_per_second}); delete it (it is "
                    "created again when needed) or restore it")
            return limit
        raise RuntimeError(f"global concurrency limit {name!r} keeps disappearing")

    def _take(self, client: Any, stripe: str, lease_seconds: float) -> UUID | None:
        """One ask for the stripe's slot: the lease id, or None when it is taken (423)
        or the limit vanished meanwhile. A busy server (503) rolled the ask back, so it
        is asked again."""
        try:
            response = self._patiently(lambda: client.increment_concurrency_slots_with_lease(
                names=[stripe], slots=1, mode="concurrency", lease_duration=lease_seconds,
                holder=_lease_holder()))
        except httpx.HTTPStatusError as exc:
            if _status(exc) == 423:
                return None
            raise
        body = response.json()
        lease_id = UUID(body["lease_id"])
        if stripe not in [limit.get("name") for limit in body.get("limits", [])]:
            # The server grants a lease on limits that do not exist (nothing to count):
            # the stripe was deleted between our read and this ask. Give it back, retry.
            self._release_lease(lease_id)
            return None
        return lease_id

    def _release_lease(self, lease_id: UUID) -> None:
        """Give a lease back. Never raises: a release that fails (server unreachable) is
        logged, and the lease, no longer renewed, expires within ``lease_seconds``."""
        try:
            with self._client() as client:
                self._patiently(lambda: client.release_concurrency_slots_with_lease(lease_id))
        except Exception as exc:  # noqa: BLE001 - the lease expiry is the fallback
            logger.warning("could not release submit lock lease %s (%s); it expires by "
                           "itself within %.0f s", lease_id, exc, self.lease_seconds)

    # -- renewal -----------------------------------------------------------------------
    def _start_renewer(self) -> None:
        with self._guard:
            if self._renewer is None or not self._renewer.is_alive():
                self._renewer = threading.Thread(target=self._renew_loop, daemon=True,
                                                 name="hailuo-submit-lock-renewer")
                self._renewer.start()
            self._wake.set()

    def _renew_loop(self) -> None:
        """Keep every held lease alive until its hold timeout; ends when nothing is held."""
        while True:
            with self._guard:
                if not self._held:
                    self._renewer = None
                    return
                now = time.monotonic()
                due = [(k, h) for k, h in self._held.items()
                       if h.expires < h.until and now >= h.expires - self.lease_seconds * 0.75]
                later = [h.expires - self.lease_seconds * 0.75 for h in self._held.values()
                         if h.expires < h.until]
            if due:
                self._renew(due)
                continue
            self._wake.clear()
            self._wake.wait(timeout=min([5.0, *[max(0.05, t - now) for t in later]]))

    def _renew(self, due: list[tuple[tuple[str, str], _Held]]) -> None:
        failed = False
        for key, held in due:
            try:
                held.context.run(self._renew_one, key, held)
            except Exception as exc:  # noqa: BLE001 - a renewal that failed is tried again
                logger.warning("could not renew submit lock lease %s (%s); trying again",
                               held.lease_id, exc)
                failed = True
        if failed:
            time.sleep(1.0)

    def _renew_one(self, key: tuple[str, str], held: _Held) -> None:
        seconds = _clamp_lease(min(self.lease_seconds, held.until - time.monotonic()))
        try:
            with self._client() as client:
                self._patiently(lambda: client.renew_concurrency_lease(
                    held.lease_id, lease_duration=seconds), patience=10.0)
        except httpx.HTTPStatusError as exc:
            if _status(exc) != 410:
                raise
            # expired and repossessed (the server was out of reach longer than a lease):
            # someone else may hold the lock now
            logger.warning("submit lock lease %s was lost (expired)", held.lease_id)
            with self._guard:
                if self._held.get(key) is held:
                    del self._held[key]
            return
        with self._guard:
            held.expires = time.monotonic() + seconds

    # -- the LockManager protocol ------------------------------------------------------
    def acquire_lock(self, key: str, holder: str, acquire_timeout: float | None = None,
                     hold_timeout: float | None = None) -> bool:
        hold = hold_timeout if hold_timeout is not None else self.default_hold_seconds
        with self._guard:
            mine = self._held.get((key, holder))
            if mine is not None:  # the holder again: re-entrant, and held a while longer
                mine.until = max(mine.until, time.monotonic() + hold)
                self._wake.set()
                return True
        stripe = self.stripe_for(key)
        lease = _clamp_lease(min(self.lease_seconds, hold))
        deadline = None if acquire_timeout is None else time.monotonic() + acquire_timeout
        with self._client() as client:
            while True:
                limit = self._read_stripe(client, stripe)
                if limit.active_slots < limit.limit:  # ask only when the count says free
                    started = time.monotonic()
                    lease_id = self._take(client, stripe, lease)
                    if lease_id is not None:
                        with self._guard:
                            self._held[(key, holder)] = _Held(
                                stripe=stripe, lease_id=lease_id, until=started + hold,
                                expires=started + lease, context=contextvars.copy_context())
                        self._start_renewer()
                        return True
                if deadline is not None and time.monotonic() >= deadline:
                    return False
                pause = random.uniform(*self.poll_seconds)
                if deadline is not None:
                    pause = min(pause, max(0.0, deadline - time.monotonic()))
                time.sleep(pause)

    async def aacquire_lock(self, key: str, holder: str, acquire_timeout: float | None = None,
                            hold_timeout: float | None = None) -> bool:
        deadline = None if acquire_timeout is None else time.monotonic() + acquire_timeout
        while True:
            if await asyncio.to_thread(self.acquire_lock, key, holder, 0, hold_timeout):
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            await asyncio.sleep(random.uniform(*self.poll_seconds))

    def release_lock(self, key: str, holder: str) -> None:
        with self._guard:
            held = self._held.pop((key, holder), None)
        if held is None:
            raise ValueError(f"No lock held by {holder} for transaction with key {key}")
        self._release_lease(held.lease_id)

    def is_locked(self, key: str) -> bool:
        """Whether the key's stripe is taken. A stripe is shared by many keys, so this may
        say locked for a key nobody holds (another key of its stripe is held): callers
        only wait on it, so that is a wait, never a wrong answer about a held key."""
        with self._client() as client:
            limit = self._read_stripe(client, self.stripe_for(key), create=False)
        return limit is not None and limit.active_slots >= limit.limit

    def is_lock_holder(self, key: str, holder: str) -> bool:
        with self._guard:
            return (key, holder) in self._held

    def wait_for_lock(self, key: str, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.is_locked(key):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(random.uniform(*self.poll_seconds))
        return True

    async def await_for_lock(self, key: str, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while await asyncio.to_thread(self.is_locked, key):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            await asyncio.sleep(random.uniform(*self.poll_seconds))
        return True

    def __repr__(self) -> str:
        return f"PrefectLockManager(stripes={self.stripes}, prefix={self.prefix!r})"


# -- configuration ---------------------------------------------------------------------
_RESOLVED: dict[tuple[str, str, float], LockManager] = {}
_RESOLVED_LOCK = threading.Lock()


def hold_seconds() -> float:
    raw = os.environ.get(SUBMIT_LOCK_HOLD_ENV, "").strip()
    try:
        value = float(raw) if raw else DEFAULT_HOLD_SECONDS
    except ValueError:
        raise ValueError(f"{SUBMIT_LOCK_HOLD_ENV}={raw!r} is not a number of seconds") from None
    if value <= 0:
        raise ValueError(f"{SUBMIT_LOCK_HOLD_ENV} must be positive")
    return value


def lock_directory() -> Path:
    """``HAILUO_SUBMIT_LOCK_DIR``, else a folder in Prefect's local result storage."""
    explicit = os.environ.get(SUBMIT_LOCK_DIR_ENV, "").strip()
    if explicit:
        return Path(explicit).expanduser()
    from prefect.settings import get_current_settings

    return Path(get_current_settings().results.local_storage_path) / LOCK_FOLDER_NAME


def configured_lock_manager() -> LockManager:
    """The lock manager the environment names (see the module docstring), built once per
    distinct setting."""
    spec = os.environ.get(SUBMIT_LOCK_MANAGER_ENV, "").strip() or "filesystem"
    hold = hold_seconds()
    folder = str(lock_directory()) if spec == "filesystem" else ""
    with _RESOLVED_LOCK:
        found = _RESOLVED.get((spec, folder, hold))
        if found is None:
            found = _build(spec, folder, hold)
            _RESOLVED[(spec, folder, hold)] = found
        return found


def _build(spec: str, folder: str, hold: float) -> LockManager:
    if spec == "filesystem":
        return FileLockManager(Path(folder), foreign_hold_seconds=hold)
    if spec == SUBMIT_LOCK_MANAGER_PREFECT:
        return PrefectLockManager(default_hold_seconds=hold)
    if spec == "memory":
        from prefect.locking.memory import MemoryLockManager

        return MemoryLockManager()
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"{SUBMIT_LOCK_MANAGER_ENV}={spec!r}: give 'filesystem', 'prefect', "
                         "'memory' or 'module:attribute' naming a Prefect LockManager")
    value: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        value = getattr(value, part)
    # (a class passes the runtime Protocol check too: it has the methods as attributes)
    if isinstance(value, type) or (not isinstance(value, LockManager) and callable(value)):
        try:
            value = value()
        except TypeError as exc:
            raise ValueError(f"{SUBMIT_LOCK_MANAGER_ENV}={spec!r} cannot be called without "
                             f"arguments to build a LockManager: {exc}") from None
    if isinstance(value, type) or not isinstance(value, LockManager):
        raise ValueError(f"{SUBMIT_LOCK_MANAGER_ENV}={spec!r} is not a Prefect LockManager "
                         f"(got {type(value).__name__})")
    return value


class SubmitLockManager(LockManager):
    """The lock manager of ``submit_generation``'s cache policy: delegates to the
    configured one (resolved when first used), gives every lock a hold timeout and treats
    releasing a lock that is no longer held as done (see the module docstring)."""

    def _inner(self) -> LockManager:
        return configured_lock_manager()

    def acquire_lock(self, key: str, holder: str, acquire_timeout: float | None = None,
                     hold_timeout: float | None = None) -> bool:
        return self._inner().acquire_lock(
            key, holder, acquire_timeout=acquire_timeout,
            hold_timeout=hold_timeout if hold_timeout is not None else hold_seconds())

    async def aacquire_lock(self, key: str, holder: str, acquire_timeout: float | None = None,
                            hold_timeout: float | None = None) -> bool:
        return await self._inner().aacquire_lock(
            key, holder, acquire_timeout=acquire_timeout,
            hold_timeout=hold_timeout if hold_timeout is not None else hold_seconds())

    def release_lock(self, key: str, holder: str) -> None:
        inner = self._inner()
        if not inner.is_lock_holder(key, holder):
            logger.debug("submit lock %s already released", key)
            return
        inner.release_lock(key, holder)

    def is_locked(self, key: str) -> bool:
        return self._inner().is_locked(key)

    def is_lock_holder(self, key: str, holder: str) -> bool:
        return self._inner().is_lock_holder(key, holder)

    def wait_for_lock(self, key: str, timeout: float | None = None) -> bool:
        return self._inner().wait_for_lock(key, timeout)

    async def await_for_lock(self, key: str, timeout: float | None = None) -> bool:
        return await self._inner().await_for_lock(key, timeout)

    def __repr__(self) -> str:
        return "SubmitLockManager()"
