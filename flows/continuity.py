"""``multi_clip_continuity``: a film longer than one clip, each clip starting on the exact
last frame of the one before, stitched into one video with one manifest.

This module also holds the film engine ``make_film`` that the storyboard flow shares.
A film is planned as shots (``hailuo.storyboard``); consecutive shots where one starts on
the previous clip's last frame form a *chain* that must run in order, and chains run in
parallel (continuity: one chain; a storyboard of keyframes: one chain per clip).

Resume: every clip goes through ``run_clip``, whose submit is cached on the request's
identity including the first frame's content hash. The last frame is decoded from the
verified download (the same bytes on every run) and written as PNG (a deterministic
encoding), so a re-run rebuilds byte-identical requests for the clips that finished and
pays for none of them; the first clip that did not finish is where it continues.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_image_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel, Field

from hailuo import media
from hailuo.errors import ClipFailure, ClipsFailedError
from hailuo.h3 import nearest_ratio
from hailuo.models import DownloadedVideo, utcnow
from hailuo.stitch import StitchResult
from hailuo.storyboard import Shot, Storyboard, load_storyboard
from prefect_hailuo.blocks.credentials import HailuoConnection, HailuoCredentials
from prefect_hailuo.flows.models import ClipResult, ClipSpec, Destination, GenerationOptions
from prefect_hailuo.flows.params import (
    Credentials,
    CredentialsBlock,
    Options,
    StoryboardInput,
    Where,
    pick_credentials,
)
from prefect_hailuo.flows.pipeline import publish_artifacts, run_clip
from prefect_hailuo.flows.preflight import film_spec, prepare_film
from prefect_hailuo.flows.publish import (
    artifact_key,
    emit_film_completed,
    emit_film_failed,
    publish_film,
    reported,
)
from prefect_hailuo.tasks.cancellation import cancel_queued_tasks
from prefect_hailuo.tasks.media import extract_last_frame
from prefect_hailuo.tasks.stitching import (
    make_contact_sheet,
    make_poster,
    stitch_clips,
    upload_still,
)
from prefect_hailuo.tasks.storage import upload_to_s3

FilmMode = Literal["continuity", "storyboard"]



class FilmResult(BaseModel):
    """A finished film: its clips, the stitched video, stills and the one manifest."""

    title: str
    film_id: str
    mode: FilmMode
    clips: list[ClipResult]
    video_path: str
    sha256: str
    duration: float
    frames: int
    width: int
    height: int
    stitch_method: str
    stitch_reason: str
    poster_path: str
    contact_sheet_path: str
    manifest_path: str
    total_cost_usd: float = Field(description="Sum of the clips' estimates (hailuo.pricing).")
    s3_uri: str | None = None
    manifest_uri: str | None = None
    presigned_url: str | None = None
    poster_url: str | None = None
    contact_sheet_url: str | None = None
    simulated: bool = False
    ratio: str | None = Field(None, description="H3: the film's aspect ratio (nearest of "
                              "21:9 ... 9:16); None for other models.")
    has_audio: bool = Field(False, description="The film has a sound track: the clips' own "
                            "(H3), each on its own picture, and/or the storyboard's audio.")
    audio_method: str = Field("none", description="How the sound was joined: copied "
                              "(remuxed) or re-encoded; none without sound.")
    audio_duration: float | None = Field(None, description="Seconds of sound; within one "
                                         "frame of duration.")


@dataclass
class ChainOutcome:
    """What one chain produced; ``failed`` is the index of the shot that stopped it, if
    any, and ``error`` the typed exception it ended with (kept as the object, task id and
    all: the outcome is returned in process, never persisted)."""

    clips: list[ClipResult]
    failed: int | None = None
    error: Exception | None = None


def _spec(shot: Shot, first_frame_image: str | None) -> ClipSpec:
    return film_spec(shot, first_frame_image)


@task(name="generate-chain", cache_policy=NO_CACHE, task_run_name="clips-{label}")
def generate_chain(shots: list[Shot], label: str, connection: HailuoConnection,
                   options: GenerationOptions, destination: Destination,
                   group: str | None = None) -> ChainOutcome:
    """Generate the shots in order, each chained one on the exact last frame of the clip
    before (lossless PNG at full resolution). Stops at the first failure and says where.

    Paid task ids survive a failed or killed chain: run_clip commits each submit eagerly.
    """
    logger = get_run_logger()
    clips: list[ClipResult] = []
    for shot in shots:
        try:
            first = shot.first_frame_image
            if shot.chained:
                first = extract_last_frame(clips[-1].local_path)
            clips.append(run_clip(_spec(shot, first), connection, options, destination,
                                  group=group))
        except Exception as exc:  # noqa: BLE001 - reported by the flow, which then fails
            logger.error("clip %d (%s) failed: %s: %s", shot.index, shot.name,
                         type(exc).__name__, exc)
            return ChainOutcome(clips=clips, failed=shot.index, error=exc)
    return ChainOutcome(clips=clips)


def _chain_label(group: list[Shot]) -> str:
    """``003`` for one clip, ``001-004`` for a chain: numbered like the clips."""
    first, last = group[0].index, group[-1].index
    return f"{first:03d}" if first == last else f"{first:03d}-{last:03d}"


def _name(shots: list[Shot], index: int) -> str:
    return next((s.name for s in shots if s.index == index), "")


def chains(shots: list[Shot]) -> list[list[Shot]]:
    """Split shots into runs that must go in order (a chained shot joins its predecessor)."""
    groups: list[list[Shot]] = []
    for shot in shots:
        if shot.chained and groups:
            groups[-1].append(shot)
        else:
            groups.append([shot])
    return groups


def _simulated(connection: HailuoConnection, clips: list[ClipResult]) -> bool:
    return connection.simulated or any(c.simulated for c in clips)


def _film_id(clips: list[ClipResult], board: Storyboard, audio_sha: str | None) -> str:
    blob = json.dumps({"clips": [c.sha256 for c in clips], "transition": board.transition,
                       "crossfade": board.crossfade_seconds, "audio": audio_sha})
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _segment_entry(shot: Shot, clip: ClipResult) -> dict[str, Any]:
    request = json.loads(Path(clip.manifest_path).read_text()).get("request", {})
    return {
        "index": shot.index, "name": shot.name, "prompt": clip.prompt,
        "first_frame": {"source": shot.first_frame_source,
                        "fingerprint": request.get("first_frame_image")},
        "last_frame": {"source": "keyframe" if shot.last_frame_image else None,
                       "fingerprint": request.get("last_frame_image")},
        "task_id": clip.task_id, "sha256": clip.sha256, "size": clip.size,
        "duration": clip.duration, "width": clip.width, "height": clip.height,
        "resolution": clip.resolution, "cost_usd": f"{clip.cost_usd:.4f}",
        "local_path": clip.local_path, "s3_uri": clip.s3_uri,
        "clip_manifest_uri": clip.manifest_uri,
        "ratio": clip.ratio, "has_audio": clip.has_audio,
        "audio": json.loads(Path(clip.manifest_path).read_text()).get("audio"),
    }


def film_ratio(clips: list[ClipResult], width: int, height: int) -> str | None:
    """The film's aspect ratio when its clips are H3 (which have ratios), else None."""
    return nearest_ratio(width, height) if any(c.ratio for c in clips) else None


