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
from prefect.artifacts import create_image_artifact, create_link_artifact
from prefect.runtime import flow_run
from prefect.transactions import CommitMode, transaction

from hailuo import media, pricing
from hailuo.capabilities import is_h3
from hailuo.errors import ContentRejectedError, GenerationFailedError
from hailuo.fingerprint import canonical_request
from hailuo.h3 import nearest_ratio
from hailuo.models import VideoRequest, utcnow
from prefect_hailuo.blocks.credentials import HailuoConnection
from prefect_hailuo.flows.models import ClipResult, ClipSpec, Destination, GenerationOptions
from prefect_hailuo.flows.publish import (
    clip_label,
    emit_clip_completed,
    emit_clip_failed,
    hostname,
    publish_clip,
    publish_clip_table,
    quietly,
)
from prefect_hailuo.tasks.callbacks import shared_receiver
from prefect_hailuo.tasks.cancellation import track, untrack
from prefect_hailuo.tasks.generation import submit_generation, wait_for_generation
from prefect_hailuo.tasks.media import download_video, make_thumbnail
from prefect_hailuo.tasks.storage import fetch_input_image, upload_to_s3


def resolve_inputs(spec: ClipSpec, destination: Destination) -> ClipSpec:
    """Fetch s3:// inputs (images, and H3 reference images, videos and audios) to local
    files (other inputs are left as they are)."""
    updates: dict[str, Any] = {}
    for name in ("first_frame_image", "last_frame_image", "subject_reference"):
        value = getattr(spec, name)
        if value and value.startswith("s3://"):
            updates[name] = fetch_input_image(value, destination.s3_bucket_block)
    for name in ("reference_images", "reference_videos", "reference_audios"):
        values = getattr(spec, name) or []
        if any(v.startswith("s3://") for v in values):
            updates[name] = [fetch_input_image(v, destination.s3_bucket_block)
                             if v.startswith("s3://") else v for v in values]
    return spec.model_copy(update=updates) if updates else spec


def audio_record(info: media.VideoInfo) -> dict[str, Any] | None:
    """What a manifest says about a video's sound (None: silent)."""
    if not info.has_audio:
        return None
    return {"codec": info.audio_codec, "sample_rate": info.audio_sample_rate,
            "channels": info.audio_channels, "duration": info.audio_duration}


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
             destination: Destination, group: str | None = None) -> ClipResult:
    """Generate one clip end to end (inside a flow or a task).

    ``group`` is the batch's or film's name: the clip's files go to
    ``<output_dir>/<group>/`` (``clips`` when None) and are named after the clip
    (``hailuo.files.clip_path``). Emits ``hailuo.clip.completed`` or ``hailuo.clip.failed``
    (``flows/publish.py``) and publishes the clip's keyed artifact."""
    label = clip_label(spec)
    progress: dict[str, Any] = {}
    try:
        result = _run_clip(spec, connection, options, destination, group, label, progress)
    except Exception as exc:
        quietly(emit_clip_failed, label, group, exc, getattr(exc, "task_id", None) or
                progress.get("task_id"), provider=str(connection.provider),
                model=spec.model or options.model)
        raise
    quietly(emit_clip_completed, result, group, new_submit=not progress.get("earlier", False))
    return result


def _run_clip(spec: ClipSpec, connection: HailuoConnection, options: GenerationOptions,
              destination: Destination, group: str | None, label: str,
              progress: dict[str, Any]) -> ClipResult:
    logger = get_run_logger()
    request = spec.to_request(options).validate_for(connection.provider)
    if options.callbacks:
        receiver = shared_receiver(options.callback_public_url)
        request = request.model_copy(update={"callback_url": receiver.url_for()})
    take = spec.take or options.take
    state = _submit(request, connection, take)
    job, earlier = state.result(), state.name == "Cached"
    progress.update(task_id=job.task_id, earlier=earlier)
    track(connection, job)  # a cancelled run cancels it while queued (H3)
    resubmits = 0
    while True:
        try:
            done = wait_for_generation(job, connection, timeout_seconds=options.timeout_seconds,
                                       use_callbacks=options.callbacks)
            untrack(connection, job.task_id)
            break
        except Exception as exc:
            # Done with this task (failed, timed out: a re-run resumes it). Not on a
            # BaseException: a cancellation must still find it (tasks/cancellation.py).
            untrack(connection, job.task_id)
            if not isinstance(exc, (GenerationFailedError, ContentRejectedError)):
                raise
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
            progress.update(task_id=job.task_id, earlier=earlier)
            track(connection, job)
    video = download_video(done, connection, output_dir=destination.output_dir, group=group,
                           label=label)
    thumb = make_thumbnail(str(video.path))
    quote = pricing.quote(request, connection.provider)
    info = media.probe(video.path)  # the sound track: H3 clips carry one
    ratio = nearest_ratio(video.width, video.height) if is_h3(request.model) else None
    manifest: dict[str, Any] = {
        "name": spec.name,
        "label": label,
        "group": group,
        "file": Path(video.path).name,
        "host": hostname(),
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
        "ratio": ratio,
        "requested_ratio": request.ratio,
        "audio": audio_record(info),
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
                                presign_seconds=destination.presign_seconds,
                                file_name=Path(video.path).name)
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
        host=hostname(), label=label, ratio=ratio, has_audio=info.has_audio,
    )
    publish_clip_artifacts(result, group)
    return result


def publish_clip_artifacts(result: ClipResult, group: str | None = None) -> None:
    """The clip's keyed artifact (``hailuo-clip-...``: preview, file, where it is, cost),
    plus, when it is in S3, a link artifact whose text is the file's name and an image
    artifact of its thumbnail (``flows/publish.py``).

    Published by each clip as it finishes (inside its own task when a batch runs clips in
    parallel), so clips appear in the UI as they land and a large batch does not end
    with a long serial run of artifact calls."""
    key = publish_clip(result, group)
    name = Path(result.local_path).name
    if result.presigned_url:
        create_link_artifact(result.presigned_url, link_text=name, key=f"{key}-link",
                             description=f"{result.model} {result.resolution} "
                             f"{result.duration:.1f}s (task {result.task_id})")
    if result.thumbnail_url:
        create_image_artifact(result.thumbnail_url, key=f"{key}-thumbnail",
                              description=f"thumbnail of {result.name or result.label}")


def publish_artifacts(results: list[ClipResult], title: str, *,
                      failed: list[tuple[str, str]] | None = None,
                      key: str | None = None) -> None:
    """The run's table of clips: clip, status, duration, resolution, cost, file and where
    it is (each clip published its own keyed artifact); ``failed`` adds (clip, error)
    rows."""
    publish_clip_table(results, title, failed=failed or (), key=key)
