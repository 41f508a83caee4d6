"""Prefect tasks that finish a narrated film (``flows/film.py``): where each segment starts
in the stitched film, the mixed soundtrack (``hailuo.mix``), the subtitles
(``hailuo.subtitles``), the final MP4, and the upload of its files.

Never cached: they are cheap next to the generations and their outputs are files made from
files that are themselves verified (a re-run makes them again, paying nothing).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from hailuo import audio, events, media, mix
from hailuo.audio import SubtitleEntry
from hailuo.files import atomic_output
from hailuo.mix import Cue, MixSettings, Narration, Soundtrack
from hailuo.subtitles import film_cues, write_sidecars
from prefect_hailuo.tasks.retries import retry_unless_permanent

__all__ = ["FinalFilm", "mix_film_soundtrack", "mux_film", "segment_timeline",
           "upload_film_files", "write_subtitles"]


def _stage(stage: str) -> None:
    events.emit(events.FILM_STAGE, stage=stage)


@task(name="segment-timeline", cache_policy=NO_CACHE)
def segment_timeline(clip_paths: list[str], manifest_path: str) -> list[float]:
    """Where each clip (segment) starts in the stitched film, seconds: the clips' real
    frame counts and rates, less the boundary frames and crossfades the stitch recorded in
    the film's manifest (``hailuo.mix.segment_starts``). Checked against the stitched
    film's length (within a frame)."""
    manifest = json.loads(Path(manifest_path).read_text())
    stitch, video = manifest["stitch"], manifest["video"]
    infos = [media.probe(p) for p in clip_paths]
    fps = float(video.get("fps") or infos[0].fps)
    fade = 0
    if stitch.get("transition") == "crossfade" and len(infos) > 1:
        fade = max(1, round(float(stitch.get("crossfade_seconds") or 0) * fps))
    starts = mix.segment_starts([i.frames for i in infos], [i.fps for i in infos],
                                drop_boundary=bool(stitch.get("dropped_boundary_frames")),
                                crossfade_frames=fade, out_fps=fps)
    end = starts[-1] + infos[-1].frames / infos[-1].fps
    if abs(end - float(video["duration"])) > 1.5 / fps:
        get_run_logger().warning(
            "segment starts add up to %.3f s but the stitched film lasts %.3f s", end,
            float(video["duration"]))
    return [round(s, 4) for s in starts]


@task(name="mix-soundtrack", cache_policy=NO_CACHE, persist_result=False)
def mix_film_soundtrack(video_path: str, duration: float,
                        narrations: list[tuple[str, float, str]], music_path: str | None,
                        settings: MixSettings, stems_dir: str | None = None) -> Soundtrack:
    """Narration (path, start in the film, label) at its segments, the music ducked under
    it, the clips' own sound under both; normalised and true-peak limited. With
    ``stems_dir`` the three buses are written there as FLAC (they sum to the mix)."""
    _stage("mixing")
    logger = get_run_logger()
    track = mix.mix_soundtrack(
        duration, [Narration(Path(p), start, label) for p, start, label in narrations],
        music=music_path, clip_audio=mix.video_audio(video_path), settings=settings)
    for note in track.notes:
        logger.warning(note)
    if stems_dir:
        folder = Path(stems_dir)
        for name, samples in track.stems.items():
            with atomic_output(folder / f"{name}.flac") as tmp:
                tmp.write_bytes(audio.encode_audio(samples, track.rate, "flac"))
    logger.info("soundtrack: %s LUFS, true peak %s dBTP, music %s dB under speech",
                track.loudness_lufs, track.true_peak_dbtp, track.music_under_speech_db)
    return track


@task(name="write-subtitles", cache_policy=NO_CACHE)
def write_subtitles(narrations: list[tuple[float, list[SubtitleEntry]]], video_path: str,
                    duration: float) -> tuple[list[Cue], str, str]:
    """The speech timestamps moved to the film's timeline; ``.srt`` and ``.vtt`` beside
    ``video_path`` with its stem. Returns (cues, srt path, vtt path)."""
    _stage("subtitles")
    cues = film_cues(narrations, duration)
    srt, vtt = write_sidecars(cues, video_path)
    get_run_logger().info("%d subtitle cues: %s, %s", len(cues), srt.name, vtt.name)
    return cues, str(srt), str(vtt)


class FinalFilm(BaseModel):
    """The finished MP4 as measured after writing it."""

    path: str
    sha256: str
    size: int
    duration: float
    loudness_lufs: float | None  # None: a silent film
    true_peak_dbtp: float | None
    codec_trim_db: float
    audio_codec: str
    audio_sample_rate: int
    audio_channels: int
    subtitle_cues: int


@task(name="mux-film", cache_policy=NO_CACHE, persist_result=False)
def mux_film(stitched_path: str, soundtrack: Soundtrack, output_path: str, cues: list[Cue],
             ceiling_dbtp: float = -1.0, title: str | None = None) -> FinalFilm:
    """The stitched picture copied, the soundtrack as AAC 48 kHz stereo, the cues as a
    mov_text subtitle track; measured again after writing (``hailuo.mix.write_film``)."""
    _stage("writing the film")
    info = mix.write_film(stitched_path, soundtrack, output_path, cues=cues,
                          ceiling_dbtp=ceiling_dbtp, title=title)
    final = FinalFilm.model_validate(info)
    get_run_logger().info("film %s: %s LUFS, true peak %s dBTP, %d subtitle cues",
                          Path(final.path).name, final.loudness_lufs, final.true_peak_dbtp,
                          final.subtitle_cues)
    return final


_TYPES = {".mp4": "video/mp4", ".srt": "application/x-subrip", ".vtt": "text/vtt",
          ".json": "application/json", ".flac": "audio/flac"}


@task(name="upload-film-files", cache_policy=NO_CACHE, retries=2,
      retry_delay_seconds=[2, 10], retry_condition_fn=retry_unless_permanent)
def upload_film_files(paths: list[str], s3_bucket_block: str, prefix: str,
                      presign_seconds: int = 86400) -> dict[str, Any]:
    """Upload the finished film's files under ``<bucket folder>/<prefix>/`` (a file with
    the same sha256 already there is skipped). Returns ``{"uris": {name: s3 uri},
    "presigned_url": <first file>}``."""
    from prefect_aws import S3Bucket

    from prefect_hailuo.tasks.storage import TRANSFER, _existing_sha

    block = S3Bucket.load(s3_bucket_block)
    s3 = block.credentials.get_s3_client()
    bucket = block.bucket_name
    base = "/".join(filter(None, [block.bucket_folder, prefix.strip("/")]))
    uris: dict[str, str] = {}
    for name in paths:
        path = Path(name)
        key = f"{base}/{path.name}"
        sha = media.sha256_file(path)
        events.emit(events.UPLOADING, path=str(path), bucket=bucket, key=key)
        if _existing_sha(s3, bucket, key) != sha:
            s3.upload_file(str(path), bucket, key, Config=TRANSFER, ExtraArgs={
                "ContentType": _TYPES.get(path.suffix, "application/octet-stream"),
                "Metadata": {"sha256": sha}})
        uris[path.name] = f"s3://{bucket}/{key}"
        events.emit(events.UPLOADED, uri=uris[path.name])
    first = f"{base}/{Path(paths[0]).name}"
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": first},
                                    ExpiresIn=presign_seconds)
    return {"uris": uris, "presigned_url": url}
