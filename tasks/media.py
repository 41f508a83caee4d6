"""Download and frame tasks: thin wrappers over ``hailuo.client`` and ``hailuo.media``."""

from __future__ import annotations

import shutil
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from hailuo import events, media
from hailuo.errors import InvalidVideoError
from hailuo.files import atomic_output, clip_path, output_path, short_task_id
from hailuo.models import DownloadedVideo, Job
from prefect_hailuo.blocks.credentials import HailuoConnection
from prefect_hailuo.tasks.retries import retry_unless_permanent


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".verified.json")


@task(name="download-video", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10],
      retry_condition_fn=retry_unless_permanent, task_run_name="download-{job.task_id}")
def download_video(job: Job, connection: HailuoConnection, output_dir: str = "out",
                   group: str | None = None, label: str | None = None) -> DownloadedVideo:
    """Download a completed job's video to ``<output_dir>/<group>/<label>-<id8>.mp4``
    (``hailuo.files.clip_path``: the batch or film name, else ``clips``; the clip's name or
    a short prompt slug; the task id's last 8 characters; all sanitised).

    Keyed by task id: when that file is already there with a matching verification record
    (sha256, and it still decodes), nothing is fetched — a re-run costs no bandwidth and
    survives expired links. The path depends only on run-independent inputs, so a re-run
    computes the same one. A verified copy of the same task under another name (the clip
    was renamed, or an earlier version's ``<output_dir>/<task_id>.mp4``) is copied into
    place instead of fetched again. Otherwise it streams, hashes and probes the file before
    renaming it into place (the client does this), then writes the record.
    """
    logger = get_run_logger()
    events.emit(events.DOWNLOADING, task_id=job.task_id)
    # The task id is the provider's text: checked, and the path proven inside output_dir.
    path = clip_path(output_dir, group, label, job.task_id)
    record = _sidecar(path)
    if path.exists() and record.exists():
        known = verified_download(path, job.task_id)
        if known is not None:
            logger.info("already downloaded and verified: %s", path)
            events.emit(events.DOWNLOADED, task_id=job.task_id, path=str(path), reused=True)
            return known.model_copy(update={"path": path})
        logger.warning("local copy of %s failed verification; downloading again", path)
    earlier = _earlier_copy(path, output_dir, job.task_id)
    if earlier is not None:
        with atomic_output(path) as tmp:
            shutil.copyfile(earlier.path, tmp)
        video = earlier.model_copy(update={"path": path})
        record.write_text(video.model_dump_json(indent=2))
        logger.info("verified copy of task %s found at %s; copied to %s", job.task_id,
                    earlier.path, path)
        events.emit(events.DOWNLOADED, task_id=job.task_id, path=str(path), reused=True)
        return video
    with connection.client() as client:
        video = client.download(job, path, within=output_dir)
    record.write_text(video.model_dump_json(indent=2))
    logger.info("downloaded %s (%d bytes, sha256 %s…)", path, video.size, video.sha256[:12])
    events.emit(events.DOWNLOADED, task_id=job.task_id, path=str(path), reused=False)
    return video


def verified_download(path: Path, task_id: str) -> DownloadedVideo | None:
    """The verification record of ``path`` when the file still matches it (size, sha256,
    it decodes) and it is the video of ``task_id``; else None."""
    try:
        known = DownloadedVideo.model_validate_json(_sidecar(path).read_text())
        if known.task_id != task_id or known.size != path.stat().st_size:
            return None
        if media.sha256_file(path) != known.sha256:
            return None
        media.probe(path)
    except (OSError, ValueError, InvalidVideoError):
        return None
    return known.model_copy(update={"path": path})


def _earlier_copy(path: Path, output_dir: str, task_id: str) -> DownloadedVideo | None:
    """A verified download of ``task_id`` under another name: the same folder's
    ``*-<id8>.mp4`` (the clip was renamed) or the flat ``<output_dir>/<task_id>.mp4`` of
    earlier versions."""
    candidates = [output_path(output_dir, task_id, ".mp4")]
    candidates += sorted(path.parent.glob(f"*-{short_task_id(task_id)}.mp4"))
    for candidate in candidates:
        if candidate != path and _sidecar(candidate).exists():
            found = verified_download(candidate, task_id)
            if found is not None:
                return found
    return None


@task(name="extract-last-frame", cache_policy=NO_CACHE)
def extract_last_frame(video_path: str, output_path: str | None = None) -> str:
    """The exact final frame as a lossless PNG (the next clip's first frame)."""
    out = Path(output_path) if output_path else Path(video_path).with_suffix(".last.png")
    return str(media.extract_last_frame(Path(video_path), out))


@task(name="make-thumbnail", cache_policy=NO_CACHE)
def make_thumbnail(video_path: str, output_path: str | None = None, width: int = 480) -> str:
    """A JPEG thumbnail of the middle frame, for artifacts and listings.

    Kept when it is already there and newer than the video (a re-run decodes nothing);
    a re-downloaded video is newer, so its thumbnail is made again."""
    events.emit(events.THUMBNAIL, video_path=video_path)
    video = Path(video_path)
    out = Path(output_path) if output_path else video.with_suffix(".thumb.jpg")
    if out.exists() and out.stat().st_size and out.stat().st_mtime_ns >= video.stat().st_mtime_ns:
        events.emit(events.THUMBNAIL_DONE, path=str(out))
        return str(out)
    made = str(media.thumbnail(video, out, width=width))
    events.emit(events.THUMBNAIL_DONE, path=made)
    return made

