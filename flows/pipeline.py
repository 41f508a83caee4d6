"""One clip from request to verified file: the composition every flow shares.

submit (cached) -> wait (never cached) -> download (keyed by task id) -> thumbnail ->
manifest -> S3 (skipped when identical). A re-run walks the same path and pays nothing:
the submit cache returns the same task id, the wait sees it completed, the download finds
the verified file. A provider-side failure is resubmitted by policy with ``resubmit_of``
in the cache key, so even the resubmit is found again by a re-run.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_image_artifact, create_link_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.transactions import CommitMode, transaction

from hailuo import media, pricing
from hailuo.capabilities import is_h3
from hailuo.errors import ContentRejectedError, GenerationFailedError
from hailuo.fingerprint import canonical_request
from hailuo.h3 import nearest_ratio
from hailuo.models import Job, VideoRequest, utcnow
from prefect_hailuo.blocks.credentials import HailuoConnection
from prefect_hailuo.flows import ledger
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
from prefect_hailuo.tasks import inflight
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


def _done_with(connection: HailuoConnection, task_id: str) -> None:
    """The flow stops waiting for ``task_id``: a cancellation no longer needs to find it,
    and its slot of the account's in-flight cap (if this process took one) is free."""
    untrack(connection, task_id)
    inflight.release(task_id)


def run_clip(spec: ClipSpec, connection: HailuoConnection, options: GenerationOptions,
             destination: Destination, group: str | None = None) -> ClipResult:
    """Generate one clip end to end (inside a flow or a task).

    ``group`` is the batch's or film's name: the clip's files go to
    ``<output_dir>/<group>/`` (``clips`` when None) and are named after the clip
    (``hailuo.files.clip_path``). Emits ``hailuo.clip.completed`` or ``hailuo.clip.failed``
    (``flows/publish.py``) and publishes the clip's keyed artifact."""
    clip = Clip(spec, connection, options, destination, group)
    try:
        clip.start()
        while True:
            try:
                done = wait_for_generation(clip.job, connection,
                                           timeout_seconds=options.timeout_seconds,
                                           use_callbacks=options.callbacks)
                break
            except Exception as exc:
                clip.wait_failed(exc)
        result = clip.finish(done)
    except BaseException as exc:
        clip.failed(exc)
        raise
    clip.completed(result)
    return result


async def arun_clip(spec: ClipSpec, connection: HailuoConnection, options: GenerationOptions,
                    destination: Destination, group: str | None = None,
                    threads: asyncio.Semaphore | None = None) -> ClipResult:
    """``run_clip`` for asyncio flows: the same steps and decisions (``Clip``), with the
    wait — minutes per clip, the only long step — awaited on the asyncio client, so
    hundreds of clips can wait in one process without a thread each. The short blocking
    steps (the cached submit; the download, thumbnail, manifest and upload) run as sync
    tasks in threads, at most ``threads`` at once: inside a sync task Prefect's own calls
    (artifacts, blocks) run synchronously, as they do for ``run_clip``."""
    from prefect_hailuo.tasks.generation import await_generation

    gate = threads or asyncio.Semaphore(8)
    clip = Clip(spec, connection, options, destination, group)
    try:
        await in_thread(gate, start_clip, clip)
        while True:
            assert clip.job is not None
            try:
                done = await await_generation(clip.job, connection,
                                              timeout_seconds=options.timeout_seconds)
                break
            except Exception as exc:
                await in_thread(gate, resubmit_clip, clip, exc)
        result = await in_thread(gate, finish_clip, clip, done)
    except BaseException as exc:
        clip.failed(exc)
        raise
    clip.completed(result)
    return result


async def in_thread(gate: asyncio.Semaphore, fn: Any, *args: Any) -> Any:
    """Run a blocking step in a thread (with this run's context), ``gate`` bounding how
    many run at once."""
    async with gate:
        return await asyncio.to_thread(fn, *args)


@task(name="start-clip", cache_policy=NO_CACHE, persist_result=False,
      task_run_name="start-{clip.label}")
def start_clip(clip: Clip) -> None:
    """Validate and submit (the submit is the cached ``submit-generation`` task)."""
    clip.start()


@task(name="resubmit-clip", cache_policy=NO_CACHE, persist_result=False,
      task_run_name="after-{clip.label}")
