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
)
from prefect_hailuo.flows.pipeline import publish_artifacts, run_clip
from prefect_hailuo.flows.preflight import prepare_clips


@task(name="generate-clip", cache_policy=NO_CACHE, task_run_name="clip-{index}")
def generate_clip(index: int, spec: ClipSpec, connection: HailuoConnection,
                  options: GenerationOptions, destination: Destination) -> ClipResult:
    """One clip of a batch (its submit/wait/download/upload run as nested tasks)."""
    return run_clip(spec, connection, options, destination)


@flow(name="hailuo-generate-batch", log_prints=True)
def generate_batch(
    clips: list[ClipSpec],
    options: GenerationOptions = GenerationOptions(),
    destination: Destination = Destination(),
    credentials_block: str | None = None,
    max_concurrency: int = 8,
    allow_failures: bool = False,
) -> BatchResult:
    """Generate many clips at once.

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
    named = [s if s.name else s.model_copy(update={"name": f"clip-{i + 1:03d}"})
             for i, s in enumerate(clips)]
    connection, named = prepare_clips(named, options, destination, credentials_block)
    results: list[ClipResult] = []
    failures: list[ClipFailure] = []
    kept: list[int] = []
    with ThreadPoolTaskRunner(max_workers=max(1, max_concurrency)) as runner:
        futures = [runner.submit(generate_clip, {"index": i, "spec": s, "connection": connection,
                                                 "options": options, "destination": destination})
                   for i, s in enumerate(named)]
        for number, (spec, future) in enumerate(zip(named, futures, strict=True), start=1):
            try:
                results.append(future.result())
                kept.append(number)
            except Exception as exc:  # noqa: BLE001 - reported per clip, raised below
                failures.append(ClipFailure(number, spec.name, exc))
                logger.error("clip %s failed: %s", spec.name, failures[-1].summary)
    if results:
        publish_artifacts(results, "batch")
    total = sum((Decimal(str(r.cost_usd)) for r in results), Decimal("0"))
    if failures and not allow_failures:
        raise ClipsFailedError.of(failures, total=len(named), kept=kept)
    failed = {f.name or f"clip-{f.number:03d}": f.summary for f in failures}
    return BatchResult(clips=results, failed=failed, total_cost_usd=float(total))
