"""Prefect tasks for the film's other media: ``generate_image``, ``synthesize_speech``,
``compose_music`` (issue 15).

Each is two steps, like a clip's submit and download:

1. **The paid call** (``image-call`` / ``speech-call`` / ``music-call``): cached on the
   request's identity - a canonical fingerprint of the validated request (images by
   content hash), provider, ``take``, base URL and account (the salted key hash of
   ``HailuoConnection.account_id``), never the key - with ``persist_result=True``, behind
   the same submit lock as ``submit_generation`` (``tasks/submit_lock.py``: SERIALIZABLE,
   so two runs making the same asset at the same moment pay once), and run in its own
   EAGER transaction (as ``flows.pipeline._submit`` does) so the answer is persisted the
   moment it arrives, even inside another task. The
   persisted answer holds what was bought: the audio bytes (hex answers) or the links
   (URL answers, 24 h), so a re-run re-makes a deleted file without paying again.
2. **The verified file** (the public tasks): a file named by the caller (``name``) or by
   the fingerprint, decoded to its last sample (audio, PyAV) or opened with Pillow and
   checked like a first frame (images), written atomically, with a JSON manifest next to
   it (``<stem>.manifest.json``: request, fingerprint, measurements, subtitles, cost
   estimate and its source) and, when ``s3_bucket_block`` is named, both uploaded
   (skipped when the same sha256 is already there).

A re-run pays nothing: the file and its manifest are found first (no API call at all);
failing that, the cached answer is used. Within one process, identical requests wait for
each other instead of both paying.

Clients come from a ``HailuoConnection`` like the video tasks. Speech and music are
MiniMax's own API (``/v1/t2a_v2``, ``/v1/music_generation``): the connection must be a
``minimax`` one, or the simulator (which serves both dialects); images follow the
connection's provider (MiniMax image-01, or APIMart's async image models).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE, CachePolicy
from prefect.runtime import flow_run
from prefect.transactions import CommitMode, IsolationLevel, transaction
from pydantic import BaseModel, SecretStr

from hailuo import audio, netguard
from hailuo.capabilities import Provider
from hailuo.errors import ConfigurationError, HailuoError
from hailuo.files import atomic_output, ensure_inside
from hailuo.ids import check_id
from hailuo.imagegen import ImageAnswer, ImageClient, ImageRequest, ImageResult
from hailuo.media import sha256_file
from hailuo.mediaclient import media_fingerprint
from hailuo.models import utcnow
from hailuo.music import MusicAnswer, MusicClient, MusicRequest, MusicResult
from hailuo.speech import SpeechAnswer, SpeechClient, SpeechRequest, SpeechResult
from prefect_hailuo.blocks.credentials import (
    EMBEDDED_KEY,
    HailuoConnection,
    _credentials_for_this_run,
)
from prefect_hailuo.defaults import SIMULATOR
from prefect_hailuo.tasks.generation import _require_submit_lock, retry_if_safe
from prefect_hailuo.tasks.submit_lock import SubmitLockManager

__all__ = ["ImageAsset", "MusicAsset", "SpeechAsset", "compose_music", "generate_image",
           "image_client", "music_client", "speech_client", "synthesize_speech"]

T = TypeVar("T")


# -- clients from a connection ----------------------------------------------------------
def _key(connection: HailuoConnection) -> tuple[SecretStr, dict[str, Any]]:
    """The resolved key (never returned by the tasks) and client settings of the block."""
    if connection.credentials_block == SIMULATOR:
        return SecretStr(EMBEDDED_KEY), {}
    creds = _credentials_for_this_run(connection.credentials_block)
    assert creds.api_key is not None  # resolved by _credentials_for_this_run
    return creds.api_key, {"max_retries": creds.max_retries}


def _minimax_url(connection: HailuoConnection, what: str) -> str:
    """Speech and music are MiniMax's own API; an APIMart connection cannot serve them
    (unless it points at the simulator, which speaks both dialects)."""
    host = urlsplit(connection.base_url).hostname
    if (connection.provider is Provider.MINIMAX or connection.simulated
            or netguard.is_loopback_host(host)):
        return connection.base_url
    raise ConfigurationError(
        f"{what} comes from MiniMax's own API, but the credentials block "
        f"{connection.credentials_block!r} is for {connection.provider} "
        f"({connection.base_url}). Name a HailuoCredentials block with provider 'minimax' "
        "for audio (a film may use one block for video and another for audio and images)",
        field="connection")


def speech_client(connection: HailuoConnection) -> SpeechClient:
    base_url = _minimax_url(connection, "speech")
    key, settings = _key(connection)
    return SpeechClient(key, base_url, **settings)


def music_client(connection: HailuoConnection) -> MusicClient:
    base_url = _minimax_url(connection, "music")
    key, settings = _key(connection)
    return MusicClient(key, base_url, **settings)


def image_client(connection: HailuoConnection) -> ImageClient:
    key, settings = _key(connection)
    return ImageClient(connection.provider, key, connection.base_url, **settings)


def _short(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# -- step 1: the paid calls, cached on the request's identity ---------------------------
def _account(connection: HailuoConnection) -> str:
    """The salted account hash the video submits are keyed on (never the key)."""
    account_id = getattr(connection, "account_id", None)
    return account_id() if callable(account_id) else "-"


def _paid_key(kind: str) -> Callable[[Any, dict[str, Any]], str]:
    def key(context: Any, parameters: dict[str, Any]) -> str:
        conn: HailuoConnection = parameters["connection"]
        request = parameters["request"]
        take = parameters.get("take", 1)
        if kind == "image":
            ident = request.fingerprint(conn.provider, take)
        else:
            ident = request.fingerprint(take)
        return f"hailuo-{kind}-{ident}-{_short(conn.base_url)}-{_account(conn)}"
    return key


_LOCKS = SubmitLockManager()


def _paid_policy(kind: str) -> CachePolicy:
    """Cached on the request's identity and, like ``submit_generation``, serialised by the
    submit lock: two runs making the same asset at the same moment pay once."""
    return CachePolicy.from_cache_key_fn(_paid_key(kind)).configure(
        lock_manager=_LOCKS, isolation_level=IsolationLevel.SERIALIZABLE)


def retry_if_unbilled(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a paid call only when its failure proves nothing was produced (the client
    raises ``AmbiguousSubmitError``, which is not retryable, whenever it might have been)."""
    return retry_if_safe(task, task_run, state)


