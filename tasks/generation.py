"""Submit and wait: the two tasks where money is at stake.

``submit_generation`` is cached on the request's identity — canonical request (images by
content hash), provider, model, base URL, the *account* (a salted hash of the API key,
never the key: ``HailuoConnection.account``), ``take`` and ``resubmit_of``. Its result (the
provider's task id) is persisted the moment the provider answers, so a crashed or re-run
flow gets the same task id back and waits for it instead of paying again, and a run with
another key never receives a task that key cannot see. On APIMart the same identity also
becomes the ``Idempotency-Key``, which closes the window between the provider's answer and
Prefect persisting it.

Two runs submitting the same request at the same moment pay once: the cache policy runs
the task's transaction at ``SERIALIZABLE`` isolation with a lock manager
(``tasks/submit_lock.py``: lock files on one machine by default; for several machines
leases on the Prefect server, ``HAILUO_SUBMIT_LOCK_MANAGER=prefect``), so the second run
waits for the first to persist its task id and then reads it. A submit that finds itself
without that cache key or lock (its key could not be computed) refuses to pay rather than
pay unrecorded.

``wait_for_generation`` is never cached: a cached status is a stale status.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE, CachePolicy
from prefect.transactions import IsolationLevel, get_transaction

from hailuo import events
from hailuo.callbacks import wait_with_callbacks
from hailuo.errors import ConfigurationError, HailuoError, TimedOutError
from hailuo.fingerprint import request_fingerprint
from hailuo.models import Job, JobStatus, VideoRequest
from prefect_hailuo.blocks.credentials import HailuoConnection
from prefect_hailuo.defaults import SUBMIT_LIMIT_NAME
from prefect_hailuo.tasks import inflight
from prefect_hailuo.tasks.callbacks import shared_receiver
from prefect_hailuo.tasks.submit_lock import SubmitLockManager
from prefect_hailuo.tasks.submit_slots import take_submit_slot


def submit_cache_key(context: Any, parameters: dict[str, Any]) -> str:
    """The identity of a paid request, on one account. Holds no secret: the account is a
    salted, truncated hash of the key, and the key never enters."""
    conn: HailuoConnection = parameters["connection"]
    ident = request_fingerprint(parameters["request"], conn.provider, parameters.get("take", 1))
    resubmit_of = parameters.get("resubmit_of")
    again = _short(resubmit_of) if resubmit_of else "-"
    return f"hailuo-submit-{ident}-{_short(conn.base_url)}-{conn.account_id()}-{again}"


def _short(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


#: The submit cache: keyed by ``submit_cache_key``, and serialised across processes by
#: the submit lock (two identical submits at the same moment: one pays, one reads).
SUBMIT_CACHE_POLICY = CachePolicy.from_cache_key_fn(submit_cache_key).configure(
    lock_manager=SubmitLockManager(), isolation_level=IsolationLevel.SERIALIZABLE)


def _require_submit_lock() -> None:
    """Refuse to pay outside the submit cache: when Prefect cannot compute a task's cache
    key it logs the error and runs the task uncached, which for a submit would mean a paid
    task nobody can find again, and no lock against a concurrent identical submit."""
    txn = get_transaction()
    store = getattr(txn, "store", None)
    if (txn is None or not txn.key or txn.isolation_level is not IsolationLevel.SERIALIZABLE
            or store is None or store.lock_manager is None or not store.is_locked(txn.key)):
        raise ConfigurationError(
            "refusing to submit outside the submit cache and its lock (the cache key could "
            "not be computed, or submit_generation runs without its cache policy); see the "
            "error logged above by Prefect. Nothing was sent.")


def retry_if_safe(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry condition: only errors the client marks ``retryable``; never a timeout
    of the overall wait (that bound is the user's) and never an ambiguous submit."""
    try:
        state.result()
    except TimedOutError:
        return False
    except HailuoError as exc:
        return exc.retryable
    except Exception:  # noqa: BLE001 - anything else is a bug, not a transient failure
        return False
    return False


