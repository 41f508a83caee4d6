"""The ``hailuo`` command.

``generate``, ``continuity``, ``storyboard`` and ``film`` run the Prefect flows, so a
command-line run is cached, resumable and visible in the Prefect UI like any other run.
``estimate`` (a request or a whole storyboard), ``prompt`` and ``sim`` need neither
Prefect nor the network.

Layering: this module imports no Prefect. The flow-backed commands live in
``flows/cli.py`` and are imported inside ``main`` only when one of them is asked for: the
one place where the ``hailuo`` package reaches up to ``flows``, and only lazily, so
``import hailuo.cli`` (and ``hailuo estimate``) stay fast and Prefect-free.

Every input is checked here before Prefect is even imported: bad input costs nothing and
never reaches the provider.

Exit codes (also in the README, "CLI"):

====  ======================================================================================
0     success
1     anything else (Prefect or S3 unreachable, a bug): the message says what
2     bad input: one line on stderr naming the problem; nothing was sent
3     refused by the provider: content rejected (1026/1027) or the API rejected the request
4     the provider accepted the task and then it failed (after the allowed resubmits)
5     timed out waiting; the task id is printed and re-running the same command resumes it
6     key or account problem: authentication failed, or the balance cannot pay
7     provider unavailable, rate limited or the download kept failing after retries
8     ambiguous submit: the provider may have accepted it; check before submitting again
130   interrupted (Ctrl-C)
====  ======================================================================================
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from hailuo import errors, pricing
from hailuo.capabilities import Provider
from hailuo.errors import InvalidRequestError
from hailuo.models import DEFAULT_MODEL, VideoRequest
from hailuo.prompts import PromptElements, lint_prompt, normalise_prompt
from prefect_hailuo.defaults import CREDENTIALS_ENV

EXIT_OK = 0
EXIT_OTHER = 1
EXIT_BAD_INPUT = 2
EXIT_REFUSED = 3
EXIT_FAILED = 4
EXIT_TIMEOUT = 5
EXIT_ACCOUNT = 6
EXIT_UNAVAILABLE = 7
EXIT_AMBIGUOUS = 8
EXIT_INTERRUPTED = 130

PROVIDERS = tuple(p.value for p in Provider)
FLOW_COMMANDS = frozenset({"generate", "continuity", "storyboard", "film"})


class BadInput(ValueError):
    """Input the command refuses before doing anything (exit 2)."""


def exit_code_for(exc: BaseException) -> int:
    """The documented exit code for an exception raised by a command.

    Clips of a batch or film that failed (``ClipsFailedError``) exit with the code of the
    representative clip's own error (see ``hailuo.errors._PRECEDENCE``): a timed-out clip
    gives 5, and re-running resumes it."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, errors.ClipsFailedError):
        return exit_code_for(exc.representative.error)
    if isinstance(exc, errors.InvalidRequestError):
        # raised locally (no HTTP status) nothing was sent; from the API it is a refusal
        return EXIT_REFUSED if exc.http_status is not None else EXIT_BAD_INPUT
    table: list[tuple[type[BaseException], int]] = [
        (BadInput, EXIT_BAD_INPUT),
        (errors.ConfigurationError, EXIT_BAD_INPUT),
        (errors.ContentRejectedError, EXIT_REFUSED),
        (errors.RequestRefusedError, EXIT_REFUSED),
        (errors.ResultMissingError, EXIT_UNAVAILABLE),
        (errors.GenerationFailedError, EXIT_FAILED),
        (errors.TimedOutError, EXIT_TIMEOUT),
        (errors.AuthenticationError, EXIT_ACCOUNT),
        (errors.InsufficientBalanceError, EXIT_ACCOUNT),
        (errors.AmbiguousSubmitError, EXIT_AMBIGUOUS),
        (errors.RateLimitedError, EXIT_UNAVAILABLE),
        (errors.ProviderUnavailableError, EXIT_UNAVAILABLE),
        (errors.LinkExpiredError, EXIT_UNAVAILABLE),
        (errors.DownloadError, EXIT_UNAVAILABLE),
        (errors.InvalidVideoError, EXIT_UNAVAILABLE),
    ]
    for cls, code in table:
        if isinstance(exc, cls):
            return code
    return EXIT_OTHER


