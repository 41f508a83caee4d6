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
from hailuo.stitch import StitchResult, Transition


@task(name="stitch-clips", cache_policy=NO_CACHE)
def stitch_clips(clip_paths: list[str], output_path: str, drop_boundary: bool = True,
                 transition: Transition = "cut", crossfade_seconds: float = 0.5,
                 audio_path: str | None = None) -> StitchResult:
    """Join clips in order: packets copied when their codec parameters match (dropping the
    frame each chained clip repeats), re-encoded only when needed; optional audio track."""
    events.emit(events.STITCHING, clips=len(clip_paths))
    result = stitch.stitch(clip_paths, output_path, drop_boundary=drop_boundary,
                           transition=transition, crossfade_seconds=crossfade_seconds,
                           audio=audio_path)
    get_run_logger().info("stitched %d clips into %s by %s (%s): %d frames, %.2f s",
                          result.clips, result.path, result.method, result.reason,
                          result.frames, result.duration)
    events.emit(events.STITCHED, path=str(result.path), method=result.method)
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


@task(name="upload-still", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10])
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