def film_audio(stitched: StitchResult) -> dict[str, Any] | None:
    """What the film manifest says about its sound (None: silent)."""
    if not stitched.has_audio:
        return None
    drift = (abs(stitched.audio_duration - stitched.duration)
             if stitched.audio_duration is not None else None)
    return {"method": stitched.audio_method, "reason": stitched.audio_reason,
            "source": stitched.audio_source, "clips_with_audio": stitched.audio_clips,
            "duration": stitched.audio_duration, "video_duration": stitched.duration,
            "drift_seconds": drift, "sample_rate": stitched.audio_sample_rate,
            "channels": stitched.audio_channels}


def clip_sheet_label(shot: Shot, clip: ClipResult) -> str:
    """A contact sheet label: number, name, seconds, and (H3) ratio and sound."""
    extra = "".join((f", {clip.ratio}" if clip.ratio else "",
                     ", sound" if clip.has_audio else ""))
    return f"{shot.index}. {shot.name} ({clip.duration:.0f} s{extra})"


def _manifest(board: Storyboard, mode: FilmMode, film_id: str, shots: list[Shot],
              clips: list[ClipResult], stitched: StitchResult, audio_sha: str | None,
              connection: HailuoConnection, options: GenerationOptions) -> dict[str, Any]:
    total = sum((Decimal(str(c.cost_usd)) for c in clips), Decimal("0"))
    ratio = film_ratio(clips, stitched.width, stitched.height)
    return {
        "kind": "hailuo-film", "title": board.title, "film_id": film_id, "mode": mode,
        "provider": connection.provider, "model": options.model,
        "simulated": _simulated(connection, clips), "style_suffix": board.style_suffix,
        "video": {"file": "video.mp4", "sha256": stitched.sha256, "size": stitched.size,
                  "duration": stitched.duration, "frames": stitched.frames,
                  "width": stitched.width, "height": stitched.height, "fps": stitched.fps,
                  "ratio": ratio, "has_audio": stitched.has_audio},
        "audio": film_audio(stitched),
        "stitch": {"method": stitched.method, "reason": stitched.reason,
                   "transition": stitched.transition,
                   "crossfade_seconds": stitched.crossfade_seconds,
                   "dropped_boundary_frames": stitched.dropped_frames,
                   "audio": {"source": board.audio, "sha256": audio_sha} if board.audio
                   else None},
        "stills": {"poster": "poster.jpg", "contact_sheet": "contact-sheet.jpg",
                   "ratio": ratio, "has_audio": stitched.has_audio,
                   "contact_sheet_labels": [clip_sheet_label(s, c)
                                            for s, c in zip(shots, clips, strict=True)]},
        "segments": [_segment_entry(s, c) for s, c in zip(shots, clips, strict=True)],
        "clip_count": len(clips),
        "total_cost_usd": str(total),
        "created_at": utcnow(),
        "prefect_flow_run_id": str(flow_run.id) if flow_run.id else None,
    }