def error_line(exc: BaseException) -> str:
    """One line for stderr: what went wrong, and for a timeout how to resume."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    # many clips failed: the hint of the clip whose error decides the exit code
    decisive = exc.representative.error if isinstance(exc, errors.ClipsFailedError) else exc
    if isinstance(decisive, errors.TimedOutError):
        text += "; run the same command again to resume waiting for it"
    if isinstance(decisive, errors.AmbiguousSubmitError):
        text += "; check the provider's console before submitting again"
    return f"hailuo: error: {text}"


# -- input checks (no Prefect, no network) ---------------------------------------------
def _providers_to_check(args: argparse.Namespace) -> list[str]:
    """With a credentials block and no --provider, the block decides: accept a request that
    is valid on either provider (the flow re-checks against the block's one before sending)."""
    if args.provider:
        return [args.provider]
    return list(PROVIDERS) if getattr(args, "credentials_block", None) else ["apimart"]


def check_request(request: VideoRequest, providers: list[str]) -> tuple[str, VideoRequest]:
    """Validate against the capability table of the first provider that accepts it;
    returns that provider and the request with its defaults filled in."""
    first_error: InvalidRequestError | None = None
    for provider in providers:
        try:
            return provider, request.validate_for(provider)
        except InvalidRequestError as exc:
            first_error = first_error or exc
    assert first_error is not None
    raise first_error


def check_image(value: str | None, field: str) -> str | None:
    """Local images are checked (exists, format, size, aspect) and made absolute; URLs and
    s3:// URIs are left to the flow (S3 needs a bucket block)."""
    if not value:
        return None
    if value.startswith("s3://"):
        return value
    from hailuo.images import prepare_image

    prepare_image(value, field=field)
    if value.lower().startswith(("http://", "https://", "data:")):
        return value
    return str(Path(value).expanduser().resolve())


def generate_request(args: argparse.Namespace) -> VideoRequest:
    """The request ``generate`` will send, checked; raises InvalidRequestError/BadInput."""
    from hailuo.capabilities import is_h3

    h3 = is_h3(args.model)
    references = {"reference_images": args.reference_image,
                  "reference_videos": args.reference_video,
                  "reference_audios": args.reference_audio}
    if args.last_frame and not args.image and not h3:  # H3 takes a last frame alone
        raise BadInput("--last-frame needs --image (the first frame)")
    if args.s3_prefix and not args.s3_bucket_block:
        raise BadInput("--s3-prefix needs --s3-bucket-block")
    s3_inputs = [v for v in (args.image, args.last_frame, *args.reference_image,
                             *args.reference_video, *args.reference_audio)
                 if v and v.startswith("s3://")]  # fetched by the flow with the bucket block
    if s3_inputs and not args.s3_bucket_block:
        raise BadInput(f"{s3_inputs[0]} is an S3 URI: give --s3-bucket-block for credentials")
    if not args.prompt and not args.image and not h3:
        raise BadInput("give a prompt (text-to-video) or --image (image-to-video)")
    if args.timeout is not None and args.timeout <= 0:
        raise BadInput(f"--timeout must be positive, got {args.timeout}")
    if args.max_cost is not None and args.max_cost < 0:
        raise BadInput(f"--max-cost must not be negative, got {args.max_cost}")
    if args.take < 1:
        raise BadInput(f"--take must be at least 1, got {args.take}")
    if h3:  # H3 media rules (hailuo.h3media): local files checked and made absolute
        from hailuo.h3media import check_media, is_remote

        def local(value: str | None, field: str, index: int | None = None) -> str | None:
            if not value or value.startswith("s3://") or is_remote(value):
                return value
            check_media(value, field=field, index=index)
            if value.lower().startswith("data:"):
                return value
            return str(Path(value).expanduser().resolve())

        image = local(args.image, "first_frame_image")
        last = local(args.last_frame, "last_frame_image")
        refs = {field: tuple(local(v, field, i) or v for i, v in enumerate(values))
                for field, values in references.items()}
    else:
        image = check_image(args.image, "first_frame_image")
        last = check_image(args.last_frame, "last_frame_image")
        refs = {field: tuple(values) for field, values in references.items()}
    request = VideoRequest(
        model=args.model, prompt=args.prompt, duration=args.duration,
        resolution=args.resolution, first_frame_image=image, last_frame_image=last,
        prompt_optimizer=not args.no_prompt_optimizer, fast_pretreatment=args.fast,
        watermark=args.watermark, ratio=args.ratio, **refs)
    provider, validated = check_request(request, _providers_to_check(args))
    pricing.check_budget([validated], provider, args.max_cost, limit_name="--max-cost")
    return request


def film_requests(path: str, *, chain_all: bool, model: str | None = None,
                  resolution: str | None = None, duration: int | None = None,
                  ratio: str | None = None) -> tuple[Any, list[VideoRequest]]:
    """Load a storyboard file and the request of every clip, with the precedence the film
    flows use (segment, then storyboard, then command line). Local images are checked."""
    from hailuo.storyboard import load_storyboard

    if not Path(path).is_file():
        raise BadInput(f"storyboard file not found: {path!r}")
    try:
        board = load_storyboard(path)
    except ValueError as exc:  # yaml/json errors are ValueErrors too, pydantic's as well
        raise BadInput(f"{Path(path).name}: {_first_error(exc)}") from None
    settings = board.film_settings(model=model, resolution=resolution, duration=duration,
                                   ratio=ratio)
    requests = []
    for shot in board.shots(chain_all=chain_all):
        first = None if shot.chained else check_image(shot.first_frame_image,
                                                      f"segment {shot.index} first frame")
        check_image(shot.last_frame_image, f"segment {shot.index} keyframe")
        requests.append(shot.request(**settings, first_frame_image=first))
    return board, requests


def film_request_check(args: argparse.Namespace) -> dict[str, Any]:
    """``continuity`` / ``storyboard``: every clip valid and the whole film within
    ``--max-cost`` before anything is sent."""
    if args.timeout is not None and args.timeout <= 0:
        raise BadInput(f"--timeout must be positive, got {args.timeout}")
    board, requests = film_requests(args.file, chain_all=args.command == "continuity",
                                    model=args.model, resolution=args.resolution,
                                    duration=args.duration, ratio=args.ratio)
    provider, validated = _film_provider(requests, _providers_to_check(args))
    pricing.check_budget(validated, provider, args.max_cost, limit_name="--max-cost")
    return {"path": str(Path(args.file).resolve()), "clips": len(requests),
            "title": board.title}


def narrated_film_check(args: argparse.Namespace) -> dict[str, Any]:
    """``film``: the storyboard loads and its keys are valid, its local files exist (images
    checked, the music file readable audio), every paid request (clips, keyframe images,
    narration, music) is valid and the whole film within ``--max-cost`` - before Prefect
    is imported."""
    from hailuo.filmplan import check_film_cost, plan_film
    from hailuo.storyboard import load_storyboard

    if args.timeout is not None and args.timeout <= 0:
        raise BadInput(f"--timeout must be positive, got {args.timeout}")
    if args.max_cost is not None and args.max_cost < 0:
        raise BadInput(f"--max-cost must not be negative, got {args.max_cost}")
    if args.max_concurrency < 1:
        raise BadInput(f"--max-concurrency must be at least 1, got {args.max_concurrency}")
    if not -40 <= args.loudness <= -5:
        raise BadInput(f"--loudness must be between -40 and -5 LUFS, got {args.loudness}")
    if not Path(args.file).is_file():
        raise BadInput(f"storyboard file not found: {args.file!r}")
    try:
        board = load_storyboard(args.file)
    except ValueError as exc:  # yaml/json errors are ValueErrors too, pydantic's as well
        raise BadInput(f"{Path(args.file).name}: {_first_error(exc)}") from None
    check_image(board.first_image, "first_image")
    for number, segment in enumerate(board.segments, start=1):
        check_image(segment.keyframe, f"segment {number} keyframe")
    _check_music_file(board.music.file if board.music is not None else board.audio)
    audio_named = args.audio_credentials_block or args.credentials_block
    image_providers = ["minimax", "apimart"] if audio_named else ["minimax"]
    first_error: ValueError | None = None
    for video_provider in _providers_to_check(args):
        for image_provider in image_providers:
            try:
                plan = plan_film(board, video_provider, image_provider, model=args.model,
                                 resolution=args.resolution, duration=args.duration)
            except InvalidRequestError as exc:
                first_error = first_error or exc
                continue
            check_film_cost(plan.costs, args.max_cost, "nothing was sent",
                            limit_name="--max-cost")
            return {"path": str(Path(args.file).resolve()), "clips": len(board.segments),
                    "title": board.title, "usd": str(plan.total_usd)}
    assert first_error is not None
    raise first_error


def _check_music_file(value: str | None) -> None:
    """A film's own music (``music: {file: ...}``, or ``audio``) is a local audio file."""
    if not value:
        return
    if value.lower().startswith(("http://", "https://", "s3://")):
        raise BadInput(f"music file {value!r}: give a local path (the mix reads it)")
    path = Path(value).expanduser()
    if not path.is_file():
        raise BadInput(f"music file not found: {value!r}")
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise BadInput(f"music file {value!r} has no audio stream")
    except (OSError, av.FFmpegError) as exc:
        raise BadInput(f"music file {value!r} is not a readable audio file: {exc}") from None


def _film_provider(requests: list[VideoRequest], providers: list[str]
                   ) -> tuple[str, list[VideoRequest]]:
    """The first provider that accepts every clip (a film runs on one credentials block),
    with the validated requests; otherwise the first clip's error, naming its segment."""
    first_error: BadInput | None = None
    for provider in providers:
        try:
            return provider, [_validated_segment(i, r, provider)
                              for i, r in enumerate(requests, start=1)]
        except BadInput as exc:
            first_error = first_error or exc
    assert first_error is not None
    raise first_error


def _validated_segment(index: int, request: VideoRequest, provider: str) -> VideoRequest:
    try:
        return request.validate_for(provider)
    except InvalidRequestError as exc:
        raise BadInput(f"segment {index}: {exc}") from None


# -- commands without Prefect ----------------------------------------------------------
def _estimate(args: argparse.Namespace) -> int:
    from hailuo.capabilities import is_h3

    if args.provider is None:  # H3 exists on MiniMax's own API only
        args.provider = "minimax" if is_h3(args.model) else "apimart"

    def _estimate_ratio(args: argparse.Namespace) -> str | None:
        """H3 text-to-video needs a ratio; any gives the same price."""
        media = (args.first_frame_image, args.last_frame_image, *args.reference_image,
                 *args.reference_video, *args.reference_audio)
        return "16:9" if is_h3(args.model) and not any(media) else None
    if args.storyboard:
        return _estimate_film(args)
    request = VideoRequest(model=args.model, prompt=args.prompt or "estimate",
                           duration=args.duration, resolution=args.resolution,
                           first_frame_image=args.first_frame_image,
                           last_frame_image=args.last_frame_image,
                           ratio=args.ratio or _estimate_ratio(args),
                           reference_images=tuple(args.reference_image),
                           reference_videos=tuple(args.reference_video),
                           reference_audios=tuple(args.reference_audio))
    quote = pricing.quote(request, args.provider)
    validated = request.validate_for(args.provider)
    out = {"provider": args.provider, "model": validated.model,
           "resolution": request.output_resolution(args.provider),
           "duration": request.output_duration(args.provider), "usd": str(quote.usd),
           "basis": quote.basis}
    if validated.ratio:
        out["ratio"] = validated.ratio
    if args.json:
        print(json.dumps(out))
    else:
        print(f"${quote.usd} for {out['model']} {out['resolution']} {out['duration']} s on "
              f"{args.provider} ({quote.basis})")
    return EXIT_OK


def _estimate_film(args: argparse.Namespace) -> int:
    board, requests = film_requests(args.storyboard, chain_all=args.mode == "continuity",
                                    model=args.model, resolution=args.resolution,
                                    duration=args.duration, ratio=args.ratio)
    clips = []
    for index, request in enumerate(requests, start=1):
        try:
            quote = pricing.quote(request, args.provider)
        except InvalidRequestError as exc:
            raise BadInput(f"segment {index}: {exc}") from None
        clips.append({"clip": index, "resolution": request.output_resolution(args.provider),
                      "duration": request.output_duration(args.provider),
                      "usd": str(quote.usd)})
    total = sum((Decimal(c["usd"]) for c in clips), Decimal("0"))
    if args.json:
        print(json.dumps({"provider": args.provider, "title": board.title, "mode": args.mode,
                          "clips": clips, "usd": str(total)}))
    else:
        for clip in clips:
            print(f"clip {clip['clip']:2d}  {clip['resolution']} {clip['duration']:2d} s  "
                  f"${clip['usd']}")
        print(f"${total} for {len(clips)} clips of {board.title!r} on {args.provider}")
    return EXIT_OK


_ELEMENTS = ("camera", "shot", "subject", "action", "scene", "lighting", "style")


def _prompt(args: argparse.Namespace) -> int:
    elements = {name: getattr(args, name) for name in _ELEMENTS if getattr(args, name)}
    if args.text and elements:
        raise BadInput("give either the prompt text or elements (--subject ...), not both")
    if elements:
        if "subject" not in elements:
            raise BadInput("--subject is required when building from elements")
        if "camera" in elements:
            elements["camera"] = [part.strip() for part in elements["camera"].split(";")]
        try:
            prompt = PromptElements(**elements).build(style_suffix=args.style_suffix)
        except ValueError as exc:  # pydantic wraps the element's InvalidRequestError
            raise BadInput(_first_error(exc)) from None
    elif args.text:
        prompt = normalise_prompt(args.text)
    else:
        raise BadInput("give the prompt text or --subject (and other elements)")
    warnings = lint_prompt(prompt, image_to_video=args.image_to_video)
    if args.json:
        print(json.dumps({"prompt": prompt, "characters": len(prompt), "warnings": warnings}))
    else:
        print(prompt)
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr)
    return EXIT_OK


