"""The flow-backed ``hailuo`` commands (``generate``, ``continuity``, ``storyboard``,
``film``): the command line is a thin client of the flows.

``prefect_hailuo.cli`` parses and checks the input (no Prefect), then calls ``run`` here. The flow
runs in this process, against the Prefect server named by ``PREFECT_API_URL`` (or a
temporary local one), so a command-line run is cached, resumable and shows up in the UI
like any other: running the same command again after a timeout or a crash waits for the
same provider task instead of paying again.

Progress comes from ``hailuo.events``: the run's own tasks emit what they are doing
(submitting, provider status and progress, downloading, ...) on an in-process channel, and
``RunProgress`` turns those events into the display. Nothing depends on Prefect's log
records or their wording.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Callable
from typing import Any

from hailuo import events
from hailuo.models import VideoRequest
from hailuo.progress import ProgressDisplay, choose_mode
from prefect_hailuo.defaults import SIMULATOR

#: Events that start a step: the stage the display shows while it runs.
_DURING = {
    events.INPUT_FETCHING: "fetching input",
    events.SUBMITTING: "submitting",
    events.DOWNLOADING: "downloading",
    events.THUMBNAIL: "thumbnail",
    events.UPLOADING: "uploading",
    events.STITCHING: "stitching",
    events.POSTER: "poster",
    events.CONTACT_SHEET: "contact sheet",
}
#: Events that end a step: what the user waits on next.
_AFTER = {
    events.INPUT_FETCHED: "submitting",
    events.DOWNLOADED: "thumbnail",
    events.THUMBNAIL_DONE: "finishing",
    events.UPLOADED: "finishing",
    events.STITCHED: "poster",
    events.POSTER_DONE: "contact sheet",
    events.CONTACT_SHEET_DONE: "finishing",
}


class RunProgress:
    """Feeds a ``ProgressDisplay`` from ``hailuo.events`` (subscribe an instance).

    Called in the flow's worker threads; the display is thread-safe. Unknown kinds are
    ignored, and a display problem never reaches the run (``events.emit`` also shields it).
    """

    def __init__(self, display: ProgressDisplay) -> None:
        self.display = display

    def __call__(self, event: events.Event) -> None:
        with contextlib.suppress(Exception):  # a display problem must never fail the run
            self._handle(event)

    def _handle(self, event: events.Event) -> None:
        kind = event.kind
        task_id = event.get("task_id")
        task_id = str(task_id) if task_id is not None else None
        if kind == events.STATUS:
            progress = event.get("progress")
            self.display.status(str(event.get("status")),
                                int(progress) if progress is not None else None,
                                task_id=task_id)
        elif kind == events.SUBMITTED:
            self.display.stage("queued", task_id=task_id)
        elif kind == events.DOWNLOADED:
            self.display.clip_done()
            self.display.stage(_AFTER[kind], task_id=task_id)
        elif kind == events.FILM_STAGE:  # a narrated film: keyframes, narration, mixing...
            self.display.stage(str(event.get("stage")))
        elif kind in _AFTER:
            self.display.stage(_AFTER[kind])
        elif kind in _DURING:
            self.display.stage(_DURING[kind], task_id=task_id)


def quiet_prefect_console(verbose: bool) -> None:
    """Prefect prints every run's log lines to stderr; the command shows its own display
    and one line per error instead (``--verbose`` keeps Prefect's lines)."""
    if verbose:
        return
    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = [logging.getLogger()] + [logging.getLogger(name) for name in
                                       list(logging.root.manager.loggerDict)]
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, PrefectConsoleHandler):
                handler.setLevel(logging.CRITICAL + 1)


def _destination(args: argparse.Namespace) -> Any:
    from prefect_hailuo.flows.models import Destination

    extra = {"s3_prefix": args.s3_prefix} if args.s3_prefix else {}
    return Destination(output_dir=args.out, s3_bucket_block=args.s3_bucket_block, **extra)


