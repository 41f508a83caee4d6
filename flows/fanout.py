"""Spreading one batch over the workers of a pool: child runs of a per-chunk deployment.

Why child runs of a deployment (``hailuo-generate-chunk/generate-chunk``) rather than
Prefect background tasks (``task.delay()`` served by ``prefect task serve``): the users
already run work pools and workers for every other flow of this package, and a chunk
run is an ordinary flow run there — placed by the same workers, limited by the same
``--limit``, visible, cancellable and retryable in the UI, with its own logs and
artifacts. Background tasks would need a second kind of process (task servers) to be
deployed, monitored and scaled next to the workers, and their parameters and results
would travel through result storage the same way. A chunk (``clips_per_run`` clips,
default 10) rather than one run per clip: a flow run costs a process start and a few API
calls on the worker, which a clip's minutes of rendering dwarf but a 1000-clip batch
would still feel; inside a chunk the clips run in threads as in the single-process mode.

Money safety does not depend on where a chunk lands: every clip's submit is cached on
the request's identity in the pool's shared result storage (``deployments.setup
--results-bucket``) and serialised by the shared submit lock, so a re-run of the parent
(or of one chunk) finds the task ids already paid for, whichever worker runs it. The
parent checks everything a chunk could fail on before starting any (the batch's
preflight: credentials, folders, bucket, images, duplicates, the whole batch's cost),
sends the clips as they were given (s3:// inputs are fetched again on the worker that
needs them), shows progress as chunks finish, and gathers their results, which are
persisted (``persist_result=True``) where the caller can read them.
"""

from __future__ import annotations

import math
import time
from typing import Annotated, Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from pydantic import BaseModel, Field

from hailuo import errors
from hailuo.errors import ClipFailure, ConfigurationError, HailuoError
from prefect_hailuo.blocks.credentials import HailuoConnection
from prefect_hailuo.defaults import CHUNK_DEPLOYMENT
from prefect_hailuo.flows.models import (
    ClipResult,
    ClipSpec,
    Destination,
    GenerationOptions,
    blank_to_none,
)
from prefect_hailuo.flows.params import (
    BatchName,
    Clips,
    Credentials,
    CredentialsBlock,
    MaxConcurrency,
    Options,
    Where,
    pick_credentials,
    titled,
)
from prefect_hailuo.flows.preflight import prepare_clips
from prefect_hailuo.flows.runner import Outcome, run_clips_here
from prefect_hailuo.tasks.cancellation import cancel_queued_tasks

#: How often the parent looks at its chunk runs (one API call for all of them).
POLL_SECONDS = 3.0
#: A chunk run still waiting for a worker after this long is worth a warning.
UNPLACED_WARNING_SECONDS = 120.0


class FailedClip(BaseModel):
    """A failed clip as a chunk run reports it (JSON-safe; rebuilt into its typed error
    by the parent)."""

    number: int
    name: str | None = None
    error_type: str
    message: str
    task_id: str | None = None

    @classmethod
    def of(cls, failure: ClipFailure) -> FailedClip:
        error = failure.error
        message = error.message if isinstance(error, HailuoError) else str(error)
        return cls(number=failure.number, name=failure.name, error_type=type(error).__name__,
                   message=message, task_id=failure.task_id)

    def failure(self) -> ClipFailure:
        """The typed error back: a class of ``hailuo.errors`` by name (nothing else is
        looked up), else a plain ``HailuoError`` naming the original type."""
        cls = getattr(errors, self.error_type, None)
        message = self.message
        if not (isinstance(cls, type) and issubclass(cls, HailuoError)) \
                or issubclass(cls, errors.ClipsFailedError):
            cls, message = HailuoError, f"{self.error_type}: {self.message}"
        try:
            error: Exception = cls(message, task_id=self.task_id)
        except TypeError:  # a class with required details of its own
            error = HailuoError(f"{self.error_type}: {message}", task_id=self.task_id)
        return ClipFailure(self.number, self.name, error)