def _publish_film(result: FilmResult, manifest: dict[str, Any], slug: str) -> None:
    """The film's keyed artifact (``hailuo-film-<slug>``: poster, file, where it is, the
    clips), and its poster and contact sheet as image artifacts when they have URLs."""
    key = publish_film(result, manifest, slug)
    if result.poster_url:
        create_image_artifact(result.poster_url, key=f"{key}-poster",
                              description=f"poster of {result.title}")
    if result.contact_sheet_url:
        create_image_artifact(result.contact_sheet_url, key=f"{key}-contact-sheet",
                              description=f"contact sheet of {result.title}")


def _film_done(result: FilmResult, source: Storyboard | str, **_: Any) -> None:
    emit_film_completed(result, load_storyboard(source).slug)


def _film_failed(error: Exception, source: Storyboard | str, **_: Any) -> None:
    try:
        board = load_storyboard(source)
        slug, title = board.slug, board.title
    except Exception:  # noqa: BLE001 - the storyboard itself was what failed
        slug = title = Path(str(source)).stem if isinstance(source, str) else "film"
    emit_film_failed(slug, title, error)


@reported(_film_done, _film_failed)
def make_film(source: Storyboard | str, *, mode: FilmMode, options: GenerationOptions,
              destination: Destination, credentials_block: str | HailuoCredentials | None,
              max_concurrency: int = 8) -> FilmResult:
    """Plan, price, generate (chains in parallel), stitch, upload and describe a film.

    Must run inside a flow. The clips are written to ``<output_dir>/<film slug>/`` (named
    after their segments), the film to ``<output_dir>/films/<film slug>-<film id>/``;
    emits ``hailuo.film.completed`` or ``hailuo.film.failed`` (``flows/publish.py``).
    ``credentials_block`` is a block name or the block itself. Everything that could
    fail later (credentials, output folder, bucket, keyframes, audio, requests, budget)
    is checked before the first submit
    (flows/preflight.py). Fails after generating everything it could, naming each
    failed clip; the clips that finished are reused by a re-run.
    """
    logger = get_run_logger()
    board = load_storyboard(source)
    options = options.model_copy(update=board.film_settings(
        model=options.model, resolution=options.resolution, duration=options.duration,
        ratio=options.ratio))
    ready, shots = prepare_film(board.shots(chain_all=mode == "continuity"), board.audio,
                                options, destination, credentials_block)
    connection, audio = ready.connection, ready.audio
    if len({s.resolution or options.resolution for s in shots}) > 1:
        logger.warning("segments ask for different resolutions: stitching will re-encode")

    groups = chains(shots)
    outcomes: list[ChainOutcome] = []
    with ThreadPoolTaskRunner(max_workers=max(1, min(max_concurrency, len(groups)))) as runner:
        futures = [runner.submit(generate_chain, {
            "shots": g, "label": _chain_label(g), "connection": connection,
            "options": options, "destination": destination, "group": board.slug})
            for g in groups]
        outcomes = [f.result() for f in futures]
    clips = [c for o in outcomes for c in o.clips]
    failures = [o for o in outcomes if o.failed is not None]
    if clips or failures:
        publish_artifacts(clips, f"{mode} {board.title}",
                          key=artifact_key("film", board.slug, "clips"),
                          failed=[(f"{o.failed:03d} {_name(shots, o.failed)}",
                                   f"{type(o.error).__name__}: {o.error}")
                                  for o in failures if o.failed is not None])
    if failures:
        names = {s.index: s.name for s in shots}
        finished = {c.name for c in clips}
        raise ClipsFailedError.of(
            [ClipFailure(o.failed, names.get(o.failed), o.error or RuntimeError("unknown"))
             for o in failures if o.failed is not None],
            total=len(shots), kept=[s.index for s in shots if s.name in finished])

    film_dir_name = board.slug
    audio_sha = media.sha256_file(audio) if audio else None
    film_id = _film_id(clips, board, audio_sha)
    folder = Path(destination.output_dir) / "films" / f"{film_dir_name}-{film_id}"
    stitched = stitch_clips([c.local_path for c in clips], str(folder / "video.mp4"),
                            drop_boundary=True, transition=board.transition,
                            crossfade_seconds=board.crossfade_seconds, audio_path=audio)
    poster = make_poster(str(stitched.path), str(folder / "poster.jpg"))
    sheet = make_contact_sheet([c.local_path for c in clips], str(folder / "contact-sheet.jpg"),
                               labels=[clip_sheet_label(s, c)
                                       for s, c in zip(shots, clips, strict=True)])
    manifest = _manifest(board, mode, film_id, shots, clips, stitched, audio_sha, connection,
                         options)
    manifest_path = folder / "manifest.json"
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
    result = FilmResult(
        title=board.title, film_id=film_id, mode=mode, clips=clips,
        video_path=str(stitched.path), sha256=stitched.sha256, duration=stitched.duration,
        frames=stitched.frames, width=stitched.width, height=stitched.height,
        stitch_method=stitched.method, stitch_reason=stitched.reason, poster_path=poster,
        contact_sheet_path=sheet, manifest_path=str(manifest_path),
        total_cost_usd=float(manifest["total_cost_usd"]),
        simulated=_simulated(connection, clips), ratio=manifest["video"]["ratio"],
        has_audio=stitched.has_audio, audio_method=stitched.audio_method,
        audio_duration=stitched.audio_duration)
    if destination.s3_bucket_block:
        info = media.probe(stitched.path)
        video = DownloadedVideo(task_id=folder.name, path=stitched.path, sha256=stitched.sha256,
                                size=stitched.size, width=info.width, height=info.height,
                                duration=info.duration, fps=info.fps, frames=info.frames,
                                codec=info.codec)
        uploaded = upload_to_s3(video, json.loads(manifest_path.read_text()),
                                destination.s3_bucket_block, prefix=destination.s3_prefix,
                                provider="films", presign_seconds=destination.presign_seconds)
        base = uploaded.key.rsplit("/", 1)[0]
        _, poster_url = upload_still(poster, destination.s3_bucket_block, f"{base}/poster.jpg",
                                     destination.presign_seconds)
        _, sheet_url = upload_still(sheet, destination.s3_bucket_block,
                                    f"{base}/contact-sheet.jpg", destination.presign_seconds)
        result = result.model_copy(update={
            "s3_uri": uploaded.s3_uri, "manifest_uri": uploaded.manifest_uri,
            "presigned_url": uploaded.presigned_url, "poster_url": poster_url,
            "contact_sheet_url": sheet_url})
    _publish_film(result, manifest, board.slug)
    logger.info("film %s: %s (%.1f s, %d clips, $%s)", board.title, result.video_path,
                result.duration, len(clips), manifest["total_cost_usd"])
    return result


