"""``film``: a narrated, scored, subtitled film from a storyboard file (issue 15).

The order is what keeps a film cheap to get wrong:

1. **Plan, price, check** (nothing paid): the storyboard's clips are planned with their
   generated keyframes as placeholders and validated against the video model's
   capabilities (a keyframe needs first+last frame clips); the output folder, bucket and
   both credentials blocks are checked; a music file must be readable audio; the whole
   film's estimate (images + speech + music + video, ``hailuo.pricing``) must be within
   ``options.max_cost_usd``.
2. **Cheap assets first**: the keyframe images (``generate_image``), then the narration
   (``synthesize_speech``), each cached on its request's identity (a re-run pays nothing).
3. **Checks before any video is paid**: every narration's real ``audio_length`` fits its
   segment's clip, every image passes the first-frame checks, the film's estimate with the
   real asset costs is still within the limit. Then the music is composed
   (``compose_music``); an account that cannot use MiniMax's music models stops the film
   here, with a message offering ``music: none`` or ``music: {file: path}``.
4. **The video** through the film engine (``flows.continuity.make_film``), the generated
   keyframes fed in as the clips' first and last frames (a keyframed storyboard: the clips
   between keyframes are generated at once).
5. **The soundtrack and the final file** (``tasks.soundtrack``): each segment's start in the
   stitched film, the mix (narration at its segment, music ducked under it, the clips' own
   sound under both, -16 LUFS integrated, true peak <= -1 dBTP), subtitles as ``.srt`` and
   ``.vtt`` beside the video and as a ``mov_text`` track inside it, stems, the manifest's
   narration / music / subtitles / loudness entries, S3 and an artifact.

Audio and images come from MiniMax's own API (images: or APIMart's image models, following
the audio connection's provider); ``audio_credentials_block`` names their block when the
video runs on another (e.g. APIMart). Empty, it is the video's block; the embedded
simulator (``"simulator"``) serves every API.
"""

from __future__ import annotations

import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel, Field

from hailuo import events
from hailuo.capabilities import Provider
from hailuo.errors import InvalidRequestError
from hailuo.files import atomic_output
from hailuo.filmplan import FilmPlan, check_film_cost, plan_film
from hailuo.mediaclient import ModelUnavailableError
from hailuo.mix import MixSettings
from hailuo.models import utcnow
from hailuo.speech import DEFAULT_VOICE
from hailuo.storyboard import load_storyboard
from prefect_hailuo.blocks.credentials import (
    HailuoConnection,
    HailuoCredentials,
    resolve_connection,
)
from prefect_hailuo.flows import publish
from prefect_hailuo.flows.continuity import FilmResult, make_film
from prefect_hailuo.flows.models import Destination, GenerationOptions
from prefect_hailuo.flows.params import (
    Credentials,
    CredentialsBlock,
    MaxConcurrency,
    Options,
    StoryboardInput,
    Where,
    pick_credentials,
    titled,
)
from prefect_hailuo.flows.preflight import check_audio, check_images, preflight
from prefect_hailuo.tasks.assets import (
    ImageAsset,
    SpeechAsset,
    compose_music,
    generate_image,
    music_client,
    speech_client,
    synthesize_speech,
)
from prefect_hailuo.tasks.cancellation import cancel_queued_tasks
from prefect_hailuo.tasks.soundtrack import (
    mix_film_soundtrack,
    mux_film,
    segment_timeline,
    upload_film_files,
    write_subtitles,
)

__all__ = ["NarratedFilmResult", "NarrationEntry", "film"]

AudioCredentials = Annotated[HailuoCredentials | None, titled("Audio and image credentials")]
AudioCredentialsBlock = Annotated[str | None, titled("Audio and image credentials block name")]


class NarrationEntry(BaseModel):
    """One segment's narration on the film's timeline."""

    segment: int
    text: str
    path: str
    start: float = Field(description="Seconds into the finished film.")
    audio_length_ms: int
    clip_seconds: float
    cost_usd: float