def _first_error(exc: ValueError) -> str:
    errors_ = getattr(exc, "errors", None)
    if callable(errors_):
        first = errors_()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        message = str(first.get("msg", exc)).removeprefix("Value error, ")
        return f"{where}: {message}" if where and not message.startswith(where) else message
    return str(exc)


# -- the parser ------------------------------------------------------------------------
def _add_common_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--credentials-block", default=os.environ.get(CREDENTIALS_ENV) or None,
                   help="saved HailuoCredentials block (default $HAILUO_CREDENTIALS_BLOCK); "
                   "without one the embedded simulator runs and nothing is paid")
    p.add_argument("--provider", choices=PROVIDERS, default=None,
                   help="dialect of the embedded simulator, or the credentials block's "
                   "provider for checking input early")
    p.add_argument("--out", default="out", metavar="DIR",
                   help="local folder for videos, thumbnails, manifests (default ./out)")
    p.add_argument("--s3-bucket-block", default=None, metavar="NAME",
                   help="prefect-aws S3Bucket block: also upload there")
    p.add_argument("--s3-prefix", default=None, help="key prefix in the bucket (default hailuo)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON document on stdout, no progress display")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.add_argument("--verbose", action="store_true", help="show Prefect's own log lines")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hailuo", description="MiniMax Hailuo video generation through Prefect flows.",
        epilog="Exit codes: 0 ok, 1 other error, 2 bad input (nothing sent), 3 refused by "
        "the provider, 4 generation failed, 5 timed out (re-run resumes), 6 key/account, "
        "7 provider unavailable, 8 ambiguous submit, 130 interrupted.")
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="text or image to video (runs the Prefect flow)")
    gen.add_argument("prompt", nargs="?", help="the prompt; camera commands in brackets")
    gen.add_argument("--image", metavar="PATH|URL|s3://",
                     help="first frame: image-to-video")
    gen.add_argument("--last-frame", metavar="PATH|URL|s3://",
                     help="last frame: a first+last frame transition (with --image)")
    gen.add_argument("--model", default=DEFAULT_MODEL,
                     help="e.g. MiniMax-Hailuo-02, MiniMax-Hailuo-2.3, MiniMax-H3, "
                     "MiniMax-H3-Max (H3: with --provider minimax)")
    gen.add_argument("--duration", type=int, help="seconds (default: the model's)")
    gen.add_argument("--resolution", help="512p, 768p or 1080p (default 768p); H3: 768p or "
                     "2k; H3-Max: 480p or 768p")
    gen.add_argument("--ratio", help="H3: 21:9, 16:9, 4:3, 1:1, 3:4 or 9:16 (text-to-video "
                     "needs one), or adaptive")
    gen.add_argument("--reference-image", action="append", default=[], metavar="PATH|URL",
                     help="H3: a reference image (repeatable, up to 9)")
    gen.add_argument("--reference-video", action="append", default=[], metavar="PATH|URL",
                     help="H3: a reference video (repeatable, up to 3, 15 s in total)")
    gen.add_argument("--reference-audio", action="append", default=[], metavar="PATH|URL",
                     help="H3: a reference audio (repeatable, up to 3; needs a reference "
                     "image or video)")
    gen.add_argument("--take", type=int, default=1,
                     help="a new number makes a new, separately paid take (default 1)")
    gen.add_argument("--max-cost", type=float, metavar="USD",
                     help="refuse before submitting if the estimate is higher")
    gen.add_argument("--timeout", type=float, metavar="SECONDS",
                     help="total wait for the clip (default 1800)")
    gen.add_argument("--no-prompt-optimizer", action="store_true")
    gen.add_argument("--fast", action="store_true", help="fast pre-treatment")
    gen.add_argument("--watermark", action="store_true")
    _add_common_run_options(gen)

    for name, text in (("continuity", "a long video as a chain, each clip starting on the "
                        "last frame of the one before (runs the Prefect flow)"),
                       ("storyboard", "a film from keyframes, clips generated in parallel "
                        "(runs the Prefect flow)")):
        film = sub.add_parser(name, help=text)
        film.add_argument("file", help="storyboard file (.yaml or .json)")
        film.add_argument("--model", default=None, help="default model (the file's wins)")
        film.add_argument("--duration", type=int, help="default seconds per clip")
        film.add_argument("--resolution", help="default resolution")
        film.add_argument("--ratio", help="H3: the ratio of clips made from text (the first "
                          "clip without a first image), e.g. 16:9; the file's wins")
        film.add_argument("--max-cost", type=float, metavar="USD",
                          help="refuse before submitting if the film's estimate is higher")
        film.add_argument("--timeout", type=float, metavar="SECONDS",
                          help="total wait per clip (default 1800)")
        if name == "storyboard":
            film.add_argument("--max-concurrency", type=int, default=8,
                              help="clips in flight at once (default 8)")
        _add_common_run_options(film)

    nar = sub.add_parser("film", help="a narrated film: generated keyframes, voice-over, "
                         "music, one mixed soundtrack and subtitles (runs the Prefect flow)")
    nar.add_argument("file", help="storyboard file (.yaml or .json) with narration, voice, "
                     "music, first_image_prompt / keyframe_prompt")
    nar.add_argument("--audio-credentials-block", default=None, metavar="NAME",
                     help="HailuoCredentials block (MiniMax) for speech, music and images; "
                     "default: --credentials-block")
    nar.add_argument("--model", default=None, help="default video model (the file's wins)")
    nar.add_argument("--duration", type=int, help="default seconds per clip")
    nar.add_argument("--resolution", help="default resolution")
    nar.add_argument("--max-cost", type=float, metavar="USD",
                     help="refuse before paying anything if the whole film's estimate "
                     "(images + speech + music + video) is higher")
    nar.add_argument("--timeout", type=float, metavar="SECONDS",
                     help="total wait per clip (default 1800)")
    nar.add_argument("--max-concurrency", type=int, default=8,
                     help="clips in flight at once (default 8)")
    nar.add_argument("--loudness", type=float, default=-16.0, metavar="LUFS",
                     help="integrated loudness of the mix (default -16)")
    _add_common_run_options(nar)

    sim = sub.add_parser("sim", help="run the local simulator (see `hailuo sim --help`)",
                         add_help=False)
    sim.add_argument("rest", nargs=argparse.REMAINDER)

    est = sub.add_parser("estimate", help="cost of a request, no network")
    est.add_argument("--provider", choices=PROVIDERS, default=None,
                     help="default: minimax for H3 models, else apimart")
    est.add_argument("--model", default=DEFAULT_MODEL)
    est.add_argument("--prompt")
    est.add_argument("--duration", type=int)
    est.add_argument("--resolution")
    est.add_argument("--first-frame-image")
    est.add_argument("--last-frame-image")
    est.add_argument("--ratio")
    est.add_argument("--reference-image", action="append", default=[], metavar="PATH|URL")
    est.add_argument("--reference-video", action="append", default=[], metavar="PATH|URL",
                     help="H3: reference video seconds are billed (URLs count as 15 s)")
    est.add_argument("--reference-audio", action="append", default=[], metavar="PATH|URL")
    est.add_argument("--storyboard", metavar="FILE",
                     help="price every clip of a storyboard file instead")
    est.add_argument("--mode", choices=["continuity", "storyboard"], default="storyboard",
                     help="how the storyboard is shot (default storyboard)")
    est.add_argument("--json", action="store_true")
    est.set_defaults(func=_estimate)

    prm = sub.add_parser("prompt", help="build and lint a prompt (camera commands checked)")
    prm.add_argument("text", nargs="?", help="a whole prompt to normalise and lint")
    prm.add_argument("--camera", help="camera commands, brackets separated by ';', e.g. "
                     "'Pan left, Pedestal up; Zoom in'")
    for name in _ELEMENTS[1:]:
        prm.add_argument(f"--{name}", help=f"the {name} element")
    prm.add_argument("--style-suffix", help="a shared look appended to every clip")
    prm.add_argument("--image-to-video", action="store_true")
    prm.add_argument("--json", action="store_true")
    prm.set_defaults(func=_prompt)

    from prefect_hailuo import scaffold  # prefect.yaml and examples from the package data

    ini = sub.add_parser("init", help="write prefect.yaml and examples/ into a folder, "
                         "ready for `prefect deploy` (no clone needed)")
    scaffold.add_arguments(ini)
    ini.set_defaults(func=scaffold.command)
    return parser


