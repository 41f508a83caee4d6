"""Taking a slot of the shared ``hailuo-submit`` rate limit without starving it.

The limit is a Prefect global concurrency limit in rate-limit mode (a leaky bucket, sized
by ``deployments.limits``), so every worker on every machine shares one budget and a slot
is only ever granted by the server's own atomic increment.

Why not ``prefect.concurrency.sync.rate_limit``: it asks the server until it is granted,
and each refusal (HTTP 423) is itself an update of the limit's row. The server decays
``active_slots`` by ``floor(decay * seconds since the row was last updated)``, and a
refusal refreshes that timestamp without applying the decay, so under contention the
decay that had built up is thrown away and the bucket drains far slower than configured
(benchmark B8 measured a third of the allowed rate with two workers). Here a process
first *reads* the limit (a read changes nothing), asks only when the server's own count
says a slot is free, and otherwise sleeps until the next slot decays. Refusals still
happen when two processes race for the same slot; they are rare, and answered the same way.

One thread per process asks at a time (as Prefect's own acquisition service does), so a
batch's many threads do not compete with each other. The ask itself is retried quickly
when a SQLite-backed server is busy (see ``asking_client``).
"""

from __future__ import annotations

import math
import random
import threading
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from typing import Any

import httpx

from prefect_hailuo.defaults import SUBMIT_LIMIT_NAME

_ONE_AT_A_TIME = threading.Lock()

#: Answers the caller handles itself, at once: 503 (a SQLite-backed server's database was
#: busy: ask again after a short pause) and 423 (another process took the slot: read again).
ANSWERED_HERE = frozenset({423, 503})


def seconds_until_free(active_slots: int, limit: int, decay_per_second: float,
                       updated: datetime | None, now: datetime) -> float:
    """How long until one more slot fits, from the server's decayed count.

    ``active_slots`` is already decayed by the server; the next slot leaks away when
    ``decay * (now - updated)`` reaches its next whole number.
    """
    need = active_slots + 1 - limit
    if need <= 0:
        return 0.0
    if decay_per_second <= 0:
        return math.inf
    elapsed = max(0.0, (now - updated).total_seconds()) if updated else 0.0
    leaked = decay_per_second * elapsed
    return max(0.0, (math.floor(leaked) + need) / decay_per_second - elapsed)


def _fail_fast(response: httpx.Response) -> None:
    """httpx response hook of the asking client: a busy or refused answer goes straight to
    the caller as ``httpx.HTTPStatusError``.

    The Prefect client retries only the exceptions and status codes it lists (its
    ``_send_with_retry``); an exception raised by a response hook ends its ``send`` at
    once, so it neither sleeps nor asks again.
    """
    if response.status_code in ANSWERED_HERE:
        response.read()  # small JSON; lets the error carry its text
        raise httpx.HTTPStatusError(
            f"{response.status_code} from {response.request.method} {response.request.url}",
            request=response.request, response=response)


def asking_client(httpx_settings: dict[str, Any] | None = None) -> Any:
    """The Prefect client the slot is asked with: one ask, no back-off on a busy server.

    A Prefect server on SQLite answers 503 ("database is locked") whenever another write
    holds the database, which during a batch is much of the time. The Prefect client
    retries a 503 after sleeping 2 s, 4 s, ... (and sleeps even when
    ``PREFECT_CLIENT_MAX_RETRIES=0``), and every submit of the process would queue behind
    that sleep. ``PREFECT_CLIENT_RETRY_EXTRA_CODES`` can only add codes, not remove 503.
    So this client is the ordinary one from the public ``get_client(httpx_settings=...)``
    (same API URL, auth, CSRF handling, connection retries) with one httpx response hook,
    ``_fail_fast``; the caller retries a 503 after a short jittered pause. A refused or
    failed ask takes no slot; one whose answer is lost may have taken one, which only slows
    us.

    It is a client of its own (the run's shared client cannot take a hook), made once per
    ``take_submit_slot`` and only when a slot is free: a new connection and, where CSRF
    support is on, one token request, next to a submit's many API calls. Use it as a
    context manager. ``httpx_settings`` are passed on (tests give a mock transport).
    """
    from prefect.client.orchestration import get_client

    settings = {**(httpx_settings or {}), "event_hooks": {"response": [_fail_fast]}}
    return get_client(sync_client=True, httpx_settings=settings)


def _increment_once(client: Any, name: str) -> None:
    """One ask through the public client call (with ``asking_client`` a 503 or 423 raises
    ``httpx.HTTPStatusError`` at once)."""
    client.increment_concurrency_slots(names=[name], slots=1, mode="rate_limit")


def take_submit_slot(name: str = SUBMIT_LIMIT_NAME, *, max_wait_seconds: float = 3600.0,
                     sleep: Any = time.sleep) -> bool:
    """Block until the shared limit grants one slot.

    Returns False when no such limit exists or it is inactive (a single user without the
    operator set-up: nothing to respect), True once a slot is taken. Raises
    ``TimeoutError`` after ``max_wait_seconds`` (then nothing was taken and nothing sent).
    """
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    deadline = time.monotonic() + max_wait_seconds
    with _ONE_AT_A_TIME, get_client(sync_client=True) as client, ExitStack() as later:
        asking = None
        while True:
            try:
                limit = client.read_global_concurrency_limit_by_name(name)
            except ObjectNotFound:
                return False
            if not limit.active:
                return False
            wait = seconds_until_free(limit.active_slots, limit.limit,
                                      limit.slot_decay_per_second, limit.updated,
                                      datetime.now(UTC))
            if wait == 0.0:
                if asking is None:  # made only when there is something to ask
                    asking = later.enter_context(asking_client())
                try:
                    _increment_once(asking, name)
                    return True
                except httpx.HTTPStatusError as exc:
                    if exc.response.status_code == 503:
                        wait = random.uniform(0.05, 0.2)  # the server's database was busy
                    elif exc.response.status_code == 423:
                        # lost a race with another process: read again (the count is the
                        # truth; the server's Retry-After grows with every refusal)
                        wait = random.uniform(0.01, 0.05)
                    else:
                        raise
            if math.isinf(wait):
                raise ValueError(f"global concurrency limit {name!r} is full and has no slot "
                                 "decay: a rate limit needs slot_decay_per_second > 0")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {name!r} slot within {max_wait_seconds:.0f} s")
            # just past the decay step (clocks and rounding): every ms later is decay the
            # next grant throws away (the server floors it); jittered so processes that
            # wait for the same step rarely ask at the same moment
            sleep(min(left, wait + 0.005 + random.uniform(0, 0.03)))