class NarratedFilmResult(FilmResult):
    """A finished narrated film: ``video_path`` is the final MP4 (picture, mixed sound,
    subtitle track); the ``.srt`` and ``.vtt`` lie beside it with its stem."""

    stitched_video_path: str = Field(description="The picture as stitched, before the mix.")
    srt_path: str
    vtt_path: str
    subtitle_cues: int
    narrations: list[NarrationEntry] = Field(default_factory=list)
    keyframes: list[str | None] = Field(default_factory=list,
                                        description="K0..Kn as used (generated or given).")
    music_path: str | None = None
    music_source: str = "none"
    stems: dict[str, str] = Field(default_factory=dict)
    loudness_lufs: float | None = Field(description="Measured on the final file; None: "
                                        "silent.")
    true_peak_dbtp: float | None
    music_under_speech_db: float | None = None
    segment_starts: list[float] = Field(default_factory=list)
    video_cost_usd: float = 0.0
    audio_cost_usd: float = Field(0.0, description="Images + speech + music estimates.")
    srt_uri: str | None = None
    vtt_uri: str | None = None
    stage_seconds: dict[str, float] = Field(default_factory=dict)


def _audio_connection(audio_block: HailuoCredentials | str | None, video: HailuoConnection
                      ) -> HailuoConnection:
    """The connection for speech, music and images: the picked or named block, else the
    video's (the embedded simulator answers in MiniMax's dialect for them)."""
    if isinstance(audio_block, HailuoCredentials):
        return resolve_connection(audio_block, Provider.MINIMAX)
    name = (audio_block or "").strip() or None
    if name is None:
        if video.credentials_block != "simulator":
            return video
        name = "simulator"
    return resolve_connection(name, Provider.MINIMAX)


def _stage(stage: str) -> None:
    events.emit(events.FILM_STAGE, stage=stage)


# -- the flow ---------------------------------------------------------------------------
@flow(name="hailuo-film", log_prints=True, persist_result=True,
      on_cancellation=[cancel_queued_tasks])