@task(name="speech-call", cache_policy=_paid_policy("speech"),
      cache_expiration=timedelta(days=30),
      persist_result=True, retries=1, retry_delay_seconds=[10],
      retry_condition_fn=retry_if_unbilled, task_run_name="speech-call-{request.model}")
def speech_call(request: SpeechRequest, connection: HailuoConnection, take: int = 1
                ) -> SpeechAnswer:
    """One paid synthesis; the persisted answer holds the audio bytes or link."""
    _require_submit_lock()  # never pay outside the cache and its lock
    with speech_client(connection) as client:
        answer = client.call(request, take=take)
    get_run_logger().info("speech synthesised (%s, %d characters)", request.model,
                          len(request.text))
    return answer


@task(name="music-call", cache_policy=_paid_policy("music"),
      cache_expiration=timedelta(days=30),
      persist_result=True, retries=1, retry_delay_seconds=[10],
      retry_condition_fn=retry_if_unbilled, task_run_name="music-call-{request.model}")
def music_call(request: MusicRequest, connection: HailuoConnection, take: int = 1
               ) -> MusicAnswer:
    """One paid song (a long synchronous call)."""
    _require_submit_lock()  # never pay outside the cache and its lock
    with music_client(connection) as client:
        answer = client.call(request, take=take)
    get_run_logger().info("music composed (%s)", request.model)
    return answer


@task(name="image-call", cache_policy=_paid_policy("image"),
      cache_expiration=timedelta(days=30),
      persist_result=True, retries=1, retry_delay_seconds=[10],
      retry_condition_fn=retry_if_unbilled, task_run_name="image-call-{request.n}")
def image_call(request: ImageRequest, connection: HailuoConnection, take: int = 1
               ) -> ImageAnswer:
    """One paid image request (MiniMax sync; APIMart submit + wait)."""
    _require_submit_lock()  # never pay outside the cache and its lock
    with image_client(connection) as client:
        answer = client.call(request, take=take)
    get_run_logger().info("%d image(s) made (%s)", len(answer.urls) or len(answer.data),
                          connection.provider)
    return answer


