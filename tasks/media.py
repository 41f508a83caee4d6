"""Download and frame tasks: thin wrappers over ``hailuo.client`` and ``hailuo.media``."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from hailuo import events, media
from hailuo.errors import InvalidVideoError
from hailuo.files import output_path
from hailuo.models import DownloadedVideo, Job
from prefect_hailuo.blocks.credentials import HailuoConnection
from prefect_hailuo.tasks.retries import retry_unless_permanent


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".verified.json")


@task(name="download-video", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10],
      retry_condition_fn=retry_unless_permanent, task_run_name="download-{job.task_id}")
def download_video(job: Job, connection: HailuoConnection, output_dir: str = "out"
                   ) -> DownloadedVideo:
    """Download a completed job's video to ``<output_dir>/<task_id>.mp4``.

    Keyed by task id: when that file is already there with a matching verification record
    (sha256, and it still decodes), nothing is fetched — a re-run costs no bandwidth and
    survives expired links. Otherwise it streams, hashes and probes the file before renaming
    it into place (the client does this), then writes the record.
    """
    logger = get_run_logger()
    events.emit(events.DOWNLOADING, task_id=job.task_id)
    # The task id is the provider's text: checked, and the path proven inside output_dir.
    path = output_path(output_dir, job.task_id, ".mp4")
    record = _sidecar(path)
    if path.exists() and record.exists():
        try:
            known = DownloadedVideo.model_validate_json(record.read_text())
            if known.size == path.stat().st_size and media.sha256_file(path) == known.sha256:
                media.probe(path)
                logger.info("already downloaded and verified: %s", path)
                events.emit(events.DOWNLOADED, task_id=job.task_id, path=str(path),
                            reused=True)
                return known.model_copy(update={"path": path})
        except (ValueError, InvalidVideoError):
            logger.warning("local copy of %s failed verification; downloading again", path)
    with connection.client() as client:
        video = client.download(job, path, within=output_dir)
    record.write_text(video.model_dump_json(indent=2))
    logger.info("downloaded %s (%d bytes, sha256 %s…)", path, video.size, video.sha256[:12])
    events.emit(events.DOWNLOADED, task_id=job.task_id, path=str(path), reused=False)
    return video


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

