"""``upscale_to_2k``: a finished MiniMax-H3 768P clip regenerated at 2K, priced first.

MiniMax's ``POST /v2/video_regeneration`` takes the clip's exact prompt, the same frames
or references, and the clip itself as ``base_video`` (an unmodified H3 768P output), and
renders it again at 2K (16:9: 2560x1440) with the same frame count and its sound. It is
paid - $0.05 per second plus the original inputs billed again
(``hailuo.pricing.regeneration_quote``) - so, like a generation:

* it is priced before anything is sent, and refused when over ``max_cost_usd``;
* its submit is cached on the identity of the regeneration (the original request's
  fingerprint, the base video's sha256, the account, the base URL and ``take``) and
  serialised by the submit lock: a re-run, or a second run at the same moment, gets the
  same task back and pays nothing;
* an ambiguous answer is reconciled from MiniMax's list endpoint before anything is
  re-sent (``hailuo.v2client``);
* while it is queued, cancelling the flow run cancels it (``tasks/cancellation.py``).

Use it inside a flow after a clip::

    clip = run_clip(spec, connection, options, destination)   # or any ClipResult
    big = upscale_to_2k(clip.local_path, request, connection, output_dir="out")

``request`` is the clip's own MiniMax-H3 768P request (``spec.to_request(options)``).
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE, CachePolicy
from prefect.transactions import CommitMode, IsolationLevel, transaction
from pydantic import BaseModel, Field

from hailuo import events, media, pricing
from hailuo.errors import CostLimitExceededError
from hailuo.fingerprint import request_fingerprint
from hailuo.models import DownloadedVideo, Job, VideoRequest
from hailuo.v2client import regeneration_request
from prefect_hailuo.blocks.credentials import HailuoConnection
from prefect_hailuo.defaults import SUBMIT_LIMIT_NAME
from prefect_hailuo.tasks.cancellation import track, untrack
from prefect_hailuo.tasks.generation import (
    _require_submit_lock,
    _short,
    retry_if_safe,
    wait_for_generation,
)
from prefect_hailuo.tasks.media import download_video
from prefect_hailuo.tasks.submit_lock import SubmitLockManager
from prefect_hailuo.tasks.submit_slots import take_submit_slot

__all__ = ["UpscaleResult", "submit_upscale", "upscale_cache_key", "upscale_to_2k"]


def upscale_cache_key(context: Any, parameters: dict[str, Any]) -> str:
    """The identity of one paid regeneration on one account (no secret inside)."""
    conn: HailuoConnection = parameters["connection"]
    target = regeneration_request(parameters["request"])
    ident = request_fingerprint(target, conn.provider, parameters.get("take", 1))
    return (f"hailuo-upscale-{ident}-{parameters['base_sha256'][:24]}-"
            f"{_short(conn.base_url)}-{conn.account_id()}")


UPSCALE_CACHE_POLICY = CachePolicy.from_cache_key_fn(upscale_cache_key).configure(
    lock_manager=SubmitLockManager(), isolation_level=IsolationLevel.SERIALIZABLE)


@task(
    name="submit-upscale",
    cache_policy=UPSCALE_CACHE_POLICY,
    cache_expiration=timedelta(days=7),  # MiniMax keeps v2 tasks for 7 days
    persist_result=True,
    retries=2,
    retry_delay_seconds=[5, 20],
    retry_condition_fn=retry_if_safe,
    task_run_name="upscale-{request.model}-take{take}",
)
def submit_upscale(request: VideoRequest, base_video: str, base_sha256: str,
                   connection: HailuoConnection, take: int = 1) -> Job:
    """Send one paid regeneration (cached: a re-run returns the same task id).

    Args:
        request: the clip's original MiniMax-H3 768P request.
        base_video: the downloaded clip (local path), unmodified.
        base_sha256: its sha256 (part of the cache key: another clip is another job).
        connection: where to send it (no secret inside).
        take: a deliberate new regeneration of the same clip gets a new number.
    """
    logger = get_run_logger()
    _require_submit_lock()
    events.emit(events.SUBMITTING, provider=connection.provider, model=request.model)
    with connection.client() as client:
        take_submit_slot(SUBMIT_LIMIT_NAME)
        job = client.regenerate(request, base_video, take=take)
    logger.info("submitted regeneration %s of %s at 2K", job.task_id, Path(base_video).name)
    events.emit(events.SUBMITTED, task_id=job.task_id, provider=connection.provider,
                model=request.model)
    return job


class UpscaleResult(BaseModel):
    """A clip regenerated at 2K, downloaded and verified."""

    task_id: str
    base_video: str = Field(description="The 768P clip it was made from.")
    local_path: str
    sha256: str
    size: int
    width: int
    height: int
    duration: float
    frames: int
    has_audio: bool
    cost_usd: float = Field(description="Estimate (hailuo.pricing.regeneration_quote).")
    cost_basis: str
    new_submit: bool = Field(description="False when the task came from the cache (a "
                             "re-run: nothing paid again).")
    simulated: bool = False


@task(name="upscale-to-2k", cache_policy=NO_CACHE, task_run_name="upscale-{label}")
def upscale_to_2k(base_video: str, request: VideoRequest, connection: HailuoConnection,
                  output_dir: str = "out", *, max_cost_usd: float | None = None,
                  timeout_seconds: float = 1800.0, take: int = 1,
                  group: str | None = None, label: str = "clip") -> UpscaleResult:
    """Regenerate the finished MiniMax-H3 768P clip ``base_video`` at 2K.

    Priced first (refused over ``max_cost_usd``, nothing sent), then submitted (cached),
    waited for, and downloaded to ``<output_dir>/<group>/<label>-2k-<id8>.mp4``.
    """
    logger = get_run_logger()
    validated = request.validate_for(connection.provider)
    quote = pricing.regeneration_quote(validated, connection.provider)
    if max_cost_usd is not None and quote.usd > Decimal(str(max_cost_usd)):
        raise CostLimitExceededError(
            f"regenerating {Path(base_video).name} at 2K is estimated at ${quote.usd}, over "
            f"max_cost_usd ${max_cost_usd}; nothing was submitted", field="max_cost_usd")
    logger.info("upscaling %s to 2K: estimated $%s (%s)", Path(base_video).name, quote.usd,
                quote.basis)
    base_sha = media.sha256_file(base_video)
    with transaction(commit_mode=CommitMode.EAGER):  # the paid task id persists at once
        state = submit_upscale(validated, base_video, base_sha, connection, take=take,
                               return_state=True)
    job: Job = state.result()
    cached = state.name == "Cached"
    track(connection, job)
    try:
        done = wait_for_generation(job, connection, timeout_seconds=timeout_seconds)
    except Exception:
        untrack(connection, job.task_id)
        raise
    untrack(connection, job.task_id)
    video: DownloadedVideo = download_video(done, connection, output_dir=output_dir,
                                            group=group, label=f"{label}-2k")
    info = media.probe(video.path)
    return UpscaleResult(
        task_id=done.task_id, base_video=str(base_video), local_path=str(video.path),
        sha256=video.sha256, size=video.size, width=video.width, height=video.height,
        duration=video.duration, frames=video.frames, has_audio=info.has_audio,
        cost_usd=float(quote.usd), cost_basis=quote.basis, new_submit=not cached,
        simulated=connection.simulated or done.simulated)