class ChunkResult(BaseModel):
    """What a chunk run returns: its finished clips with their numbers in the whole
    batch, and its failed ones."""

    numbers: list[int] = Field(default_factory=list)
    clips: list[ClipResult] = Field(default_factory=list)
    failed: list[FailedClip] = Field(default_factory=list)

    @classmethod
    def of(cls, outcome: Outcome) -> ChunkResult:
        return cls(numbers=[n for n, _ in outcome.done], clips=[c for _, c in outcome.done],
                   failed=[FailedClip.of(f) for f in outcome.failures])

    def outcome(self) -> Outcome:
        return Outcome(list(zip(self.numbers, self.clips, strict=True)),
                       [f.failure() for f in self.failed])


FirstNumber = Annotated[int, titled("Number of the first clip")]


@flow(name="hailuo-generate-chunk", log_prints=True, persist_result=True,
      on_cancellation=[cancel_queued_tasks])
def generate_chunk(
    clips: Clips,
    first_number: FirstNumber = 1,
    options: Options = GenerationOptions(),
    destination: Where = Destination(),
    credentials: Credentials = None,
    credentials_block: CredentialsBlock = None,
    max_concurrency: MaxConcurrency = 8,
    batch_name: BatchName = None,
) -> ChunkResult:
    """A part of a batch spread over workers (started by ``generate_batch``; rarely
    useful by hand).

    Args:
        clips: This chunk's clips, already named by the batch.
        first_number: The batch number of the first clip (clip-011 is 11).
        options: The batch's options.
        destination: The batch's destination (files land on this worker's output folder
            and, when set, in the shared bucket).
        credentials: A HailuoCredentials block picked in the form (wins over the name).
        credentials_block: The batch's credentials block name ("simulator" for the
            embedded simulator).
        max_concurrency: Most of this chunk's clips in flight at once on this worker.
        batch_name: The batch's name (its folder and artifacts).

    Returns a ``ChunkResult``; failed clips are listed, not raised, so the batch sees
    every clip's outcome.
    """
    group = blank_to_none(batch_name) or "batch"
    connection, prepared = prepare_clips(clips, options, destination,
                                         pick_credentials(credentials, credentials_block))
    numbered = list(enumerate(prepared, start=first_number))
    return ChunkResult.of(run_clips_here(numbered, connection, options, destination, group,
                                         max_concurrency))