def film(
    storyboard: StoryboardInput,
    options: Options = GenerationOptions(),
    destination: Where = Destination(),
    credentials: Credentials = None,
    credentials_block: CredentialsBlock = None,
    audio_credentials: AudioCredentials = None,
    audio_credentials_block: AudioCredentialsBlock = None,
    max_concurrency: MaxConcurrency = 8,
    loudness_lufs: Annotated[float, titled("Loudness (LUFS)")] = -16.0,
) -> NarratedFilmResult:
    """A finished film from a storyboard: generated keyframes, narration, music, the clips,
    one mixed soundtrack (``loudness_lufs`` integrated, true peak <= -1 dBTP), subtitles
    (``.srt``/``.vtt`` beside the MP4 and a track inside it).

    Args:
        storyboard: a Storyboard, or a .yaml/.json file (keys ``voice``, ``music``,
            ``first_image_prompt``; per segment ``narration``, ``keyframe_prompt``).
        options: video model, durations, ``max_cost_usd`` for the whole film (images +
            speech + music + video).
        destination: local folder and optional S3 bucket block.
        credentials: The HailuoCredentials block for the video, picked from the saved
            blocks; it wins over the credentials block name.
        credentials_block: The same by name (CLI and code); "simulator" runs the embedded
            simulator (nothing is paid).
        audio_credentials: The HailuoCredentials block for speech, music and images
            (MiniMax's own API), picked from the saved blocks; it wins over the name.
        audio_credentials_block: The same by name; empty: the video's block.
        max_concurrency: clips in flight at once.
        loudness_lufs: integrated loudness of the finished mix.
    """
    logger = get_run_logger()
    timings: dict[str, float] = {}
    mark = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        timings[name] = round(timings.get(name, 0.0) + now - mark, 3)
        mark = now

    _stage("checking")
    board = load_storyboard(storyboard)
    settings = MixSettings(loudness_lufs=loudness_lufs)
    video_credentials = pick_credentials(credentials, credentials_block)
    video_conn = preflight(video_credentials, options, destination).connection
    audio_conn = _audio_connection(pick_credentials(audio_credentials,
                                                    audio_credentials_block), video_conn)
    plan = plan_film(board, video_conn.provider, audio_conn.provider, model=options.model,
                     resolution=options.resolution, duration=options.duration,
                     ratio=options.ratio, prompt_optimizer=options.prompt_optimizer,
                     fast_pretreatment=options.fast_pretreatment, watermark=options.watermark)
    if plan.speech_requests:
        speech_client(audio_conn).close()  # an APIMart-only block fails here, not later
    if plan.music_request is not None:
        music_client(audio_conn).close()
    if plan.music_file:
        check_audio(plan.music_file)
    check_film_cost(plan.costs, options.max_cost_usd, "nothing was paid")
    lap("checks")

    assets = Path(destination.output_dir) / "assets" / board.slug
    common = {"output_dir": str(assets), "s3_bucket_block": destination.s3_bucket_block,
              "s3_prefix": destination.s3_prefix}
    _stage("keyframes")
    image_futures = {i: generate_image.submit(request, audio_conn, name=f"k{i}", **common)
                     for i, request in plan.image_requests.items()}
    images: dict[int, ImageAsset] = {i: f.result() for i, f in image_futures.items()}
    lap("images")
    _stage("narration")
    speech_futures = {i: synthesize_speech.submit(request, audio_conn,
                                                  name=f"narration-{i:02d}", **common)
                      for i, request in plan.speech_requests.items()}
    speech: dict[int, SpeechAsset] = {i: f.result() for i, f in speech_futures.items()}
    lap("speech")

    # checks before any video is paid for
    _stage("checking")
    too_long = [f"segment {i}: {s.audio_length_ms / 1000:.2f} s of narration for a "
                f"{plan.clip_seconds[i - 1]} s clip" for i, s in sorted(speech.items())
                if s.audio_length_ms > plan.clip_seconds[i - 1] * 1000]
    if too_long:
        raise InvalidRequestError(
            "narration does not fit its segment (" + "; ".join(too_long) + "): shorten the "
            "text, or give the segment a longer duration. No video was paid for",
            field="narration")
    keyframes: list[str | None] = [None] * (len(board.segments) + 1)
    for index, asset in images.items():
        keyframes[index] = str(asset.images[0].path)
    check_images({("first_image" if i == 0 else f"segment {i} keyframe"): path
                  for i, path in enumerate(keyframes) if path})
    images_usd = sum((Decimal(str(a.cost_usd)) for a in images.values()), Decimal(0))
    speech_usd = sum((Decimal(str(a.cost_usd)) for a in speech.values()), Decimal(0))
    check_film_cost({"video": plan.video_usd, "images": images_usd, "speech": speech_usd,
                     "music": plan.music_usd}, options.max_cost_usd, "no video was paid for")
    lap("checks")

    music_path, music_usd = plan.music_file, Decimal(0)
    music_source = "file" if plan.music_file else "none"
    if plan.music_request is not None:
        _stage("music")
        try:
            track = compose_music(plan.music_request, audio_conn, name="music", **common)
        except ModelUnavailableError as exc:
            raise ModelUnavailableError(
                f"the music could not be composed: {exc.message}. The account behind "
                f"credentials block {audio_conn.credentials_block!r} cannot use MiniMax's "
                "music models. No video was paid for. Write `music: none` in the storyboard "
                "for a film without music, or `music: {file: path/to/track.mp3}` to use a "
                "track of your own", field="music") from None
        music_path, music_source = str(track.path), "composed"
        music_usd = Decimal(str(track.cost_usd))
    lap("music")

    _stage("video")
    video_board = board.with_keyframes(keyframes).model_copy(update={"audio": None,
                                                                     "music": None})
    made = make_film(video_board, mode="storyboard", options=options,
                     destination=destination, credentials_block=video_credentials,
                     max_concurrency=max_concurrency)
    lap("video")

    starts = segment_timeline([c.local_path for c in made.clips], made.manifest_path)
    folder = Path(made.video_path).parent
    final_path = folder / f"{board.slug}.mp4"
    narrations = [(str(a.path), starts[i - 1], f"segment {i}") for i, a in sorted(speech.items())]
    track = mix_film_soundtrack(made.video_path, made.duration, narrations, music_path,
                                settings, str(folder / "stems"))
    lap("mix")
    cues, srt, vtt = write_subtitles([(starts[i - 1], a.subtitles)
                                      for i, a in sorted(speech.items())],
                                     str(final_path), made.duration)
    lap("subtitles")
    final = mux_film(made.video_path, track, str(final_path), cues,
                     settings.true_peak_dbtp, board.title)
    lap("mux")

    entries = [NarrationEntry(segment=i, text=a.text, path=str(a.path), start=starts[i - 1],
                              audio_length_ms=a.audio_length_ms,
                              clip_seconds=made.clips[i - 1].duration, cost_usd=a.cost_usd)
               for i, a in sorted(speech.items())]
    audio_usd = images_usd + speech_usd + music_usd
    stems = {name: str(folder / "stems" / f"{name}.flac") for name in track.stems}
    result = NarratedFilmResult(**{
        **made.model_dump(), "video_path": final.path, "sha256": final.sha256,
        "duration": final.duration, "stitched_video_path": made.video_path,
        "srt_path": srt, "vtt_path": vtt, "subtitle_cues": len(cues), "narrations": entries,
        "keyframes": [str(k) if k else None for k in video_board.keyframes],
        "music_path": music_path, "music_source": music_source, "stems": stems,
        "loudness_lufs": final.loudness_lufs, "true_peak_dbtp": final.true_peak_dbtp,
        "music_under_speech_db": track.music_under_speech_db, "segment_starts": starts,
        "video_cost_usd": made.total_cost_usd, "audio_cost_usd": float(audio_usd),
        "total_cost_usd": float(Decimal(str(made.total_cost_usd)) + audio_usd),
        "simulated": made.simulated or audio_conn.simulated,
        "s3_uri": None, "manifest_uri": None, "presigned_url": None})
    manifest = _manifest(result, plan, images, speech, track, final, settings, music_usd,
                         audio_conn)
    _write_json(Path(made.manifest_path), manifest)
    if destination.s3_bucket_block:
        _stage("uploading")
        prefix = "/".join([destination.s3_prefix.strip("/"), "films", folder.name])
        uploaded = upload_film_files([final.path, srt, vtt, made.manifest_path],
                                     destination.s3_bucket_block, prefix,
                                     destination.presign_seconds)
        uris = uploaded["uris"]
        result = result.model_copy(update={
            "s3_uri": uris[Path(final.path).name], "srt_uri": uris[Path(srt).name],
            "vtt_uri": uris[Path(vtt).name], "manifest_uri": uris[Path(made.manifest_path).name],
            "presigned_url": uploaded["presigned_url"],
            "poster_url": made.poster_url, "contact_sheet_url": made.contact_sheet_url})
    lap("finish")
    result = result.model_copy(update={"stage_seconds": timings})
    _publish(result, board.slug)
    logger.info("narrated film %s: %s (%.1f s, %s LUFS, %s dBTP, $%.4f)", board.title,
                result.video_path, result.duration, result.loudness_lufs,
                result.true_peak_dbtp, result.total_cost_usd)
    return result