def _options(args: argparse.Namespace, request: VideoRequest) -> Any:
    from prefect_hailuo.flows.models import GenerationOptions

    extra = {"timeout_seconds": args.timeout} if args.timeout else {}
    return GenerationOptions(
        model=request.model, duration=request.duration, resolution=request.resolution,
        ratio=request.ratio, prompt_optimizer=request.prompt_optimizer,
        fast_pretreatment=request.fast_pretreatment, watermark=request.watermark,
        take=args.take, max_cost_usd=args.max_cost, provider=args.provider or "apimart",
        **extra)


def generate(args: argparse.Namespace, request: VideoRequest) -> Any:
    """Pick the flow from the inputs: text-to-video, image-to-video, first+last frame (H3:
    also a last frame alone) or reference-to-video (H3 references)."""
    from prefect_hailuo.flows.generation import (
        first_last_frame,
        image_to_video,
        reference_to_video,
        text_to_video,
    )

    common = {"options": _options(args, request), "destination": _destination(args),
              "credentials_block": args.credentials_block or SIMULATOR}
    if request.references:
        return reference_to_video(prompt=request.prompt,
                                  reference_images=list(request.reference_images),
                                  reference_videos=list(request.reference_videos),
                                  reference_audios=list(request.reference_audios), **common)
    if request.last_frame_image:
        return first_last_frame(first_frame_image=request.first_frame_image or "",
                                last_frame_image=request.last_frame_image,
                                prompt=request.prompt, **common)
    if request.first_frame_image:
        return image_to_video(first_frame_image=request.first_frame_image,
                              prompt=request.prompt, **common)
    return text_to_video(prompt=request.prompt, **common)


def film(args: argparse.Namespace, checked: dict[str, Any]) -> Any:
    """``continuity`` (one chain, in order) or ``storyboard`` (keyframed clips at once)."""
    from prefect_hailuo.flows.continuity import multi_clip_continuity
    from prefect_hailuo.flows.storyboard import storyboard

    options = _film_options(args)
    common = {"options": options, "destination": _destination(args),
              "credentials_block": args.credentials_block or SIMULATOR}
    if args.command == "continuity":
        return multi_clip_continuity(storyboard=checked["path"], **common)
    return storyboard(storyboard=checked["path"], max_concurrency=args.max_concurrency,
                      **common)


def narrated_film(args: argparse.Namespace, checked: dict[str, Any]) -> Any:
    """``film``: the narrated film flow (keyframes, voice-over, music, mix, subtitles)."""
    from prefect_hailuo.flows.film import film as film_flow

    if args.audio_credentials_block:
        from hailuo.errors import ConfigurationError
        from prefect_hailuo.blocks.credentials import HailuoCredentials

        try:
            HailuoCredentials.load(args.audio_credentials_block)
        except ValueError:
            raise ConfigurationError(
                f"--audio-credentials-block: no HailuoCredentials block named "
                f"{args.audio_credentials_block!r} on the Prefect server (see `python -m "
                "prefect_hailuo.deployments.setup`)") from None
    return film_flow(storyboard=checked["path"], options=_film_options(args),
                     destination=_destination(args),
                     credentials_block=args.credentials_block or SIMULATOR,
                     audio_credentials_block=args.audio_credentials_block,
                     max_concurrency=args.max_concurrency, loudness_lufs=args.loudness)


def _film_options(args: argparse.Namespace) -> Any:
    from prefect_hailuo.flows.models import GenerationOptions

    given = {"model": args.model, "duration": args.duration, "resolution": args.resolution,
             "ratio": getattr(args, "ratio", None), "max_cost_usd": args.max_cost,
             "timeout_seconds": args.timeout}
    return GenerationOptions(provider=args.provider or "apimart",
                             **{k: v for k, v in given.items() if v is not None})