def _fail(exc: BaseException, json_output: bool, code: int | None = None) -> int:
    """Report a failure as one stderr line (and a JSON document with --json)."""
    code = exit_code_for(exc) if code is None else code
    print(error_line(exc), file=sys.stderr)
    if json_output:
        doc: dict[str, Any] = {"ok": False, "exit_code": code, "error": type(exc).__name__,
                               "message": " ".join(str(exc).split())}
        task_id = getattr(exc, "task_id", None)  # a ClipsFailedError: the representative's
        if task_id:
            doc["task_id"] = task_id
        if isinstance(exc, errors.ClipsFailedError):
            doc["clips"] = [{"clip": f.number, "name": f.name,
                             "error": type(f.error).__name__,
                             "message": " ".join(str(f.error).split()),
                             "task_id": f.task_id, "exit_code": exit_code_for(f.error)}
                            for f in exc.failures]
            doc["kept"] = exc.kept
        print(json.dumps(doc))
    return code


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["sim"]:
        from hailuo.simulator.cli import main as sim_main

        return sim_main(argv[1:])
    args = build_parser().parse_args(argv)
    json_output = bool(getattr(args, "json", False))
    try:
        if args.command not in FLOW_COMMANDS:
            return args.func(args)
        checked = CHECKS[args.command](args)
    except KeyboardInterrupt as exc:
        return _fail(exc, json_output)
    except ValueError as exc:  # InvalidRequestError, BadInput, pydantic's ValidationError
        return _fail(exc, json_output, EXIT_BAD_INPUT)
    # The one upward reference: flow-backed commands, imported only when one is run.
    from prefect_hailuo.flows import cli as flow_cli

    return flow_cli.run(args, checked, fail=lambda exc: _fail(exc, json_output))


CHECKS = {"generate": generate_request, "continuity": film_request_check,
          "film": narrated_film_check,
          "storyboard": film_request_check}


if __name__ == "__main__":
    sys.exit(main())
