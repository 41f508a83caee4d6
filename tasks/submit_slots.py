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
when a SQLite-backed server is busy (see ``_increment_once``).
"""

from __future__ import annotations

import math
import random
import threading
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from prefect_hailuo.defaults import SUBMIT_LIMIT_NAME

_ONE_AT_A_TIME = threading.Lock()


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


def _increment_once(client: Any, name: str) -> None:
    """One ask, without the Prefect client's own retry loop.

    A Prefect server on SQLite answers 503 ("database is locked") whenever another write
    holds the database, which during a batch is much of the time. The Prefect client then
    sleeps 2 s, 4 s, ... before asking again (and sleeps even when told to make no
    retries), and every submit of the process queues behind that sleep. So the request is
    sent on the client's own HTTP connection (its base URL and auth) without that loop,
    and the caller retries a 503 after a short jittered pause. Anything unusual (no such
    connection, a CSRF-protected server) takes the ordinary client path. A refused or failed
    ask takes no slot; one whose answer is lost may have taken one, which only slows us.
    """
    body = {"names": [name], "slots": 1, "mode": "rate_limit"}
    http = getattr(client, "_client", None)
    if not isinstance(http, httpx.Client):
        client.increment_concurrency_slots(**body)
        return
    response = httpx.Client.send(http, http.build_request(
        "POST", "/v2/concurrency_limits/increment", json=body))
    if response.status_code == 403:  # e.g. CSRF protection: the client knows the dance
        client.increment_concurrency_slots(**body)
        return
    response.raise_for_status()


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
    with _ONE_AT_A_TIME, get_client(sync_client=True) as client:
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
                try:
                    _increment_once(client, name)
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
