"""``agenerate_batch``: a batch whose clips wait as coroutines, not threads.

Why a second batch flow: ``generate_batch`` runs each clip in a thread for its whole life,
and a clip spends minutes waiting for the provider. Hundreds of clips in flight in one
process then mean hundreds of threads (and their stacks). Here every clip is a coroutine:
the wait is awaited on the asyncio client (``hailuo.aclient``, which shares the sync
client's retry and wait decisions), and only the short blocking steps (the cached
submit, download, thumbnail, manifest, upload) borrow one of a few threads
(``flows/pipeline.py::arun_clip``). Same parameters, same preflight, same submit cache
and money safety, same result as ``generate_batch``; use it for batches of hundreds of
clips in one process, and ``generate_batch``'s ``spread_over`` to use several workers.
"""

from __future__ import annotations

import asyncio

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from hailuo.errors import ClipFailure
from prefect_hailuo.blocks.credentials import HailuoConnection, HailuoCredentials
from prefect_hailuo.flows import ledger
from prefect_hailuo.flows.batch import conclude
from prefect_hailuo.flows.models import (
    BatchResult,
    ClipSpec,
    Destination,
    GenerationOptions,
    blank_to_none,
)
from prefect_hailuo.flows.params import (
    AllowFailures,
    BatchName,
    Clips,
    Credentials,
    CredentialsBlock,
    MaxConcurrency,
    Options,
    Where,
    pick_credentials,
)
from prefect_hailuo.flows.pipeline import arun_clip, in_thread
from prefect_hailuo.flows.preflight import prepare_clips
from prefect_hailuo.flows.runner import Outcome
from prefect_hailuo.tasks.cancellation import cancel_queued_tasks

#: Threads for the short blocking steps of all clips together.
BLOCKING_THREADS = 8


@flow(name="hailuo-generate-batch-async", log_prints=True, persist_result=True,
      on_cancellation=[cancel_queued_tasks])
async def agenerate_batch(
    clips: Clips,
    options: Options = GenerationOptions(),
    destination: Where = Destination(),
    credentials: Credentials = None,
    credentials_block: CredentialsBlock = None,
    max_concurrency: MaxConcurrency = 500,
    allow_failures: AllowFailures = False,
    batch_name: BatchName = None,
) -> BatchResult:
    """Generate many clips at once, each waiting as a coroutine (see the module).

    Args:
        clips: The clips, as for generate_batch.
        options: Model, duration, resolution, take, cost limit, timeout for every clip.
        destination: Local folder and optional S3 bucket block.
        credentials: The HailuoCredentials block to use, picked from the saved blocks.
        credentials_block: The same by name, or "simulator" for the embedded simulator.
        max_concurrency: Most clips in flight at once (waiting costs no thread here, so
            this can be in the hundreds; the account's in-flight cap and the submit rate
            limit still apply when they are set).
        allow_failures: Return the finished clips and list the failed ones instead of
            failing the run.
        batch_name: Names the folder and artifacts of the batch; keep it for a re-run.

    Example:
        ```python
        import asyncio
        from prefect_hailuo.flows.batch_async import agenerate_batch

        result = asyncio.run(agenerate_batch(
            clips=[{"prompt": f"A paper boat on a pond, take {i}"} for i in range(300)],
            credentials_block="simulator"))
        ```
    """
    logger = get_run_logger()
    group = blank_to_none(batch_name) or "batch"
    named = [s if s.name else s.model_copy(update={"name": f"clip-{i + 1:03d}"})
             for i, s in enumerate(clips)]
    threads = asyncio.Semaphore(BLOCKING_THREADS)
    connection, named = await in_thread(threads, prepare_batch, named, options, destination,
                                        pick_credentials(credentials, credentials_block))
    done, todo = ledger.split_done(list(enumerate(named, start=1)), connection, options,
                                   destination, group)
    in_flight = asyncio.Semaphore(max(1, max_concurrency))
    outcome = Outcome(done=done)

    async def one(number: int, spec: ClipSpec) -> None:
        async with in_flight:
            try:
                result = await arun_clip(spec, connection, options, destination, group,
                                         threads=threads)
                outcome.done.append((number, result))
            except Exception as exc:  # noqa: BLE001 - reported per clip, raised below
                outcome.failures.append(ClipFailure(number, spec.name, exc))
                logger.error("clip %s failed: %s", spec.name, outcome.failures[-1].summary)

    await asyncio.gather(*(one(n, s) for n, s in todo))
    return await in_thread(threads, conclude_batch, outcome.sorted(), len(named), batch_name,
                           allow_failures)


@task(name="prepare-batch", cache_policy=NO_CACHE, persist_result=False)
def prepare_batch(named: list[ClipSpec], options: GenerationOptions,
                  destination: Destination, credentials: HailuoCredentials | str | None,
                  ) -> tuple[HailuoConnection, list[ClipSpec]]:
    """The batch's preflight (``flows/preflight.py``), in a sync task: it loads blocks,
    which inside an async flow Prefect would otherwise hand back as coroutines."""
    return prepare_clips(named, options, destination, credentials)


@task(name="conclude-batch", cache_policy=NO_CACHE, persist_result=False)
def conclude_batch(outcome: Outcome, total: int, batch_name: str | None,
                   allow_failures: bool) -> BatchResult:
    """The batch's table artifact and result (``flows/batch.py::conclude``)."""
    return conclude(outcome, total, batch_name, allow_failures)
