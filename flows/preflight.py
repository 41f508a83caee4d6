"""Preflight: everything that can fail after paying is checked before the first submit.

Every flow (text/image/first-last frame, batch, continuity and storyboard films) calls
``prepare_clips`` or ``prepare_film`` before anything is sent to the provider. In order:

1. credentials: the HailuoCredentials block is loaded and its API key resolved (a
   missing block, a missing Secret block or an empty key); the connection carries the
   key's account hash from here on (``blocks/credentials.py``);
2. the output folder: created and written to (a probe file, removed again); the submit
   lock manager: built from ``HAILUO_SUBMIT_LOCK_MANAGER`` and, for lock files, its folder
   written to (a lock that cannot be taken would stop the submit anyway, but later);
3. the S3 bucket block, when one is named: loaded, and its bucket reached (HeadBucket);
   an ``s3://`` input without a bucket block is refused here too;
4. the callback receiver, when callbacks are on: started (its port bound);
5. audio (a film's voice-over or music): fetched when on S3, then opened and checked to
   hold an audio stream;
6. inputs: s3:// images fetched, every image checked locally (exists, readable, a real
   JPEG/PNG/WebP within the provider's limits: ``hailuo.images.check_image``);
7. requests: validated against the model's capabilities, duplicates refused (below), the
   whole set priced against ``max_cost_usd``.

Why before, not where each thing is used: a missing bucket block used to be found by the
upload after the clip was paid for, and a storyboard's missing audio file by the stitch
after every clip was. Every failure here is a typed, non-retryable error
(``ConfigurationError``, ``InvalidImageError``, ``InvalidRequestError``,
``CostLimitExceededError``) and nothing has been paid when it is raised.

Duplicates: two clips of one batch (or two independent shots of one film) that are the
same request — differing only in their names — are refused, naming both. They would map
to one submit cache entry, so one paid task and one video would silently stand for both.
Refusing rather than quietly numbering them as distinct takes: a duplicate is far more
often a copy-paste slip than a wish to pay twice, takes assigned by list position would
change meaning when the list is reordered, and an explicit ``take: 2`` on one of them says
exactly what is wanted (a second, separately paid version).
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hailuo.capabilities import Provider, is_h3
from hailuo.errors import ConfigurationError, InvalidRequestError
from hailuo.fingerprint import IMAGE_FIELDS, request_fingerprint
from hailuo.images import check_image
from hailuo.models import VideoRequest
from hailuo.pricing import check_budget
from hailuo.storyboard import CHAINED_PLACEHOLDER, Shot
from prefect_hailuo.blocks.credentials import (
    HailuoConnection,
    HailuoCredentials,
    resolve_connection,
)
from prefect_hailuo.flows.models import ClipSpec, Destination, GenerationOptions
from prefect_hailuo.flows.pipeline import resolve_inputs
from prefect_hailuo.flows.shared_state import warn_if_not_shared
from prefect_hailuo.tasks.callbacks import shared_receiver
from prefect_hailuo.tasks.storage import fetch_input_image
from prefect_hailuo.tasks.submit_lock import FileLockManager, configured_lock_manager

__all__ = [
    "Ready", "check_audio", "check_bucket", "check_images", "check_output_dir",
    "check_submit_lock", "preflight", "prepare_clips", "prepare_film", "refuse_duplicates",
]


@dataclass(frozen=True)
class Ready:
    """What preflight hands back: the connection to submit on, and the audio as a local
    file (or URL) when the run has one."""

    connection: HailuoConnection
    audio: str | None = None


def check_output_dir(output_dir: str) -> Path:
    """Create the output folder and prove it writable (a probe file, removed again)."""
    path = Path(output_dir).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".hailuo-write-check-"):
            pass
    except OSError as exc:
        raise ConfigurationError(
            f"output folder {str(path)!r} cannot be created or written to: "
            f"{exc.strerror or exc}; choose another destination.output_dir",
            field="output_dir") from None
    return path


def check_submit_lock() -> None:
    """The lock manager named by the environment can be built, and lock files written."""
    try:
        manager = configured_lock_manager()
    except Exception as exc:  # noqa: BLE001 - an import error, a bad value: configuration
        raise ConfigurationError(f"submit lock: {exc}", field="HAILUO_SUBMIT_LOCK_MANAGER"
                                 ) from None
    if isinstance(manager, FileLockManager):
        try:
            manager.directory.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=manager.directory, prefix=".write-check-"):
                pass
        except OSError as exc:
            raise ConfigurationError(
                f"submit lock folder {str(manager.directory)!r} cannot be written to: "
                f"{exc.strerror or exc}; set HAILUO_SUBMIT_LOCK_DIR",
                field="HAILUO_SUBMIT_LOCK_DIR") from None


def check_bucket(block_name: str) -> None:
    """Load the prefect-aws S3Bucket block and reach its bucket (HeadBucket)."""
    from botocore.exceptions import BotoCoreError, ClientError
    from prefect_aws import S3Bucket

    try:
        block = S3Bucket.load(block_name)
    except ValueError:
        raise ConfigurationError(
            f"no S3Bucket block named {block_name!r} on the Prefect server: create it (a "
            "prefect-aws S3Bucket block) or leave destination.s3_bucket_block empty to keep "
            "files local", field="s3_bucket_block") from None
    bucket = block.bucket_name
    try:
        block.credentials.get_s3_client().head_bucket(Bucket=bucket)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = error.get("Code") or exc.response.get("ResponseMetadata", {}).get(
            "HTTPStatusCode")
        why = {"404": "it does not exist", "NoSuchBucket": "it does not exist",
               "403": "access is denied", "AccessDenied": "access is denied"}.get(
            str(code), f"{code}: {error.get('Message') or 'refused'}")
        raise ConfigurationError(
            f"S3 bucket {bucket!r} of block {block_name!r} cannot be used: {why}",
            field="s3_bucket_block") from None
    except BotoCoreError as exc:
        raise ConfigurationError(
            f"S3 bucket {bucket!r} of block {block_name!r} is not reachable: {exc}",
            field="s3_bucket_block") from None


def check_audio(audio: str) -> None:
    """The audio a film is muxed with: a local file FFmpeg opens, with an audio stream.

    An http(s) URL is refused: the film's manifest hashes the audio file and the muxer
    reads it after every clip is paid for, so it must be a file here (a local path, or
    an s3:// URI, fetched first)."""
    import av

    if audio[:8].lower().startswith(("http://", "https://")):
        raise ConfigurationError(f"audio {audio!r}: give a local path or an s3:// URI, not "
                                 "an http(s) URL", field="audio")
    path = Path(audio).expanduser()
    if not path.is_file():
        raise ConfigurationError(f"audio file not found: {audio!r}", field="audio")
    try:
        with av.open(str(path), "r") as container:
            if not container.streams.audio:
                raise ConfigurationError(f"audio {audio!r} has no audio stream",
                                         field="audio")
    except ConfigurationError:
        raise
    except (OSError, av.FFmpegError) as exc:
        raise ConfigurationError(f"audio {audio!r} is not a readable audio file: {exc}",
                                 field="audio") from None


def check_images(values: dict[str, str | None]) -> None:
    """Every local image checked as the client will (http(s) URLs pass unfetched)."""
    for field, value in values.items():
        if value and value != CHAINED_PLACEHOLDER:
            check_image(value, field=field)


def refuse_duplicates(entries: list[tuple[str, VideoRequest, int]], provider: Provider | str,
                      *, what: str = "clips", hint: str | None = None) -> None:
    """Refuse two entries (name, validated request, take) that are the same paid request."""
    groups: dict[str, list[str]] = defaultdict(list)
    for name, request, take in entries:
        groups[request_fingerprint(request, provider, take)].append(name)
    same = [names for names in groups.values() if len(names) > 1]
    if not same:
        return
    listed = "; ".join(" and ".join(repr(n) for n in names) for names in same)
    raise InvalidRequestError(
        f"{what} {listed} are the same request (they differ only in their names): they "
        "would share one paid task and one video. "
        + (hint or "For a second, separately paid version give one of them a different "
           "take (e.g. take: 2); otherwise remove the duplicate.") + " Nothing was submitted.",
        field=what)


def _s3_without_bucket(values: list[str | None], destination: Destination) -> None:
    if destination.s3_bucket_block:
        return
    for value in values:
        if value and value.startswith("s3://"):
            raise ConfigurationError(
                f"{value} is an S3 URI: name the S3Bucket block whose credentials read it "
                "in destination.s3_bucket_block", field="s3_bucket_block")


def preflight(credentials_block: str | HailuoCredentials | None, options: GenerationOptions,
              destination: Destination, *, audio: str | None = None) -> Ready:
    """Steps 1-5 of the module docstring: what every flow shares."""
    connection = resolve_connection(credentials_block, options.provider)
    check_output_dir(destination.output_dir)
    check_submit_lock()
    warn_if_not_shared()  # several workers, results or lock on one machine: say so
    if destination.s3_bucket_block:
        check_bucket(destination.s3_bucket_block)
    if options.callbacks:
        shared_receiver(options.callback_public_url)
    local_audio = None
    if audio:
        _s3_without_bucket([audio], destination)
        local_audio = (fetch_input_image(audio, destination.s3_bucket_block)
                       if audio.startswith("s3://") else audio)
        check_audio(local_audio)
    return Ready(connection=connection, audio=local_audio)


def _images(spec: ClipSpec) -> dict[str, Any]:
    return {name: getattr(spec, name) for name in IMAGE_FIELDS}


def _inputs(spec: ClipSpec) -> list[str | None]:
    """Every input file of a clip: its images and (H3) reference media."""
    return [*_images(spec).values(), *(spec.reference_images or ()),
            *(spec.reference_videos or ()), *(spec.reference_audios or ())]


def check_h3_media(spec: ClipSpec) -> None:
    """An H3 clip's frames and references checked as the v2 client will (format, size,
    sides, aspect, seconds; URLs pass unfetched); the request's own rules (counts, roles)
    come with its validation."""
    from hailuo.h3media import check_media, check_total_seconds

    for field in ("first_frame_image", "last_frame_image"):
        value = getattr(spec, field)
        if value and value != CHAINED_PLACEHOLDER:
            check_media(value, field=field)
    for field in ("reference_images", "reference_videos", "reference_audios"):
        items = [check_media(v, field=field, index=i)
                 for i, v in enumerate(getattr(spec, field) or ())]
        if field != "reference_images":
            check_total_seconds(items, field)


def prepare_clips(specs: list[ClipSpec], options: GenerationOptions, destination: Destination,
                  credentials_block: str | HailuoCredentials | None,
                  ) -> tuple[HailuoConnection, list[ClipSpec]]:
    """Preflight for independent clips (single-clip flows, batches): returns the
    connection and the specs with s3:// inputs fetched to local files."""
    _s3_without_bucket([v for s in specs for v in _inputs(s)], destination)
    ready = preflight(credentials_block, options, destination)
    provider = ready.connection.provider
    specs = [resolve_inputs(s, destination) for s in specs]
    for spec in specs:
        if is_h3(spec.model or options.model):
            check_h3_media(spec)
        else:
            check_images(_images(spec))
    requests = [s.to_request(options).validate_for(provider) for s in specs]
    refuse_duplicates([(s.name or f"clip {i + 1}", r, s.take or options.take)
                       for i, (s, r) in enumerate(zip(specs, requests, strict=True))], provider)
    check_budget(requests, provider, options.max_cost_usd)
    return ready.connection, specs


def prepare_film(shots: list[Shot], audio: str | None, options: GenerationOptions,
                 destination: Destination, credentials_block: str | HailuoCredentials | None,
                 ) -> tuple[Ready, list[Shot]]:
    """Preflight for a film: returns ``Ready`` (connection, local audio) and the shots
    with s3:// keyframes fetched to local files."""
    _s3_without_bucket([v for s in shots for v in (s.first_frame_image, s.last_frame_image)]
                       + [audio], destination)
    ready = preflight(credentials_block, options, destination, audio=audio)
    provider = ready.connection.provider
    fetched = []
    for shot in shots:
        spec = resolve_inputs(ClipSpec(first_frame_image=shot.first_frame_image,
                                       last_frame_image=shot.last_frame_image), destination)
        fetched.append(shot.model_copy(update={"first_frame_image": spec.first_frame_image,
                                               "last_frame_image": spec.last_frame_image}))
    for shot in fetched:
        frames = {"first_frame_image": None if shot.chained else shot.first_frame_image,
                  "last_frame_image": shot.last_frame_image}
        if is_h3(options.model):
            check_h3_media(ClipSpec(**frames))
        else:
            check_images(frames)
    check_budget([s.request(model=options.model, resolution=options.resolution,
                            duration=options.duration, ratio=options.ratio) for s in fetched],
                 provider, options.max_cost_usd)
    independent = [s for s in fetched if not s.chained]
    refuse_duplicates(
        [(s.name, film_spec(s, s.first_frame_image).to_request(options).validate_for(provider),
          options.take) for s in independent], provider, what="segments",
        hint="A film has no per-segment take: make their prompts or keyframes differ.")
    return ready, fetched


def film_spec(shot: Shot, first_frame_image: str | None) -> ClipSpec:
    """The clip a shot is generated as (its first frame given: chained shots get the
    previous clip's last frame)."""
    return ClipSpec(name=shot.name, prompt=shot.prompt, first_frame_image=first_frame_image,
                    last_frame_image=shot.last_frame_image, duration=shot.duration,
                    resolution=shot.resolution)