def check_chunk_deployment(name: str) -> None:
    """The chunk deployment exists (before anything is paid)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    try:
        with get_client(sync_client=True) as client:
            client.read_deployment_by_name(name)
    except ObjectNotFound:
        raise ConfigurationError(
            f"spread_over names the deployment {name!r}, which does not exist: deploy it "
            f"(`prefect --no-prompt deploy --all` deploys {CHUNK_DEPLOYMENT!r}) or leave "
            "spread_over empty to run the batch in this process", field="spread_over"
        ) from None


def spread(numbered: list[tuple[int, ClipSpec]], connection: HailuoConnection,
           options: GenerationOptions, destination: Destination, batch_name: str | None,
           deployment: str, clips_per_run: int, max_concurrency: int) -> Outcome:
    """Start one chunk run per ``clips_per_run`` clips and gather them (the module
    docstring says why). Every chunk's outcome comes back, whatever it was; a chunk run
    that failed as a whole counts each of its clips as failed (a re-run resumes them)."""
    from prefect.deployments import run_deployment
    from prefect.runtime import flow_run

    logger = get_run_logger()
    check_chunk_deployment(deployment)
    size = max(1, clips_per_run)
    chunks = [numbered[i:i + size] for i in range(0, len(numbered), size)]
    total = len(numbered)
    parent, attempt = flow_run.get_id(), flow_run.get_run_count()
    runs: dict[str, list[tuple[int, ClipSpec]]] = {}
    for index, chunk in enumerate(chunks):
        first, last = chunk[0][0], chunk[-1][0]
        run = run_deployment(
            deployment, timeout=0, as_subflow=True,
            flow_run_name=f"{blank_to_none(batch_name) or 'batch'}-clips-{first:03d}-{last:03d}",
            # a retried parent starts new chunk runs (the submit cache keeps them free);
            # a parent that is merely re-sending after a lost answer gets the same ones
            idempotency_key=f"{parent}-{attempt}-chunk-{index}" if parent else None,
            parameters={
                "clips": [s.model_dump(mode="json") for _, s in chunk],
                "first_number": first,
                "options": options.model_dump(mode="json"),
                "destination": destination.model_dump(mode="json"),
                "credentials_block": connection.credentials_block,
                "max_concurrency": max_concurrency,
                "batch_name": batch_name,
            })
        runs[str(run.id)] = chunk
    logger.info("batch of %d clips spread over %d chunk runs of %s (%d clips each)", total,
                len(runs), deployment, size)
    return _gather(runs, total, options, logger)


def _gather(runs: dict[str, list[tuple[int, ClipSpec]]], total: int,
            options: GenerationOptions, logger: Any) -> Outcome:
    """Wait for every chunk run, showing progress; a bounded wait (every chunk could run
    one after the other, each clip to its own timeout, plus an hour of slack)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    outcome = Outcome()
    progress = create_progress_artifact(0.0, description=f"batch: 0 of {total} clips done")
    started = time.monotonic()
    deadline = started + options.timeout_seconds * len(runs) + 3600
    warned = False
    pending = dict(runs)
    with get_client(sync_client=True) as client:
        while pending:
            found = client.read_flow_runs(flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=list(pending))))
            for run in found:
                if run.state is None or not run.state.is_final():
                    continue
                chunk = pending.pop(str(run.id))
                outcome.add(_chunk_outcome(run, chunk))
                logger.info("chunk %s: %s (%d clips); %d of %d clips done", run.name,
                            run.state.type.value, len(chunk),
                            len(outcome.done) + len(outcome.failures), total)
                update_progress_artifact(
                    progress, 100.0 * (len(outcome.done) + len(outcome.failures)) / total,
                    description=f"batch: {len(outcome.done)} of {total} clips done, "
                                f"{len(outcome.failures)} failed")
            if not pending:
                break
            now = time.monotonic()
            if not warned and now - started > UNPLACED_WARNING_SECONDS and all(
                    r.state is not None and r.state.is_scheduled()
                    for r in found if str(r.id) in pending):
                logger.warning("no chunk run has started after %.0f s: is a worker polling "
                               "the pool of the chunk deployment?", now - started)
                warned = True
            if now > deadline:
                raise errors.TimedOutError(
                    f"{len(pending)} chunk runs not finished after "
                    f"{math.ceil(now - started)} s: {', '.join(sorted(pending))}; they go "
                    "on (a re-run of the batch pays nothing for what they submitted)")
            time.sleep(POLL_SECONDS)
    return outcome.sorted()


def _chunk_outcome(run: Any, chunk: list[tuple[int, ClipSpec]]) -> Outcome:
    """A finished chunk run's clips: its result when it completed and the result can be
    read, else every one of its clips failed with the reason."""
    if run.state.is_completed():
        try:
            result = run.state.result()
        except Exception as exc:  # noqa: BLE001 - explained per clip below
            why = (f"chunk run {run.name} completed but its result cannot be read here "
                   f"({type(exc).__name__}: {exc}); the pool's workers must persist results "
                   "to shared storage (`python -m prefect_hailuo.deployments.setup "
                   "--results-bucket BLOCK`). A re-run pays nothing for its clips.")
            return Outcome([], [ClipFailure(n, s.name, ConfigurationError(why))
                                for n, s in chunk])
        if isinstance(result, dict):
            result = ChunkResult.model_validate(result)
        return result.outcome()
    why = (f"chunk run {run.name} ended {run.state.type.value}: "
           f"{run.state.message or 'no message'}; its clips were not all finished (a re-run "
           "of the batch resumes what it submitted and pays nothing for it)")
    return Outcome([], [ClipFailure(n, s.name, HailuoError(why)) for n, s in chunk])