@task(
    name="submit-generation",
    cache_policy=SUBMIT_CACHE_POLICY,
    cache_expiration=timedelta(days=30),
    persist_result=True,
    retries=2,
    retry_delay_seconds=[5, 20],
    retry_condition_fn=retry_if_safe,
    task_run_name="submit-{request.model}-take{take}",
)
def submit_generation(
    request: VideoRequest,
    connection: HailuoConnection,
    take: int = 1,
    resubmit_of: str | None = None,
) -> Job:
    """Submit one paid generation (cached: a re-run returns the same task id).

    Takes a slot of the ``hailuo-submit`` global rate limit first when it exists, so many
    workers together stay under the provider's requests-per-minute, and, before that, a
    slot of the account's in-flight cap when one is set (``tasks/inflight.py``; given
    back when the flow is done waiting for the task).

    Args:
        request: the validated-or-not request (validated again locally before sending).
        connection: where to send it (no secret inside).
        take: a deliberate new take of the same request gets a new number.
        resubmit_of: the failed task id this submit replaces (a policy resubmit).
    """
    logger = get_run_logger()
    _require_submit_lock()
    ident = request_fingerprint(request, connection.provider, take)
    # The account is part of the provider-side identity too: should a provider scope
    # idempotency keys wider than one account, another key still never gets this task.
    key = f"hailuo-{ident[:40]}-{connection.account_id()}-{resubmit_of or 0}"
    events.emit(events.SUBMITTING, provider=connection.provider, model=request.model)
    with connection.client() as client:
        client.prepare(request)  # reject locally before taking a rate-limit slot
        # One of the account's in-flight slots, held until the flow is done waiting for
        # this task (tasks/inflight.py); only here, where something is really sent.
        holder = f"submit-{key}"
        inflight.acquire(connection.account_id(), holder)
        try:
            take_submit_slot(SUBMIT_LIMIT_NAME)
            job = client.submit(request, idempotency_key=key, take=take)
        except BaseException:
            inflight.release(holder)
            raise
        inflight.attach(holder, job.task_id)
    logger.info("submitted %s task %s (%s, %s)", connection.provider, job.task_id,
                request.model, request.mode.value)
    events.emit(events.SUBMITTED, task_id=job.task_id, provider=connection.provider,
                model=request.model)
    return job


@task(
    name="wait-for-generation",
    cache_policy=NO_CACHE,
    retries=3,
    retry_delay_seconds=[2, 10, 30],
    retry_condition_fn=retry_if_safe,
    task_run_name="wait-{job.task_id}",
)
def wait_for_generation(job: Job, connection: HailuoConnection,
                        timeout_seconds: float = 1800.0, use_callbacks: bool = False) -> Job:
    """Wait for a terminal status, updating a progress artifact; raise the typed error on
    failure. A ``TimedOutError`` keeps the task id so a later run resumes it.

    With ``use_callbacks`` the process's shared callback receiver wakes the wait as soon
    as the provider reports; the status itself always comes from a poll."""
    logger = get_run_logger()
    # Created on the first status that is not yet final: a job that is already done (a
    # re-run, a resumed wait) costs no artifact round trips.
    artifact: dict[str, Any] = {"id": None}
    last: dict[str, Any] = {"status": None, "progress": -1}

    def on_update(current: Job) -> None:
        progress = 100 if current.status is JobStatus.COMPLETED else (current.progress or 0)
        if (current.status, progress) == (last["status"], last["progress"]):
            return
        logger.info("task %s: %s %s%%", current.task_id, current.status.value, progress)
        events.emit(events.STATUS, task_id=current.task_id, status=current.status.value,
                    progress=progress)
        description = f"Hailuo task {current.task_id} ({connection.provider}): " \
                      f"{current.status.value}"
        if artifact["id"] is None and not current.status.terminal:
            artifact["id"] = create_progress_artifact(float(progress), description=description)
        elif artifact["id"] is not None:
            update_progress_artifact(artifact["id"], float(progress), description=description)
        last.update(status=current.status, progress=progress)

    with connection.client() as client:
        if use_callbacks:
            return wait_with_callbacks(client, job, shared_receiver(), timeout=timeout_seconds,
                                       on_update=on_update)
        return client.wait(job, timeout=timeout_seconds, on_update=on_update)


@task(
    name="wait-for-generation",
    cache_policy=NO_CACHE,
    retries=3,
    retry_delay_seconds=[2, 10, 30],
    retry_condition_fn=retry_if_safe,
    task_run_name="wait-{job.task_id}",
)
async def await_generation(job: Job, connection: HailuoConnection,
                           timeout_seconds: float = 1800.0) -> Job:
    """``wait_for_generation`` for asyncio flows: the same polls, back-off and errors
    (the asyncio client shares the sync client's decisions, ``hailuo/decisions.py``),
    awaited, so a waiting clip holds no thread. Status changes are logged and emitted as
    events; no per-clip progress artifact (hundreds of clips wait at once: the batch
    shows their progress as a whole).

    Example:
        ```python
        done = await await_generation(job, connection, timeout_seconds=900)
        ```
    """
    logger = get_run_logger()
    last: dict[str, Any] = {}

    def on_update(current: Job) -> None:
        progress = 100 if current.status is JobStatus.COMPLETED else (current.progress or 0)
        if last.get("seen") == (current.status, progress):
            return
        last["seen"] = (current.status, progress)
        logger.info("task %s: %s %s%%", current.task_id, current.status.value, progress)
        events.emit(events.STATUS, task_id=current.task_id, status=current.status.value,
                    progress=progress)

    async with connection.async_client() as client:
        return await client.wait(job, timeout=timeout_seconds, on_update=on_update)
