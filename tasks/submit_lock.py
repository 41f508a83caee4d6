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
* ``memory``: Prefect's in-process ``MemoryLockManager`` (one process only).
* ``module:attribute``: any Prefect ``LockManager``, as an instance or as a class/factory
  called without arguments. Workers on several machines need a shared lock, e.g.
  prefect-redis (not a dependency of this package; ``pip install prefect-redis``)::

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
import hashlib
import importlib
import json
import logging
import os
import socket
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prefect.locking.protocol import LockManager

from prefect_hailuo.defaults import (
    SUBMIT_LOCK_DIR_ENV,
    SUBMIT_LOCK_HOLD_ENV,
    SUBMIT_LOCK_MANAGER_ENV,
)

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
    if spec == "memory":
        from prefect.locking.memory import MemoryLockManager

        return MemoryLockManager()
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"{SUBMIT_LOCK_MANAGER_ENV}={spec!r}: give 'filesystem', 'memory' or "
                         "'module:attribute' naming a Prefect LockManager")
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