def _print_film(doc: dict[str, Any]) -> None:
    print(f"film      {doc['video_path']}  ({doc['width']}x{doc['height']}, "
          f"{doc['duration']:.1f} s, {len(doc['clips'])} clips, {doc['stitch_method']})")
    if doc.get("srt_path"):  # a narrated film
        print(f"subtitles {doc['srt_path']}, {doc['vtt_path']} ({doc['subtitle_cues']} cues, "
              "also a track in the MP4)")
        sound = (f"{doc['loudness_lufs']} LUFS, true peak {doc['true_peak_dbtp']} dBTP"
                 if doc.get("loudness_lufs") is not None else "silent")
        print(f"sound     {sound}, music {doc['music_source']}")
    elif doc.get("has_audio"):  # H3 clips bring their own sound, kept in sync
        print(f"sound     {doc.get('audio_duration') or 0:.2f} s, the clips' own "
              f"({doc.get('audio_method')}){', ' + doc['ratio'] if doc.get('ratio') else ''}")
    print(f"manifest  {doc['manifest_path']}")
    print(f"poster    {doc['poster_path']}")
    if doc.get("s3_uri"):
        print(f"s3        {doc['s3_uri']}")
    paid = "simulated: nothing paid" if doc["simulated"] else "estimate"
    print(f"cost      ${doc['total_cost_usd']:.2f} ({paid})")


def _print_clip(clip: dict[str, Any]) -> None:
    print(f"video     {clip['local_path']}  ({clip['width']}x{clip['height']}, "
          f"{clip['duration']:.1f} s, sha256 {clip['sha256'][:12]})")
    print(f"manifest  {clip['manifest_path']}")
    if clip.get("s3_uri"):
        print(f"s3        {clip['s3_uri']}")
        print(f"          {clip['manifest_uri']}")
    if clip.get("ratio") or clip.get("has_audio"):  # H3: ratio and its own sound
        sound = "with sound (native stereo)" if clip.get("has_audio") else "silent"
        print(f"h3        {clip.get('ratio') or '-'}, {sound}")
    paid = "simulated: nothing paid" if clip["simulated"] else "estimate"
    print(f"cost      ${clip['cost_usd']:.2f} on {clip['provider']} ({paid})")
    print(f"task      {clip['task_id']}")


def _api_url() -> str | None:
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value()


def check_blocks(args: argparse.Namespace) -> None:
    """Named blocks must exist on the server: a typo is bad input (exit 2), found before
    the flow starts rather than as a failed run."""
    from hailuo.errors import ConfigurationError

    wanted = []
    if args.credentials_block:
        from prefect_hailuo.blocks.credentials import HailuoCredentials

        wanted.append((HailuoCredentials, args.credentials_block, "--credentials-block"))
    if args.s3_bucket_block:
        from prefect_aws import S3Bucket

        wanted.append((S3Bucket, args.s3_bucket_block, "--s3-bucket-block"))
    for block_type, name, option in wanted:
        try:
            block_type.load(name)
        except ValueError:
            raise ConfigurationError(
                f"{option}: no {block_type.__name__} block named {name!r} on the Prefect "
                "server (see `python -m prefect_hailuo.deployments.setup`)") from None


RUNNERS: dict[str, Callable[[argparse.Namespace, Any], Any]] = {
    "generate": generate, "continuity": film, "storyboard": film, "film": narrated_film}


def run(args: argparse.Namespace, checked: Any, *, fail: Callable[[BaseException], int]
        ) -> int:
    """Run the command's flow with a progress display; map failures to exit codes."""
    mode = choose_mode(sys.stderr, json_output=args.json, quiet=args.quiet)
    display = ProgressDisplay(sys.stderr, mode, label=args.command)
    subscription = events.subscribe(RunProgress(display))
    try:
        quiet_prefect_console(args.verbose)
        if not _api_url():
            display.note("hailuo: no PREFECT_API_URL: starting a temporary local Prefect "
                         "server (~15 s); point PREFECT_API_URL at yours to skip this")
        check_blocks(args)
        with display:
            if not args.credentials_block:
                display.note("hailuo: no credentials block: using the embedded simulator "
                             "(nothing is paid)")
            if isinstance(checked, dict) and "clips" in checked:
                display.clips(checked["clips"])
            display.stage("submitting")
            result = RUNNERS[args.command](args, checked)
    except BaseException as exc:  # noqa: BLE001 - every failure becomes an exit code
        if isinstance(exc, SystemExit):
            raise
        return fail(exc)
    finally:
        subscription.close()
    doc = result.model_dump(mode="json")
    if args.json:
        print(json.dumps({"ok": True, "command": args.command, "result": doc}))
    elif args.command == "generate":
        _print_clip(doc)
    else:
        _print_film(doc)
    return 0
