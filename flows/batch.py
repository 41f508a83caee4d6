"""``generate_batch``: many clips with bounded concurrency and the shared submit rate limit."""

from __future__ import annotations

from decimal import Decimal

from prefect import flow, get_run_logger

from hailuo.errors import ClipsFailedError
from prefect_hailuo.flows.fanout import spread
from prefect_hailuo.flows.models import (
    BatchResult,
    Destination,
    GenerationOptions,
    blank_to_none,
)
from prefect_hailuo.flows.params import (
    AllowFailures,
    BatchName,
    Clips,
    ClipsPerRun,
    Credentials,
    CredentialsBlock,
    MaxConcurrency,
    Options,
    SpreadOver,
    Where,
    pick_credentials,
)
from prefect_hailuo.flows.pipeline import publish_artifacts
from prefect_hailuo.flows.preflight import prepare_clips
from prefect_hailuo.flows.publish import artifact_key
from prefect_hailuo.flows.runner import Outcome, run_clips_here
from prefect_hailuo.tasks.cancellation import cancel_queued_tasks


@flow(name="hailuo-generate-batch", log_prints=True, persist_result=True,
      on_cancellation=[cancel_queued_tasks])
def generate_batch(
    clips: Clips,
    options: Options = GenerationOptions(),
    destination: Where = Destination(),
    credentials: Credentials = None,
    credentials_block: CredentialsBlock = None,
    max_concurrency: MaxConcurrency = 8,
    allow_failures: AllowFailures = False,
    batch_name: BatchName = None,
    spread_over: SpreadOver = None,
    clips_per_run: ClipsPerRun = 10,
) -> BatchResult:
    """Generate many clips at once.

    Args:
        clips: The clips: each a prompt and/or images, optionally a name (used for its
            file and artifact; empty: clip-001, clip-002, ...) and its own model,
            duration, resolution or take.
        options: Model, duration, resolution, take, cost limit, timeout for every clip
            (a clip's own values win).
        destination: Local folder and optional S3 bucket block.
        credentials: The HailuoCredentials block to use, picked from the saved blocks; it
            wins over the credentials block name.
        credentials_block: The same by name (CLI and code): a saved HailuoCredentials
            block, or "simulator" for the embedded simulator (nothing is paid). Empty
            means not set; with neither set the run fails at once, naming the block to
            create.
        max_concurrency: Most clips in flight at once; submits also respect the
            hailuo-submit rate limit when it exists.
        allow_failures: Return the finished clips and list the failed ones instead of
            failing the run.
        batch_name: Names the folder the clips are written to (under the destination's
            output folder) and their artifacts; empty: "batch". Keep it the same for a
            re-run to reuse the downloads.
        spread_over: A chunk deployment (e.g. hailuo-generate-chunk/chunk) to
            spread a large batch over the workers of its pool; empty: every clip runs in
            this process. Batches of at most clips_per_run clips always run here.
        clips_per_run: Clips per chunk run when spread_over is set.

    At most ``max_concurrency`` clips are in flight; each submit first takes a slot of the
    ``hailuo-submit`` global rate limit when it exists (see deployments/setup.py), so any
    number of workers together respect the provider's requests-per-minute. Every clip is
    validated and the whole batch's cost checked before the first submit, with the
    credentials, output folder, bucket and every input image (flows/preflight.py). Two
    clips that are the same request (differing only in ``name``) are refused up front:
    give one of them ``take: 2`` for a second, separately paid version. One clip failing
    does not stop the others; the run fails at the end with a ``ClipsFailedError`` that
    holds each failed clip's own typed error and task id (or, with ``allow_failures``,
    returns them in the result as text), and a re-run only redoes what did not finish.
    """
    logger = get_run_logger()
    group = blank_to_none(batch_name) or "batch"
    named = [s if s.name else s.model_copy(update={"name": f"clip-{i + 1:03d}"})
             for i, s in enumerate(clips)]
    connection, named = prepare_clips(named, options, destination,
                                      pick_credentials(credentials, credentials_block))
    numbered = list(enumerate(named, start=1))
    deployment = blank_to_none(spread_over)
    spreading = bool(deployment) and len(named) > max(1, clips_per_run)
    if spreading:
        # the clips as given (s3:// inputs are fetched again where each chunk runs)
        given = [(n, s if s.name else s.model_copy(update={"name": f"clip-{n:03d}"}))
                 for n, s in enumerate(clips, start=1)]
        outcome = spread(given, connection, options, destination, blank_to_none(batch_name),
                         str(deployment), clips_per_run, max_concurrency)
        for failure in outcome.failures:  # (each chunk's worker logged its own too)
            logger.error("clip %s failed: %s", failure.name, failure.summary)
    else:
        outcome = run_clips_here(numbered, connection, options, destination, group,
                                 max_concurrency)
    return conclude(outcome, len(named), batch_name, allow_failures)


def conclude(outcome: Outcome, total: int, batch_name: str | None,
             allow_failures: bool) -> BatchResult:
    """The batch's table artifact, then its result, or the ``ClipsFailedError`` holding
    every failed clip's typed error (shared by the thread and asyncio batches)."""
    group = blank_to_none(batch_name) or "batch"
    results = [r for _, r in outcome.done]
    failures = outcome.failures
    if results or failures:
        publish_artifacts(results, f"batch {group}",
                          key=artifact_key("batch", blank_to_none(batch_name)),
                          failed=[(f.name or f"clip-{f.number:03d}", f.summary)
                                  for f in failures])
    cost = sum((Decimal(str(r.cost_usd)) for r in results), Decimal("0"))
    if failures and not allow_failures:
        raise ClipsFailedError.of(failures, total=total, kept=[n for n, _ in outcome.done])
    failed = {f.name or f"clip-{f.number:03d}": f.summary for f in failures}
    return BatchResult(clips=results, failed=failed, total_cost_usd=float(cost))
