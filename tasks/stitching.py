"""Stitching tasks: thin wrappers over ``hailuo.stitch`` (join, poster, contact sheet),
plus the upload of a film's stills to S3 so the Prefect UI can show them.

Never cached: each is cheap next to a generation and its output file is what counts.
"""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect_aws import S3Bucket

from hailuo import events, stitch
from hailuo.stitch import DEFAULT_AUDIO_GAIN_DB, AudioMode, StitchResult, Transition
from prefect_hailuo.tasks.retries import retry_unless_permanent


@task(name="stitch-clips", cache_policy=NO_CACHE)
def stitch_clips(clip_paths: list[str], output_path: str, drop_boundary: bool = True,
                 transition: Transition = "cut", crossfade_seconds: float = 0.5,
                 audio_path: str | None = None, audio_mode: AudioMode = "mix",
                 audio_gain_db: float = DEFAULT_AUDIO_GAIN_DB,
                 clip_audio: bool = True) -> StitchResult:
    """Join clips in order: packets copied when their codec parameters match (dropping the
    frame each chained clip repeats), re-encoded only when needed. Each clip's own sound
    (H3) stays on its picture through cuts and crossfades; an optional audio track is mixed
    under it at ``audio_gain_db`` (``audio_mode="mix"``) or replaces it (``"replace"``)."""
    events.emit(events.STITCHING, clips=len(clip_paths))
    result = stitch.stitch(clip_paths, output_path, drop_boundary=drop_boundary,
                           transition=transition, crossfade_seconds=crossfade_seconds,
                           audio=audio_path, audio_mode=audio_mode,
                           audio_gain_db=audio_gain_db, clip_audio=clip_audio)
    logger = get_run_logger()
    logger.info("stitched %d clips into %s by %s (%s): %d frames, %.2f s",
                result.clips, result.path, result.method, result.reason,
                result.frames, result.duration)
    if result.has_audio:
        logger.info("audio %s from %s (%s): %.3f s", result.audio_method,
                    result.audio_source, result.audio_reason, result.audio_duration or 0.0)
    events.emit(events.STITCHED, path=str(result.path), method=result.method,
                audio_method=result.audio_method)
    return result


@task(name="make-poster", cache_policy=NO_CACHE)
def make_poster(video_path: str, output_path: str | None = None,
                at_seconds: float | None = None) -> str:
    """A full-resolution JPEG still of the film (default: its middle)."""
    events.emit(events.POSTER, video_path=video_path)
    out = Path(output_path) if output_path else Path(video_path).with_suffix(".poster.jpg")
    poster = str(stitch.poster_frame(video_path, out, at_seconds=at_seconds))
    events.emit(events.POSTER_DONE, path=poster)
    return poster


@task(name="make-contact-sheet", cache_policy=NO_CACHE)
def make_contact_sheet(video_paths: list[str], output_path: str,
                       labels: list[str] | None = None) -> str:
    """One labelled thumbnail per clip in a grid (JPEG or PNG by suffix)."""
    events.emit(events.CONTACT_SHEET, clips=len(video_paths))
    sheet = str(stitch.contact_sheet(video_paths, output_path, labels=labels))
    events.emit(events.CONTACT_SHEET_DONE, path=sheet)
    return sheet


@task(name="upload-still", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10],
      retry_condition_fn=retry_unless_permanent)
def upload_still(path: str, s3_bucket_block: str, key: str, presign_seconds: int = 86400
                 ) -> tuple[str, str]:
    """Upload an image to ``key`` in the block's bucket; return (s3 URI, presigned URL)."""
    block = S3Bucket.load(s3_bucket_block)
    s3 = block.credentials.get_s3_client()
    content_type = "image/png" if path.lower().endswith(".png") else "image/jpeg"
    events.emit(events.UPLOADING, path=path, bucket=block.bucket_name, key=key)
    s3.upload_file(path, block.bucket_name, key, ExtraArgs={"ContentType": content_type})
    events.emit(events.UPLOADED, uri=f"s3://{block.bucket_name}/{key}")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": block.bucket_name,
                                                          "Key": key},
                                    ExpiresIn=presign_seconds)
    return f"s3://{block.bucket_name}/{key}", url
