"""One clip from request to verified file: the composition every flow shares.

submit (cached) -> wait (never cached) -> download (keyed by task id) -> thumbnail ->
manifest -> S3 (skipped when identical). A re-run walks the same path and pays nothing:
the submit cache returns the same task id, the wait sees it completed, the download finds
the verified file. A provider-side failure is resubmitted by policy with ``resubmit_of``
in the cache key, so even the resubmit is found again by a re-run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_image_artifact, create_link_artifact, create_table_artifact
from prefect.runtime import flow_run
from prefect.transactions import CommitMode, transaction

from hailuo import pricing
from hailuo.errors import ContentRejectedError, GenerationFailedError
from hailuo.fingerprint import canonical_request
from hailuo.models import VideoRequest, utcnow
from prefect_hailuo.blocks.credentials import HailuoConnection
from prefect_hailuo.flows.models import ClipResult, ClipSpec, Destination, GenerationOptions
from prefect_hailuo.tasks.callbacks import shared_receiver
from prefect_hailuo.tasks.generation import submit_generation, wait_for_generation
from prefect_hailuo.tasks.media import download_video, make_thumbnail
from prefect_hailuo.tasks.storage import fetch_input_image, upload_to_s3


def resolve_inputs(spec: ClipSpec, destination: Destination) -> ClipSpec:
    """Fetch s3:// image inputs to local files (other inputs are left as they are)."""
    updates = {}
    for name in ("first_frame_image", "last_frame_image", "subject_reference"):
        value = getattr(spec, name)
        if value and value.startswith("s3://"):
            updates[name] = fetch_input_image(value, destination.s3_bucket_block)
    return spec.model_copy(update=updates) if updates else spec


def _submit(request: VideoRequest, connection: HailuoConnection, take: int,
            resubmit_of: str | None = None) -> Any:
    """Submit in its own EAGER transaction: its result (the paid task id) is persisted the
    moment the task finishes, even when run_clip runs inside another task (a batch or a
    chain) that later fails or is killed — nested results otherwise wait for the outer task.
    The task's own transaction holds the submit lock (tasks/submit_lock.py) from before it
    looks for a cached task id until that id is persisted.
    """
    with transaction(commit_mode=CommitMode.EAGER):
        return submit_generation(request, connection, take=take, resubmit_of=resubmit_of,
                                 return_state=True)


def run_clip(spec: ClipSpec, connection: HailuoConnection, options: GenerationOptions,
             destination: Destination) -> ClipResult:
    """Generate one clip end to end (inside a flow or a task)."""
    logger = get_run_logger()
    request = spec.to_request(options).validate_for(connection.provider)
    if options.callbacks:
        receiver = shared_receiver(options.callback_public_url)
        request = request.model_copy(update={"callback_url": receiver.url_for()})
    take = spec.take or options.take
    state = _submit(request, connection, take)
    job, earlier = state.result(), state.name == "Cached"
    resubmits = 0
    while True:
        try:
            done = wait_for_generation(job, connection, timeout_seconds=options.timeout_seconds,
                                       use_callbacks=options.callbacks)
            break
        except (GenerationFailedError, ContentRejectedError) as exc:
            # A task that failed in an EARLIER run (its submit came from the cache) can
            # never become a video: re-running is the request to try again, so it gets a
            # new submit, outside this run's resubmit budget. Within a run, the policy
            # holds: content rejections are never resubmitted.
            again = isinstance(exc, GenerationFailedError) and exc.resubmittable
            if not earlier and (not again or resubmits >= options.max_resubmits):
                raise
            resubmits += 0 if earlier else 1
            logger.warning("task %s failed (%s); resubmitting (%s)", job.task_id, exc,
                           "it failed in an earlier run" if earlier
                           else f"{resubmits} of {options.max_resubmits}")
            state = _submit(request, connection, take, resubmit_of=job.task_id)
            job, earlier = state.result(), state.name == "Cached"
    video = download_video(done, connection, output_dir=destination.output_dir)
    thumb = make_thumbnail(str(video.path))
    quote = pricing.quote(request, connection.provider)
    manifest: dict[str, Any] = {
        "name": spec.name,
        "request": canonical_request(request),
        "mode": request.mode.value,
        "provider": connection.provider,
        "model": request.model,
        "simulated": connection.simulated or done.simulated,
        "task_id": done.task_id,
        "sha256": video.sha256,
        "size": video.size,
        "duration": video.duration,
        "width": video.width,
        "height": video.height,
        "fps": video.fps,
        "frames": video.frames,
        "resolution": request.output_resolution(connection.provider),
        "cost_estimate_usd": str(quote.usd),
        "cost_basis": quote.basis,
        "provider_reported_cost": done.cost,
        "resubmits": resubmits,
        "timestamps": {
            "submitted_at": done.submitted_at,
            "completed_seen_at": done.updated_at,
            "manifest_written_at": utcnow(),
        },
        "prefect_flow_run_id": str(flow_run.id) if flow_run.id else None,
    }
    manifest_path = Path(video.path).with_suffix(".manifest.json")
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
    uploaded = None
    if destination.s3_bucket_block:
        uploaded = upload_to_s3(video, json.loads(manifest_path.read_text()),
                                destination.s3_bucket_block, prefix=destination.s3_prefix,
                                provider=connection.provider, thumbnail_path=thumb,
                                presign_seconds=destination.presign_seconds)
    result = ClipResult(
        name=spec.name, task_id=done.task_id, provider=connection.provider, model=request.model,
        prompt=request.prompt, resolution=manifest["resolution"], duration=video.duration,
        width=video.width, height=video.height, local_path=str(video.path), sha256=video.sha256,
        size=video.size, cost_usd=float(quote.usd), thumbnail_path=thumb,
        manifest_path=str(manifest_path),
        s3_uri=uploaded.s3_uri if uploaded else None,
        manifest_uri=uploaded.manifest_uri if uploaded else None,
        presigned_url=uploaded.presigned_url if uploaded else None,
        thumbnail_url=uploaded.thumbnail_url if uploaded else None,
        simulated=connection.simulated or done.simulated,
    )
    publish_clip_artifacts(result)
    return result


def publish_clip_artifacts(result: ClipResult) -> None:
    """A link to the clip's video, and its thumbnail when that lives in S3.

    Published by each clip as it finishes (inside its own task when a batch runs clips in
    parallel), so links appear in the UI as clips land and a large batch does not end
    with a long serial run of artifact calls."""
    link = result.presigned_url or Path(result.local_path).resolve().as_uri()
    create_link_artifact(link, link_text=f"{result.name or result.task_id}.mp4",
                         description=f"{result.model} {result.resolution} "
                         f"{result.duration:.1f}s (task {result.task_id})")
    if result.thumbnail_url:
        create_image_artifact(result.thumbnail_url,
                              description=f"thumbnail of {result.name or result.task_id}")


def publish_artifacts(results: list[ClipResult], title: str) -> None:
    """The run's table of clips (each clip published its own link and thumbnail)."""
    rows = [{
        "clip": r.name or r.task_id, "prompt": (r.prompt or "")[:120], "model": r.model,
        "resolution": r.resolution, "duration_s": round(r.duration, 2),
        "cost_usd": f"{r.cost_usd:.2f}", "link": r.presigned_url or r.s3_uri or r.local_path,
        "simulated": r.simulated,
    } for r in results]
    create_table_artifact(rows, key=None, description=f"{title}: {len(rows)} clip(s), "
                          f"estimated ${sum(r.cost_usd for r in results):.2f}")