def _paid(call: Any, request: Any, connection: HailuoConnection, take: int) -> tuple[Any, bool]:
    """(answer, from the cache) of a paid-call task, in its own EAGER transaction."""
    with transaction(commit_mode=CommitMode.EAGER):
        state = call(request, connection, take=take, return_state=True)
    return state.result(), state.name == "Cached"


# -- step 2: verified files, manifests, S3 ----------------------------------------------
class _Stored(BaseModel):
    manifest_path: str
    reused: bool = False
    paid: bool = False
    s3_uris: list[str] = []
    manifest_uri: str | None = None
    presigned_url: str | None = None


class SpeechAsset(SpeechResult, _Stored):
    """A verified narration on disk (``path``), its manifest, and where it was uploaded.
    ``paid`` says whether this run made a new paid call; ``reused`` that the file was
    already there."""


class MusicAsset(MusicResult, _Stored):
    """A verified track on disk with its manifest."""


class ImageAsset(ImageResult, _Stored):
    """Verified images on disk with their manifest."""


_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock(ident: str) -> threading.Lock:
    """One lock per request identity: identical requests in parallel tasks of one process
    wait for the first instead of both paying."""
    with _locks_guard:
        return _locks.setdefault(ident, threading.Lock())


def _target(output_dir: str, name: str | None, kind: str, ident: str, suffix: str) -> Path:
    stem = name or f"{kind}-{ident[:16]}"
    check_id(stem, what=f"{kind} asset name")
    return ensure_inside(Path(output_dir) / f"{stem}{suffix}", output_dir)


def _manifest_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}.manifest.json")


def _write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))


def _endpoint(connection: HailuoConnection) -> str:
    """Where assets come from, for reuse: a local simulator on any port is one place (the
    embedded one gets a new port per process), every real endpoint its own. A file made by
    the simulator is never reused for a run against a real API, nor the other way round."""
    host = urlsplit(connection.base_url).hostname
    return _short("local-simulator" if netguard.is_loopback_host(host)
                  else connection.base_url.rstrip("/"))


def _reuse(manifest_path: Path, ident: str, endpoint: str, model: type[T],
           check: Callable[[Any], None]) -> T | None:
    """The asset of an earlier run when its manifest names this identity and endpoint and
    every file still has its recorded sha256 and passes ``check``; else None."""
    try:
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("fingerprint") != ident or manifest.get("endpoint") != endpoint:
            return None
        result = dict(manifest["result"])
        folder = manifest_path.parent  # files are looked for beside their manifest
        if "path" in result:
            result["path"] = folder / Path(result["path"]).name
        if "images" in result:
            result["images"] = [{**image, "path": folder / Path(image["path"]).name}
                                for image in result["images"]]
        asset = model.model_validate({**result, "manifest_path": str(manifest_path),
                                      "reused": True, "paid": False,
                                      **manifest.get("s3", {})})
        check(asset)
        return asset
    except (OSError, ValueError, KeyError, TypeError, HailuoError):
        return None


def _same_file(path: Path, sha256: str, size: int) -> None:
    if path.stat().st_size != size or sha256_file(path) != sha256:
        raise ValueError(f"{path.name} changed since its manifest was written")


def _manifest(kind: str, name: str | None, ident: str, connection: HailuoConnection,
              request: BaseModel, result: BaseModel, paid: bool) -> dict[str, Any]:
    provider = connection.provider if kind == "image" else Provider.MINIMAX
    return {
        "kind": kind, "name": name, "fingerprint": ident, "provider": str(provider),
        "credentials_block": connection.credentials_block,
        "endpoint": _endpoint(connection),
        "request": request.model_dump(mode="json"),
        "result": result.model_dump(mode="json"),
        "paid_by_this_run": paid,
        "simulated": connection.simulated or bool(getattr(result, "simulated", False)),
        "written_at": utcnow().isoformat(),
        "prefect_flow_run_id": str(flow_run.id) if flow_run.id else None,
    }


