"""Cancelling a flow run cancels its queued MiniMax-H3 tasks (queued tasks are not charged).

MiniMax's v2 API can cancel a task while it is still ``queued``
(``DELETE /v2/video_generation/{id}``: no charge; a running task cannot be cancelled and
a finished one would be deleted, so only queued ones are touched). Every flow carries
``cancel_queued_tasks`` as its ``on_cancellation`` hook: when a flow run is cancelled
(from the UI, ``prefect flow-run cancel`` or the API), the hook cancels every H3 task the
run submitted and has not finished with.

Which tasks: a per-run registry of submitted-but-unfinished H3 tasks, kept as one small
JSON file per task under ``<folder>/<flow run id>/`` (``track`` right after the submit
answers - a cached submit of a re-run included - ``untrack`` when the wait is over). Files,
not memory, because the hook does not always run in the flow's process: a runner
(``prefect worker``, ``serve``) kills the flow's process first and then runs the hooks
itself, on the same machine. The folder is ``HAILUO_ACTIVE_TASKS_DIR``, else a folder in
Prefect's local result storage (like the submit locks). A record holds the task id, the
model and the ``HailuoConnection`` (plain data, no secret): the hook builds a client from
it exactly as the tasks do.

What is not covered: a run killed between MiniMax's answer and the record being written
(milliseconds), and the embedded simulator when the hook runs in another process (the
simulator died with the flow's process, and its tasks with it).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hailuo.capabilities import Provider, is_h3
from hailuo.files import atomic_output
from hailuo.ids import is_safe_id
from hailuo.models import Job, JobStatus
from prefect_hailuo.blocks.credentials import HailuoConnection

__all__ = ["ACTIVE_TASKS_DIR_ENV", "active_directory", "cancel_queued_tasks", "cancel_tracked",
           "track", "tracked", "untrack"]

log = logging.getLogger("prefect_hailuo.cancellation")

#: Folder of the per-run registries (default: Prefect's local result storage folder).
ACTIVE_TASKS_DIR_ENV = "HAILUO_ACTIVE_TASKS_DIR"
FOLDER_NAME = "hailuo-active-tasks"
#: A run's folder untouched this long is left over from a crash and removed.
STALE_SECONDS = 8 * 86400


def active_directory() -> Path:
    explicit = os.environ.get(ACTIVE_TASKS_DIR_ENV, "").strip()
    if explicit:
        return Path(explicit).expanduser()
    from prefect.settings import get_current_settings

    return Path(get_current_settings().results.local_storage_path) / FOLDER_NAME


def _current_run_id() -> str | None:
    from prefect.runtime import flow_run

    run_id = flow_run.id
    return str(run_id) if run_id else None


def _record_path(run_id: str, connection: HailuoConnection, task_id: str) -> Path:
    where = hashlib.sha256(connection.base_url.encode()).hexdigest()[:12]
    return active_directory() / run_id / f"{where}-{task_id}.json"


def cancellable(connection: HailuoConnection, job: Job) -> bool:
    """Only MiniMax v2 (H3) tasks can be cancelled."""
    return Provider(connection.provider) is Provider.MINIMAX and is_h3(job.model)


def track(connection: HailuoConnection, job: Job, *, flow_run_id: str | None = None
          ) -> Path | None:
    """Record ``job`` as submitted and unfinished by this flow run (H3 on MiniMax only;
    outside a flow run nothing is recorded). Never raises: bookkeeping must not fail a
    paid clip."""
    run_id = flow_run_id or _current_run_id()
    if not run_id or not cancellable(connection, job) or not is_safe_id(job.task_id):
        return None
    try:
        path = _record_path(run_id, connection, job.task_id)
        record = {"task_id": job.task_id, "model": job.model, "recorded_at": time.time(),
                  "connection": connection.model_dump(mode="json")}
        with atomic_output(path) as tmp:
            tmp.write_text(json.dumps(record))
        _prune(path.parent.parent, keep=run_id)
        return path
    except Exception:  # noqa: BLE001
        log.warning("could not record H3 task %s for cancellation", job.task_id, exc_info=True)
        return None


def untrack(connection: HailuoConnection, task_id: str, *, flow_run_id: str | None = None
            ) -> None:
    """The run is done with ``task_id`` (finished, failed or given up on)."""
    run_id = flow_run_id or _current_run_id()
    if not run_id or not is_safe_id(task_id):
        return
    path = _record_path(run_id, connection, task_id)
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        path.parent.rmdir()  # only when empty


def tracked(flow_run_id: str) -> list[tuple[HailuoConnection, str, Path]]:
    """(connection, task id, record) of every task the run has not finished with."""
    folder = active_directory() / str(flow_run_id)
    out = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            record = json.loads(path.read_text())
            connection = HailuoConnection.model_validate(record["connection"])
            task_id = str(record["task_id"])
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("unreadable cancellation record %s skipped", path.name)
            continue
        if is_safe_id(task_id):
            out.append((connection, task_id, path))
    return out


def cancel_tracked(flow_run_id: str) -> dict[str, Job | Exception]:
    """Cancel every queued task the run has not finished with; the outcome per task
    (``Job`` with status ``cancelled`` when it was, or its current status; or the error).
    Records of tasks that are now cancelled or finished are removed."""
    from hailuo import v2client

    groups: dict[str, tuple[HailuoConnection, list[tuple[str, Path]]]] = {}
    for connection, task_id, path in tracked(flow_run_id):
        key = connection.model_dump_json()
        groups.setdefault(key, (connection, []))[1].append((task_id, path))
    outcome: dict[str, Job | Exception] = {}
    for connection, items in groups.values():
        try:
            with connection.client() as client:
                results = v2client.cancel_all(client, [t for t, _ in items])
        except Exception as exc:  # noqa: BLE001 - no client (a block gone): report per task
            results = {t: exc for t, _ in items}
        for task_id, path in items:
            result = results[task_id]
            outcome[task_id] = result
            if isinstance(result, Job) and result.status.terminal:
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        (active_directory() / str(flow_run_id)).rmdir()
    return outcome


def cancel_queued_tasks(flow: Any, flow_run: Any, state: Any) -> None:
    """``on_cancellation`` hook of every flow: cancel the run's queued H3 tasks.

    Runs in the flow's process or in the runner that killed it; logs what it did."""
    from prefect.logging.loggers import flow_run_logger

    try:
        logger: Any = flow_run_logger(flow_run, flow)
    except Exception:  # noqa: BLE001 - logging must not stop the cancelling
        logger = log
    outcome = cancel_tracked(str(flow_run.id))
    if not outcome:
        return
    cancelled = [t for t, r in outcome.items()
                 if isinstance(r, Job) and r.status is JobStatus.CANCELLED]
    logger.info("cancelled %d queued MiniMax-H3 task(s) of this run (not charged): %s",
                len(cancelled), ", ".join(cancelled) or "none")
    for task_id, result in outcome.items():
        if isinstance(result, Exception):
            logger.warning("H3 task %s could not be cancelled: %s: %s", task_id,
                           type(result).__name__, result)
        elif result.status is not JobStatus.CANCELLED:
            logger.info("H3 task %s is %s: only queued tasks can be cancelled (it is paid "
                        "for; a re-run adopts it)", task_id, result.status.value)


def _prune(root: Path, keep: str, *, now: float | None = None) -> None:
    """Remove run folders left over from crashes (untouched for ``STALE_SECONDS``)."""
    now = time.time() if now is None else now
    with contextlib.suppress(OSError):
        for folder in _folders(root):
            if folder.name != keep and now - folder.stat().st_mtime > STALE_SECONDS:
                shutil.rmtree(folder, ignore_errors=True)


def _folders(root: Path) -> Iterable[Path]:
    return (p for p in root.iterdir() if p.is_dir()) if root.is_dir() else ()
