"""A cap on tasks in flight at the provider, per key, shared by every worker.

Why: MiniMax and APIMart limit how many generations one key may have running at once,
besides how many it may submit per minute. A batch spread over several workers would
otherwise submit past that cap and be refused (or, worse, queued by the provider and
timed out on our side). The cap is a Prefect global concurrency limit named
``hailuo-inflight-<account>`` (``inflight_limit_name``; ``<account>`` is the key's salted
hash, never the key), created by ``python -m prefect_hailuo.deployments.setup --in-flight
N``. Without that limit nothing is capped (a single user without the operator set-up).

How a slot is held: a paid submit (``tasks.generation.submit_generation``, only when it
really sends, never for a cached task id) takes one slot *with a lease* just before it
sends, and the slot stays taken until the clip's wait is over (``release``, called by
the flow where it stops tracking the task, whatever the outcome). The lease is renewed by
one background thread per process; if the process dies the server frees the slot when
the lease runs out (``LEASE_SECONDS``), so a crashed worker never holds the account's
capacity for ever. A resumed wait (a re-run that finds the task id in the submit cache)
takes no slot: nothing new is sent.

Waiting for a slot reads the limit first and asks only when the server's own count says
one is free, like ``tasks.submit_slots`` (an ask that is refused is itself a write, and a
SQLite-backed server answers 503 while busy: those answers come back at once through
``asking_client`` and are asked again after a short pause, not after Prefect's own 2 s+
back-off).
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from typing import Any
from uuid import UUID

import httpx

from prefect_hailuo.defaults import INFLIGHT_LIMIT_PREFIX
from prefect_hailuo.tasks.submit_slots import asking_client

log = logging.getLogger("prefect_hailuo.inflight")

#: How long a slot stays taken without renewal (a crashed holder frees it after this).
LEASE_SECONDS = 300.0
#: How often the holder renews every lease it holds.
RENEW_EVERY_SECONDS = 60.0


def inflight_limit_name(account: str) -> str:
    """The limit capping one account's tasks in flight (holds no secret)."""
    return f"{INFLIGHT_LIMIT_PREFIX}{account}"


class _Leases:
    """This process's leases: task id (or a placeholder until the submit answers) ->
    lease id, renewed by one daemon thread while any is held."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, UUID] = {}
        self._thread: threading.Thread | None = None

    def add(self, key: str, lease_id: UUID) -> None:
        with self._lock:
            self._held[key] = lease_id
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._renew_forever,
                                                name="hailuo-inflight-renew", daemon=True)
                self._thread.start()

    def rename(self, old: str, new: str) -> None:
        with self._lock:
            if old in self._held:
                self._held[new] = self._held.pop(old)

    def pop(self, key: str) -> UUID | None:
        with self._lock:
            return self._held.pop(key, None)

    def held(self) -> list[UUID]:
        with self._lock:
            return list(self._held.values())

    def _renew_forever(self) -> None:
        from prefect.client.orchestration import get_client

        while True:
            time.sleep(RENEW_EVERY_SECONDS)
            leases = self.held()
            if not leases:
                with self._lock:
                    if not self._held:
                        self._thread = None
                        return
                continue
            try:
                with get_client(sync_client=True) as client:
                    for lease_id in leases:
                        try:
                            client.renew_concurrency_lease(lease_id, LEASE_SECONDS)
                        except Exception as exc:  # noqa: BLE001 - one lease, not all
                            log.warning("could not renew in-flight lease %s: %s", lease_id, exc)
            except Exception as exc:  # noqa: BLE001 - the server may be briefly away
                log.warning("could not renew in-flight leases: %s", exc)


_LEASES = _Leases()


def acquire(account: str, holder_key: str, *, max_wait_seconds: float = 3600.0,
            sleep: Any = time.sleep) -> bool:
    """Block until the account's in-flight limit grants a slot, held under ``holder_key``.

    Returns False (and holds nothing) when the account has no such limit or it is
    inactive. Raises ``TimeoutError`` after ``max_wait_seconds`` (nothing held, nothing
    sent).
    """
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    name = inflight_limit_name(account)
    deadline = time.monotonic() + max_wait_seconds
    told = False
    with get_client(sync_client=True) as client, contextlib.ExitStack() as later:
        asking = None
        while True:
            try:
                limit = client.read_global_concurrency_limit_by_name(name)
            except ObjectNotFound:
                return False
            if not limit.active:
                return False
            if limit.active_slots < limit.limit:
                if asking is None:
                    asking = later.enter_context(asking_client())
                try:
                    response = asking.increment_concurrency_slots_with_lease(
                        names=[name], slots=1, mode="concurrency", lease_duration=LEASE_SECONDS)
                    _LEASES.add(holder_key, UUID(str(response.json()["lease_id"])))
                    return True
                except httpx.HTTPStatusError as exc:
                    if exc.response.status_code not in (423, 503):
                        raise
                wait = random.uniform(0.05, 0.25)
            else:
                if not told:
                    log.info("waiting for an in-flight slot of %s (%d of %d in use)", name,
                             limit.active_slots, limit.limit)
                    told = True
                wait = random.uniform(0.5, 1.5)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {name!r} slot within {max_wait_seconds:.0f} s")
            sleep(min(left, wait))


def attach(holder_key: str, task_id: str) -> None:
    """The submit answered: the slot taken under ``holder_key`` now belongs to ``task_id``
    (released when the flow is done with that task)."""
    _LEASES.rename(holder_key, task_id)


def release(key: str) -> None:
    """Give back the slot held for ``key`` (a task id, or the placeholder of a submit that
    failed). A key with no slot (nothing capped, a resumed wait) is a no-op. Never raises:
    at worst the server frees the slot when its lease runs out."""
    lease_id = _LEASES.pop(key)
    if lease_id is None:
        return
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            client.release_concurrency_slots_with_lease(lease_id)
    except Exception as exc:  # noqa: BLE001 - the lease expires on its own
        log.warning("could not release in-flight slot (it frees itself within %.0f s): %s",
                    LEASE_SECONDS, exc)


def held_count() -> int:
    """How many slots this process holds (for tests and diagnostics)."""
    return len(_LEASES.held())