def _write_json(path: Path, data: dict[str, Any]) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))


def _manifest(result: NarratedFilmResult, plan: FilmPlan, images: dict[int, ImageAsset],
              speech: dict[int, SpeechAsset], track: Any, final: Any, settings: MixSettings,
              music_usd: Decimal, audio_conn: HailuoConnection) -> dict[str, Any]:
    """make_film's manifest with the narrated film's entries added."""
    manifest = json.loads(Path(result.manifest_path).read_text())
    manifest["kind"] = "hailuo-narrated-film"
    manifest["final"] = {"file": Path(result.video_path).name, "sha256": final.sha256,
                         "size": final.size, "duration": final.duration,
                         "audio": {"codec": final.audio_codec,
                                   "sample_rate": final.audio_sample_rate,
                                   "channels": final.audio_channels},
                         "subtitle_track": "mov_text" if final.subtitle_cues else None}
    manifest["segment_starts"] = result.segment_starts
    manifest["keyframes"] = [
        {"index": i, "source": ("generated" if i in images else "file") if k else None,
         "prompt": plan.image_requests[i].prompt if i in images else None,
         "file": k, "sha256": images[i].images[0].sha256 if i in images else None,
         "cost_usd": images[i].cost_usd if i in images else 0.0,
         "manifest": images[i].manifest_path if i in images else None}
        for i, k in enumerate(result.keyframes)]
    manifest["narration"] = {
        "voice": plan.board.voice or DEFAULT_VOICE,
        "credentials_block": audio_conn.credentials_block,
        "segments": [{**entry.model_dump(), "sha256": speech[entry.segment].sha256,
                      "model": speech[entry.segment].model,
                      "manifest": speech[entry.segment].manifest_path,
                      "subtitles": [s.model_dump() for s in speech[entry.segment].subtitles]}
                     for entry in result.narrations]}
    manifest["music"] = {"source": result.music_source, "file": result.music_path,
                         "prompt": plan.music_request.prompt if plan.music_request else None,
                         "cost_usd": float(music_usd), "ducking_db": settings.duck_db,
                         "attack_seconds": settings.attack_seconds,
                         "release_seconds": settings.release_seconds,
                         "measured_under_speech_db": track.music_under_speech_db}
    manifest["subtitles"] = {"srt": Path(result.srt_path).name,
                             "vtt": Path(result.vtt_path).name, "cues": result.subtitle_cues,
                             "track_in_mp4": bool(final.subtitle_cues)}
    manifest["loudness"] = {"target_lufs": settings.loudness_lufs,
                            "integrated_lufs": final.loudness_lufs,
                            "true_peak_dbtp": final.true_peak_dbtp,
                            "true_peak_ceiling_dbtp": settings.true_peak_dbtp,
                            "meter": "pyloudnorm (ITU-R BS.1770-4); true peak 4x oversampled",
                            "mix_gain_db": track.gain_db,
                            "limiter_max_reduction_db": track.limiter_max_reduction_db,
                            "codec_trim_db": final.codec_trim_db,
                            "measured_on": "the decoded AAC of the final file"}
    manifest["stems"] = {k: Path(v).name for k, v in result.stems.items()}
    manifest["total_cost_usd"] = f"{result.total_cost_usd:.4f}"  # the whole film's now
    manifest["costs"] = {"video_usd": f"{result.video_cost_usd:.4f}",
                         "audio_and_images_usd": f"{result.audio_cost_usd:.4f}",
                         "total_usd": f"{result.total_cost_usd:.4f}"}
    manifest["narrated_at"] = utcnow()
    return manifest