def _upload(files: list[tuple[Path, str, str]], manifest: dict[str, Any], bucket_block: str,
            prefix: str, kind: str, ident: str, presign_seconds: int) -> dict[str, Any]:
    """Upload (path, sha256, content type) files and the manifest under
    ``<prefix>/<kind>/<fingerprint[:32]>/``; files already there with the same sha256 are
    skipped. Returns the S3 fields of the asset."""
    from prefect_aws import S3Bucket

    from prefect_hailuo.tasks.storage import TRANSFER, _existing_sha, object_prefix

    logger = get_run_logger()
    block = S3Bucket.load(bucket_block)
    s3 = block.credentials.get_s3_client()
    bucket = block.bucket_name
    base = object_prefix("/".join(filter(None, [block.bucket_folder, prefix])), kind,
                         ident[:32])
    uris = []
    for path, sha, content_type in files:
        key = f"{base}/{path.name}"
        if _existing_sha(s3, bucket, key) == sha:
            logger.info("s3://%s/%s already holds this file; not uploading", bucket, key)
        else:
            s3.upload_file(str(path), bucket, key, Config=TRANSFER, ExtraArgs={
                "ContentType": content_type, "Metadata": {"sha256": sha}})
        uris.append(f"s3://{bucket}/{key}")
    manifest_key = f"{base}/manifest.json"
    s3.put_object(Bucket=bucket, Key=manifest_key, ContentType="application/json",
                  Body=json.dumps(manifest, indent=2, sort_keys=True, default=str).encode())
    first = f"{base}/{files[0][0].name}"
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": first},
                                    ExpiresIn=presign_seconds)
    return {"s3_uris": uris, "manifest_uri": f"s3://{bucket}/{manifest_key}",
            "presigned_url": url}


def _finish(kind: str, name: str | None, ident: str, connection: HailuoConnection,
            request: BaseModel, result: BaseModel, paid: bool, asset_model: type[T],
            files: list[tuple[Path, str, str]], path: Path, s3_bucket_block: str | None,
            s3_prefix: str, presign_seconds: int) -> T:
    manifest_path = _manifest_path(path)
    manifest = _manifest(kind, name, ident, connection, request, result, paid)
    s3: dict[str, Any] = {}
    if s3_bucket_block:
        s3 = _upload(files, manifest, s3_bucket_block, s3_prefix, kind, ident,
                     presign_seconds)
        manifest["s3"] = s3
    _write_manifest(manifest_path, manifest)
    return asset_model.model_validate({**result.model_dump(), **s3, "paid": paid,
                                       "manifest_path": str(manifest_path)})


_AUDIO_TYPES = {"mp3": "audio/mpeg", "wav": "audio/wav", "flac": "audio/flac",
                "opus": "audio/ogg", "pcm": "application/octet-stream",
                "pcmu_raw": "audio/basic", "pcmu_wav": "audio/wav"}


@task(name="synthesize-speech", cache_policy=NO_CACHE, retries=2,
      retry_delay_seconds=[5, 20], retry_condition_fn=retry_if_safe,
      task_run_name="synthesize-speech-{request.model}")
def synthesize_speech(request: SpeechRequest, connection: HailuoConnection,
                      output_dir: str = "out", name: str | None = None,
                      s3_bucket_block: str | None = None, s3_prefix: str = "hailuo",
                      take: int = 1, presign_seconds: int = 86400) -> SpeechAsset:
    """A narration as a verified audio file ``<output_dir>/<name>.<format>`` (default name:
    ``speech-<fingerprint>``) with ``<name>.manifest.json``; ``audio_length_ms`` and the
    subtitles (seconds) come with it. Pays at most once per request identity."""
    logger = get_run_logger()
    checked = request.validated()  # refused locally, before anything else
    ident = media_fingerprint("speech", checked, Provider.MINIMAX, take)
    path = _target(output_dir, name, "speech", ident, audio.AUDIO_SUFFIX[checked.format])

    def check(asset: SpeechAsset) -> None:
        _same_file(asset.path, asset.sha256, asset.size)
        audio.probe_audio(asset.path, fmt=asset.format, sample_rate=asset.sample_rate,
                          channels=asset.channels)

    with _lock(ident):
        found = _reuse(_manifest_path(path), ident, _endpoint(connection),
                       SpeechAsset, check)
        if found is not None:
            logger.info("narration already made and verified: %s", path)
            return found
        answer, cached = _paid(speech_call, checked, connection, take)
        with speech_client(connection) as client:
            result = client.fetch(answer, path)
        logger.info("narration %s: %d ms, %d subtitle entries (%s)", path.name,
                    result.audio_length_ms, len(result.subtitles),
                    "from the cached answer" if cached else "paid now")
        return _finish("speech", name, ident, connection, checked, result, not cached,
                       SpeechAsset, [(path, result.sha256, _AUDIO_TYPES[result.format])],
                       path, s3_bucket_block, s3_prefix, presign_seconds)