@flow(name="hailuo-multi-clip-continuity", log_prints=True, persist_result=True,
      on_cancellation=[cancel_queued_tasks])
def multi_clip_continuity(
    storyboard: StoryboardInput,
    options: Options = GenerationOptions(),
    destination: Where = Destination(),
    credentials: Credentials = None,
    credentials_block: CredentialsBlock = None,
) -> FilmResult:
    """A long video as a chain: clip 1 from text (or from the storyboard's first image),
    every next clip image-to-video from the exact last frame of the one before, then
    stitched without re-encoding when the clips allow it.

    Args:
        storyboard: A storyboard, or the path of a .yaml/.json storyboard file on the
            machine running the flow. Segment keyframes, if any, become the clip's last
            frame (first+last frame mode).
        options: Model, default duration/resolution (the storyboard's own win), cost limit.
        destination: Local folder and optional S3 bucket block for clips and film.
        credentials: The HailuoCredentials block to use, picked from the saved blocks; it
            wins over the credentials block name.
        credentials_block: The same by name (CLI and code): a saved HailuoCredentials
            block, or "simulator" for the embedded simulator (nothing is paid). Empty
            means not set; with neither set the run fails at once, naming the block to
            create.
    """
    return make_film(storyboard, mode="continuity", options=options, destination=destination,
                     credentials_block=pick_credentials(credentials, credentials_block),
                     max_concurrency=1)