def _publish(result: NarratedFilmResult, slug_: str) -> None:
    """The narrated film's keyed artifact (history across runs): the poster (presigned, or
    a small embedded preview), the file (a presigned link, or where it lies and on which
    machine: never a bare ``file://``), the mix and the narration timeline."""
    rows = "\n".join(f"| {n.segment} | {n.start:.2f} | {n.audio_length_ms / 1000:.2f} / "
                     f"{n.clip_seconds:.2f} | {n.text} |" for n in result.narrations)
    name = Path(result.video_path).name
    create_markdown_artifact(
        f"# {result.title} (narrated)\n\n"
        + publish._preview(Path(result.poster_path).name, result.poster_url,
                           result.poster_path)
        + publish._file_line(name, result.presigned_url, result.video_path, result.s3_uri,
                             None)
        + f"\n\n{result.duration:.2f} s, {len(result.clips)} clips, **{result.loudness_lufs} "
        f"LUFS**, true peak **{result.true_peak_dbtp} dBTP**, music {result.music_source}"
        + (f" ({result.music_under_speech_db:+.1f} dB under speech)"
           if result.music_under_speech_db is not None else "")
        + f", {result.subtitle_cues} subtitle cues; estimated **${result.total_cost_usd:.4f}**"
        f" (video ${result.video_cost_usd:.4f}, audio and images "
        f"${result.audio_cost_usd:.4f}){' (simulated)' if result.simulated else ''}\n\n"
        "| segment | starts at s | narration s / clip s | text |\n|---|---|---|---|\n"
        f"{rows}\n\nSubtitles: `{Path(result.srt_path).name}`, `{Path(result.vtt_path).name}`"
        f"; manifest: `{result.manifest_uri or result.manifest_path}`",
        key=publish.artifact_key("narrated-film", slug_),
        description=f"narrated film {result.title}: {name}")

