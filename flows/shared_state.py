"""Is this run's money-safety state shared with the other workers of its pool?

The submit cache (the paid task ids, ``tasks/generation.py``) is a Prefect result: it
lives wherever results are stored. Prefect's default is a folder on the machine that ran
the task, so a re-run that lands on another worker finds nothing and pays again. Likewise
the default submit lock is a lock file on one machine. ``python -m
prefect_hailuo.deployments.setup --results-bucket BLOCK`` puts the pool's workers on one
S3 bucket and on the server-side lock; this check is the alarm for pools set up without
it: a deployment run on a pool with more than one worker online, storing results locally
(or locking on one machine), logs a loud warning naming the fix.

Why a warning and not a refusal: one worker on one machine is a valid set-up, two workers
in one folder of one machine (several worker processes sharing ``PREFECT_HOME``) are too,
and the server cannot tell us where its workers run. The warning says what is at stake.
"""

from __future__ import annotations

import logging
from typing import Any

from prefect_hailuo.defaults import RESULTS_STORAGE_ENV, SUBMIT_LOCK_MANAGER_ENV

log = logging.getLogger("prefect_hailuo.shared_state")


def local_state(storage: Any, lock_manager: Any) -> list[str]:
    """What is kept on this machine only: the result storage when it is a local folder,
    the submit lock when it is a lock file or in memory (pure; the caller finds both)."""
    from prefect.filesystems import LocalFileSystem
    from prefect.locking.memory import MemoryLockManager

    from prefect_hailuo.tasks.submit_lock import FileLockManager

    kept = []
    if isinstance(storage, LocalFileSystem):
        kept.append(f"results (the submit cache of paid task ids) in the local folder "
                    f"{storage.basepath!r}")
    if isinstance(lock_manager, FileLockManager | MemoryLockManager):
        kept.append(f"the submit lock ({type(lock_manager).__name__})")
    return kept


def warning_text(pool: str, workers: list[str], kept: list[str]) -> str:
    return (f"SHARED STATE WARNING: work pool {pool!r} has {len(workers)} workers online "
            f"({', '.join(sorted(workers))}) but this run keeps {' and '.join(kept)} on "
            "this machine. A re-run that lands on another worker will not find the task "
            "ids paid for here and PAYS AGAIN, and two workers can submit the same request "
            "at once. Fix: `python -m prefect_hailuo.deployments.setup --pool "
            f"{pool} --results-bucket <S3Bucket block>` (sets {RESULTS_STORAGE_ENV} and "
            f"{SUBMIT_LOCK_MANAGER_ENV}=prefect for every worker of the pool).")


def warn_if_not_shared() -> str | None:
    """Log (and return) the warning when this deployment run's pool has several workers
    online and this process keeps the submit cache or lock local. Never raises: a check
    that cannot be made is not a reason to stop a run."""
    try:
        return _check()
    except Exception as exc:  # noqa: BLE001 - diagnostics only
        log.debug("shared-state check skipped: %s", exc)
        return None


def _check() -> str | None:
    from prefect import get_run_logger
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import WorkerFilter, WorkerFilterStatus
    from prefect.results import get_result_store
    from prefect.runtime import flow_run

    from prefect_hailuo.tasks.submit_lock import configured_lock_manager

    run_id = flow_run.get_id()
    if not run_id:
        return None
    kept = local_state(get_result_store().result_storage, configured_lock_manager())
    if not kept:
        return None
    with get_client(sync_client=True) as client:
        pool = client.read_flow_run(run_id).work_pool_name
        if not pool:
            return None  # not a deployment run on a pool: nothing to share with
        workers = client.read_workers_for_work_pool(
            pool, worker_filter=WorkerFilter(status=WorkerFilterStatus(any_=["ONLINE"])))
    names = [w.name for w in workers]
    if len(names) < 2:
        return None
    text = warning_text(pool, names, kept)
    get_run_logger().warning(text)
    return text