@task(name="compose-music", cache_policy=NO_CACHE, retries=2,
      retry_delay_seconds=[5, 20], retry_condition_fn=retry_if_safe,
      task_run_name="compose-music-{request.model}")
def compose_music(request: MusicRequest, connection: HailuoConnection,
                  output_dir: str = "out", name: str | None = None,
                  s3_bucket_block: str | None = None, s3_prefix: str = "hailuo",
                  take: int = 1, presign_seconds: int = 86400) -> MusicAsset:
    """A track as a verified audio file with its manifest. An account without music
    (MiniMax's Discontinued models) raises ``ModelUnavailableError`` before anything is
    paid."""
    logger = get_run_logger()
    checked = request.validated()
    ident = media_fingerprint("music", checked, Provider.MINIMAX, take)
    path = _target(output_dir, name, "music", ident, audio.AUDIO_SUFFIX[checked.format])

    def check(asset: MusicAsset) -> None:
        _same_file(asset.path, asset.sha256, asset.size)
        audio.probe_audio(asset.path, fmt=asset.format, sample_rate=asset.sample_rate,
                          channels=asset.channels)

    with _lock(ident):
        found = _reuse(_manifest_path(path), ident, _endpoint(connection),
                       MusicAsset, check)
        if found is not None:
            logger.info("track already made and verified: %s", path)
            return found
        answer, cached = _paid(music_call, checked, connection, take)
        with music_client(connection) as client:
            result = client.fetch(answer, path)
        logger.info("track %s: %d ms (%s)", path.name, result.audio_length_ms,
                    "from the cached answer" if cached else "paid now")
        return _finish("music", name, ident, connection, checked, result, not cached,
                       MusicAsset, [(path, result.sha256, _AUDIO_TYPES[result.format])],
                       path, s3_bucket_block, s3_prefix, presign_seconds)


@task(name="generate-image", cache_policy=NO_CACHE, retries=2,
      retry_delay_seconds=[5, 20], retry_condition_fn=retry_if_safe,
      task_run_name="generate-image-{request.n}")
def generate_image(request: ImageRequest, connection: HailuoConnection,
                   output_dir: str = "out", name: str | None = None,
                   s3_bucket_block: str | None = None, s3_prefix: str = "hailuo",
                   take: int = 1, presign_seconds: int = 86400) -> ImageAsset:
    """Images as verified files (``<name>.png``, or ``<name>-<i>.png`` for several) with
    ``<name>.manifest.json``; each passed the first-frame checks, so it can be fed to the
    video model as ``first_frame_image``."""
    logger = get_run_logger()
    checked = request.validated_for(connection.provider)
    ident = media_fingerprint("image", checked, connection.provider, take,
                              image_fields=("subject_reference",))
    path = _target(output_dir, name, "image", ident, ".png")

    def check(asset: ImageAsset) -> None:
        from PIL import Image

        for image in asset.images:
            _same_file(image.path, image.sha256, image.size)
            with Image.open(image.path) as opened:
                opened.load()

    with _lock(ident):
        found = _reuse(_manifest_path(path), ident, _endpoint(connection),
                       ImageAsset, check)
        if found is not None:
            logger.info("image(s) already made and verified: %s", path)
            return found
        answer, cached = _paid(image_call, checked, connection, take)
        with image_client(connection) as client:
            result = client.fetch(answer, path)
        logger.info("%d image(s) at %s (%s)", len(result.images), path.parent,
                    "from the cached answer" if cached else "paid now")
        files = [(i.path, i.sha256, f"image/{i.format}") for i in result.images]
        return _finish("image", name, ident, connection, checked, result, not cached,
                       ImageAsset, files, path, s3_bucket_block, s3_prefix, presign_seconds)
