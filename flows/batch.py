"""``generate_batch``: many clips with bounded concurrency and the shared submit rate limit."""

from __future__ import annotations

from decimal import Decimal

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from hailuo.errors import ClipFailure, ClipsFailedError
from prefect_hailuo.blocks.credentials import HailuoConnection
from prefect_hailuo.flows.models import (
    BatchResult,
    ClipResult,
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
from prefect_hailuo.flows.pipeline import publish_artifacts, run_clip
from prefect_hailuo.flows.preflight import prepare_clips
from prefect_hailuo.flows.publish import artifact_key
from prefect_hailuo.tasks.cancellation import cancel_queued_tasks


@task(name="generate-clip", cache_policy=NO_CACHE, task_run_name="clip-{number:03d}")
def generate_clip(number: int, spec: ClipSpec, connection: HailuoConnection,
                  options: GenerationOptions, destination: Destination,
                  group: str | None = None) -> ClipResult:
    """Clip ``number`` (1-based, as the clips are named: clip-001, ...) of a batch; its
    submit/wait/download/upload run as nested tasks."""
    return run_clip(spec, connection, options, destination, group=group)


@flow(name="hailuo-generate-batch", log_prints=True,
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
    results: list[ClipResult] = []
    failures: list[ClipFailure] = []
    kept: list[int] = []
    with ThreadPoolTaskRunner(max_workers=max(1, max_concurrency)) as runner:
        futures = [runner.submit(generate_clip, {
            "number": n, "spec": s, "connection": connection, "options": options,
            "destination": destination, "group": group}) for n, s in enumerate(named, start=1)]
        for number, (spec, future) in enumerate(zip(named, futures, strict=True), start=1):
            try:
                results.append(future.result())
                kept.append(number)
            except Exception as exc:  # noqa: BLE001 - reported per clip, raised below
                failures.append(ClipFailure(number, spec.name, exc))
                logger.error("clip %s failed: %s", spec.name, failures[-1].summary)
    if results or failures:
        publish_artifacts(results, f"batch {group}",
                          key=artifact_key("batch", blank_to_none(batch_name)),
                          failed=[(f.name or f"clip-{f.number:03d}", f.summary)
                                  for f in failures])
    total = sum((Decimal(str(r.cost_usd)) for r in results), Decimal("0"))
    if failures and not allow_failures:
        raise ClipsFailedError.of(failures, total=len(named), kept=kept)
    failed = {f.name or f"clip-{f.number:03d}": f.summary for f in failures}
    return BatchResult(clips=results, failed=failed, total_cost_usd=float(total))