def resubmit_clip(clip: Clip, exc: Exception) -> None:
    """A wait failed: resubmit by policy, or raise the error."""
    clip.wait_failed(exc)


@task(name="finish-clip", cache_policy=NO_CACHE, persist_result=False,
      task_run_name="finish-{clip.label}")
def finish_clip(clip: Clip, done: Job) -> ClipResult:
    """The verified file, thumbnail, manifest, upload and artifacts."""
    return clip.finish(done)


class Clip:
    """One clip's steps and decisions, shared by ``run_clip`` and ``arun_clip``: submit
    (cached), what to do when a wait fails (resubmit by policy or give up), and the
    verified file with its manifest, upload and artifacts."""

    def __init__(self, spec: ClipSpec, connection: HailuoConnection,
                 options: GenerationOptions, destination: Destination,
                 group: str | None) -> None:
        self.spec, self.connection, self.options = spec, connection, options
        self.destination, self.group = destination, group
        self.label = clip_label(spec)
        self.take = spec.take or options.take
        self.resubmits = 0
        self.job: Job | None = None
        self.earlier = False
        self.request: VideoRequest | None = None
        self.key = ""

    def start(self) -> None:
        request = self.spec.to_request(self.options).validate_for(self.connection.provider)
        if self.options.callbacks:
            receiver = shared_receiver(self.options.callback_public_url)
            request = request.model_copy(update={"callback_url": receiver.url_for()})
        self.request = request
        self.key = ledger.ledger_key(request, self.connection, self.take)
        self._submit()

    def _submit(self, resubmit_of: str | None = None) -> None:
        assert self.request is not None
        state = _submit(self.request, self.connection, self.take, resubmit_of)
        self.job, self.earlier = state.result(), state.name == "Cached"
        track(self.connection, self.job)  # a cancelled run cancels it while queued (H3)

    def wait_failed(self, exc: Exception) -> None:
        """The wait ended in ``exc``: resubmit when the policy allows (then wait again),
        else raise it."""
        assert self.job is not None
        # Done with this task (failed, timed out: a re-run resumes it). Not on a
        # BaseException: a cancellation must still find it (tasks/cancellation.py).
        _done_with(self.connection, self.job.task_id)
        if not isinstance(exc, (GenerationFailedError, ContentRejectedError)):
            raise exc
        # A task that failed in an EARLIER run (its submit came from the cache) can
        # never become a video: re-running is the request to try again, so it gets a
        # new submit, outside this run's resubmit budget. Within a run, the policy
        # holds: content rejections are never resubmitted.
        again = isinstance(exc, GenerationFailedError) and exc.resubmittable
        if not self.earlier and (not again or self.resubmits >= self.options.max_resubmits):
            raise exc
        self.resubmits += 0 if self.earlier else 1
        get_run_logger().warning(
            "task %s failed (%s); resubmitting (%s)", self.job.task_id, exc,
            "it failed in an earlier run" if self.earlier
            else f"{self.resubmits} of {self.options.max_resubmits}")
        self._submit(resubmit_of=self.job.task_id)

    def finish(self, done: Job) -> ClipResult:
        _done_with(self.connection, done.task_id)
        assert self.request is not None
        result = _finish(self.spec, self.connection, self.destination, self.group,
                         self.label, self.request, done, self.resubmits)
        ledger.record(self.destination, self.group, self.key, result)
        return result

    def failed(self, exc: BaseException) -> None:
        if self.job is not None:  # its in-flight slot, if the wait never got to it
            inflight.release(self.job.task_id)
        if isinstance(exc, Exception):
            quietly(emit_clip_failed, self.label, self.group, exc,
                    getattr(exc, "task_id", None) or (self.job.task_id if self.job else None),
                    provider=str(self.connection.provider),
                    model=self.spec.model or self.options.model)

    def completed(self, result: ClipResult) -> None:
        quietly(emit_clip_completed, result, self.group, new_submit=not self.earlier)


def _finish(spec: ClipSpec, connection: HailuoConnection, destination: Destination,
            group: str | None, label: str, request: VideoRequest, done: Job,
            resubmits: int) -> ClipResult:
    """The verified file, its thumbnail, manifest, upload and artifacts."""
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
