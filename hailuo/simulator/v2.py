"""The simulator speaks MiniMax video v2 (MiniMax-H3 / MiniMax-H3-Max), api-contract-v2.md 1.

Routes (registered by ``app.create_app`` through ``register``):

* ``POST /v2/video_generation``: validates the body as MiniMax documents it (``content[]``
  roles, no v1 fields, integer duration, ratio rules, media limits, 64 MB body), creates
  the task and answers ``{"task_id": "<decimal string>"}``.
* ``GET /v2/query/video_generation/{task_id}``: ``{"task": {...}}`` with lowercase
  statuses (queued, running, succeeded, failed, cancelled), ``content.url`` on success
  - a signed link valid ``link_ttl_seconds``, signed anew on every query (so re-querying
  refreshes an expired one) - ``usage`` and the ratio actually used.
* ``GET /v2/query/video_generation?page_num&page_size&filter.model&filter.status&
  filter.task_ids&filter.task_type``: ``{"items": [...], "total": n}``, newest first. A
  ``task_id`` query parameter is ignored, as the real list endpoint does (the pitfall).
* ``DELETE /v2/video_generation/{task_id}``: queued -> cancelled (never rendered, not
  charged); succeeded / failed -> deleted; running or cancelled -> 400.
* ``POST /v2/video_regeneration``: form (b) of the docs - the original content plus one
  ``video_url`` item with role ``base_video``, ``resolution: "2K"``, no duration or ratio;
  the base must be an unmodified H3 768P output (24 fps, sides divisible by 32, the 768P
  area, 107..362 frames on the 17k+5 grid, audio). Renders the base's ratio at 2K
  (16:9: 2560x1440) with the same frame count and the same prompt-seeded sound; the task
  lists with ``task_type: regeneration`` and ``ratio: ""``; costs $0.05/s plus the
  original inputs again. ``source_task_id`` (whitelist only) is refused.
* ``POST /v1/files/upload`` (multipart ``purpose`` + ``file``): stores a file, answers
  ``file.file_id`` (a JSON number); ``mm_file://<file_id>`` then refers to it.

Errors are v2-shaped: a real HTTP status and ``{"type":"error","error":{"type","message",
"http_code"},"request_id"}``, the code in the message's parentheses. Faults that apply:
``drop_before_rate``, ``slow_seconds``, ``error_rate`` (5xx before anything is created),
``rate_limit_rate`` and ``rpm`` / ``status_rpm`` (429, code 1002), ``wrong_region_code``
(401), ``drop_after_submit_rate`` (task created, connection closed), ``fail_rate`` /
``fail_codes`` (task ends failed, ``error.code`` a string), ``expired_link_rate``,
``unknown_status_word``, the hostile-answer knobs, and the scripted faults
``h3_plan_key`` (400, 2013: a Token Plan / Credit key cannot use H3),
``v2_server_error`` (HTTP 500 server_error before the task exists) and
``error_after_accept`` (the task IS created, then HTTP 502). With a ``callback_url`` the
challenge is sent first, then the query's ``{"task": {...}}`` on each status change
(running, then succeeded / failed / cancelled), as MiniMax documents (1.7).

Clips: ``hailuo.h3`` sizes, 24 fps, the 17k+5 frame grid, a stereo 32 kHz AAC track that
depends on the prompt (``hailuo.simulator.h3render``); cheap mode keeps 2K cheap.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import math
import secrets
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

import httpx
from fastapi import FastAPI, Request
from starlette.responses import Response

from hailuo import h3
from hailuo.capabilities import (
    H3_FPS,
    H3_MAX_BODY_BYTES,
    H3_MAX_COUNTS,
    H3_MAX_PROMPT_CHARS,
    H3_MAX_REFERENCES,
    H3_MODELS,
    H3_RATIOS,
    V2_CAPABILITIES,
    Mode,
    Provider,
)
from hailuo.errors import InvalidRequestError
from hailuo.h3media import check_media
from hailuo.simulator import h3render, hostile
from hailuo.simulator.faults import MINIMAX_MESSAGES
from hailuo.simulator.state import Phase, Task, new_minimax_id

log = logging.getLogger("hailuo.simulator")

MINIMAX = Provider.MINIMAX
FORBIDDEN_FIELDS = ("prompt", "prompt_optimizer", "fast_pretreatment", "first_frame_image",
                    "last_frame_image", "subject_reference", "seed")
KNOWN_FIELDS = {"model", "content", "resolution", "duration", "ratio", "callback_url",
                "aigc_watermark", "extra"}
_ROLE_FIELD = {("image_url", "first_frame"): "first_frame_image",
               ("image_url", "last_frame"): "last_frame_image",
               ("image_url", "reference_image"): "reference_images",
               ("video_url", "reference_video"): "reference_videos",
               ("audio_url", "reference_audio"): "reference_audios"}
_STATUS = {Phase.PREPARING: "queued", Phase.QUEUEING: "queued", Phase.PROCESSING: "running",
           Phase.COMPLETED: "succeeded", Phase.FAILED: "failed"}
#: (HTTP status, error.type, code) of the random / scripted server errors.
_SERVER = {500: ("server_error", 1000), 502: ("server_error", 1000),
           503: ("overloaded_error", None)}
#: What the simulator charges per output second (H3 prices, api-contract-v2.md 1.11).
PRICE = {("MiniMax-H3", "768p"): 0.08, ("MiniMax-H3", "2k"): 0.13,
         ("MiniMax-H3-Max", "480p"): 0.05, ("MiniMax-H3-Max", "768p"): 0.08}
MAX_UPLOAD_BYTES = 100 * 1024 * 1024
PLAN_KEY_MESSAGE = "invalid params, TokenPlan or Credit does not support H3 (2013)"


def error_body(http: int, kind: str, message: str, code: int | None = None) -> dict[str, Any]:
    """A v2 error answer; the internal code goes in the message's parentheses."""
    text = f"{message} ({code})" if code is not None else message
    return {"type": "error", "error": {"type": kind, "message": text, "http_code": str(http)},
            "request_id": secrets.token_hex(16)}


class Rejected(Exception):
    """A v2 refusal: HTTP status, error.type, message, code."""

    def __init__(self, message: str, *, http: int = 400, kind: str = "bad_request_error",
                 code: int | None = 2013) -> None:
        super().__init__(message)
        self.message, self.http, self.kind, self.code = message, http, kind, code


@dataclass
class Meta:
    """What a v2 task has beyond the common ``Task``."""

    ratio: str  # the ratio actually rendered (reported by queries)
    task_type: str = "generation"
    cancelled_at: float | None = None
    deleted: bool = False
    image_count: int = 0
    input_seconds: int = 0  # reference video seconds (billed)
    audio_seconds: int = 0
    updated_at: float = field(default_factory=time.time)


@dataclass
class Stored:
    """A file of ``POST /v1/files/upload``."""

    file_id: int
    data: bytes
    filename: str
    purpose: str
    created_at: int
    who: str


@dataclass
class V2Submission:
    model: str
    mode: Mode
    prompt: str
    resolution: str  # lowercase label
    duration: int
    ratio: str  # as sent
    media: dict[str, list[bytes]]
    callback_url: str | None = None


class Book:
    """The v2 side of the simulator's memory (tasks live in ``SimState``)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.meta: dict[str, Meta] = {}
        self.files: dict[int, Stored] = {}

    def add_file(self, stored: Stored) -> None:
        with self.lock:
            self.files[stored.file_id] = stored

    def file(self, file_id: int) -> Stored | None:
        with self.lock:
            return self.files.get(file_id)


# -- validation ----------------------------------------------------------------------------
def _decode_data_uri(url: str, what: str) -> bytes:
    head, _, payload = url.partition(",")
    if ";base64" not in head.lower():
        raise Rejected(f"invalid params, {what} data URI is not base64")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise Rejected(f"invalid params, {what} data URI holds invalid base64") from None


async def _fetch(url: str, what: str, client: httpx.AsyncClient | None,
                 timeout: float) -> bytes:
    if client is None:
        raise Rejected(f"invalid params, {what} could not be downloaded")
    try:
        async with client.stream("GET", url, timeout=timeout) as response:
            if response.status_code != 200:
                raise Rejected(f"invalid params, {what} could not be downloaded (HTTP "
                               f"{response.status_code})")
            chunks, total = [], 0
            async for chunk in response.aiter_bytes():
                total += len(chunk)
                if total > MAX_UPLOAD_BYTES:
                    raise Rejected(f"invalid params, {what} is too large")
                chunks.append(chunk)
            return b"".join(chunks)
    except httpx.HTTPError as exc:
        raise Rejected(f"invalid params, {what} could not be downloaded "
                       f"({type(exc).__name__})") from None


async def media_bytes(url: str, what: str, *, book: Book, who: str | None,
                      client: httpx.AsyncClient | None, fetch_timeout: float) -> bytes:
    """The bytes a content item's URL stands for: an upload, a data URI or a download."""
    if url.startswith("mm_file://"):
        raw_id = url[len("mm_file://"):]
        stored = book.file(int(raw_id)) if raw_id.isdigit() else None
        if stored is None or (who is not None and stored.who != who):
            raise Rejected(f"invalid params, {what}: file {raw_id} not found")
        return stored.data
    if url[:5].lower() == "data:":
        return _decode_data_uri(url, what)
    if url[:8].lower().startswith(("http://", "https://")):
        return await _fetch(url, what, client, fetch_timeout)
    raise Rejected(f"invalid params, {what} must be a URL, mm_file:// or a data URI")


async def parse_v2(body: Any, *, book: Book, who: str | None, client: httpx.AsyncClient | None,
                   fetch_timeout: float = 5.0) -> V2Submission:
    """Validate a create body like MiniMax does; raise ``Rejected`` like it would."""
    if not isinstance(body, dict):
        raise Rejected("invalid params, request body must be a JSON object")
    for name in FORBIDDEN_FIELDS:
        if name in body:
            raise Rejected(f"invalid params, unknown field {name} (v2 takes content[] items)")
    unknown = sorted(set(body) - KNOWN_FIELDS)
    if unknown:
        raise Rejected(f"invalid params, unknown field {unknown[0]}")
    model = body.get("model")
    if model not in H3_MODELS:
        raise Rejected(f"invalid params, model {model!r} is not supported on v2; supported: "
                       f"{', '.join(H3_MODELS)}")
    content = body.get("content")
    if not isinstance(content, list) or not content:
        raise Rejected("invalid params, content must include a non-empty text item (prompt "
                       "is required)")
    texts: list[str] = []
    media: dict[str, list[tuple[str, str]]] = {}
    images_without_role = 0
    for index, item in enumerate(content):
        if not isinstance(item, dict) or item.get("type") not in (
                "text", "image_url", "video_url", "audio_url"):
            raise Rejected(f"invalid params, content[{index}].type must be text, image_url, "
                           "video_url or audio_url")
        kind = item["type"]
        if kind == "text":
            if not isinstance(item.get("text"), str):
                raise Rejected(f"invalid params, content[{index}].text must be a string")
            texts.append(item["text"])
            continue
        inner = item.get(kind)
        url = inner.get("url") if isinstance(inner, dict) else None
        if not isinstance(url, str) or not url:
            raise Rejected(f"invalid params, content[{index}].{kind}.url is required")
        role = item.get("role")
        if role is None and kind == "image_url":
            images_without_role += 1
            role = "first_frame"
        name = _ROLE_FIELD.get((kind, role))
        if name is None:
            raise Rejected(f"invalid params, content[{index}] has role {role!r}, not valid "
                           f"for {kind}")
        media.setdefault(name, []).append((url, f"content[{index}]"))
    images = sum(len(media.get(k, ())) for k in ("first_frame_image", "last_frame_image",
                                                 "reference_images"))
    if images_without_role and images > 1:
        raise Rejected("invalid params, every image needs a role when more than one image "
                       "is sent")
    nonempty = [t for t in texts if t.strip()]
    if len(nonempty) != 1:
        raise Rejected("invalid params, content must include a non-empty text item (prompt "
                       "is required)" if not nonempty else
                       "invalid params, content must include exactly one text item")
    prompt = nonempty[0]
    if len(prompt) > H3_MAX_PROMPT_CHARS:
        raise Rejected(f"invalid params, text is {len(prompt)} characters; the maximum is "
                       f"{H3_MAX_PROMPT_CHARS}")
    frames = bool(media.get("first_frame_image") or media.get("last_frame_image"))
    refs = any(media.get(k) for k in ("reference_images", "reference_videos",
                                      "reference_audios"))
    if frames and refs:
        raise Rejected("invalid params, first_frame/last_frame roles cannot be combined with "
                       "reference roles")
    for name, most in H3_MAX_COUNTS.items():
        if len(media.get(name, [])) > most:
            raise Rejected(f"invalid params, at most {most} {name.replace('_', ' ')}")
    if sum(len(media.get(k, [])) for k in ("reference_images", "reference_videos",
                                             "reference_audios")) > H3_MAX_REFERENCES:
        raise Rejected(f"invalid params, at most {H3_MAX_REFERENCES} reference files")
    if media.get("reference_audios") and not (media.get("reference_images")
                                              or media.get("reference_videos")):
        raise Rejected("invalid params, reference_audio needs a reference_image or "
                       "reference_video")
    if refs:
        mode = Mode.REFERENCE
    elif media.get("first_frame_image") and media.get("last_frame_image"):
        mode = Mode.FIRST_LAST_FRAME
    elif media.get("last_frame_image"):
        mode = Mode.LAST_FRAME
    elif media.get("first_frame_image"):
        mode = Mode.IMAGE_TO_VIDEO
    else:
        mode = Mode.TEXT_TO_VIDEO
    cap = next(c for c in V2_CAPABILITIES if c.model == model and c.mode is mode)
    resolution = body.get("resolution")
    allowed = [r.upper() for r in cap.options]
    if resolution not in allowed:
        raise Rejected(f"invalid params, resolution {resolution!r} is not supported by "
                       f"{model}; supported: {', '.join(allowed)}")
    label = str(resolution).lower()
    duration = body.get("duration")
    if type(duration) is not int or duration not in cap.options[label]:
        options = cap.options[label]
        raise Rejected(f"invalid params, duration must be an integer {min(options)}-"
                       f"{max(options)}")
    ratio = body.get("ratio", "adaptive")
    if ratio not in H3_RATIOS:
        raise Rejected(f"invalid params, ratio {ratio!r} is not supported")
    if mode is Mode.TEXT_TO_VIDEO and ratio == "adaptive":
        raise Rejected("invalid params, ratio is required for text-to-video and may not be "
                       "adaptive")
    extra = body.get("extra")
    bad_extra = extra is not None and (
        model != "MiniMax-H3-Max" or not isinstance(extra, dict)
        or set(extra) - {"prompt_expansion_mode"}
        or extra.get("prompt_expansion_mode") not in ("disabled", "balanced", "quality"))
    if bad_extra:
        raise Rejected("invalid params, extra takes only prompt_expansion_mode "
                       "(disabled, balanced, quality) and only for MiniMax-H3-Max")
    watermark = body.get("aigc_watermark", False)
    if not isinstance(watermark, bool):
        raise Rejected("invalid params, aigc_watermark must be a boolean")
    if watermark and model != "MiniMax-H3":
        raise Rejected("invalid params, watermark only supported with H3")
    callback = body.get("callback_url")
    if callback is not None and not isinstance(callback, str):
        raise Rejected("invalid params, callback_url must be a string")
    decoded: dict[str, list[bytes]] = {}
    for name, items in media.items():
        out = []
        for index, (url, where) in enumerate(items):
            what = f"{where} ({name})"
            data = await media_bytes(url, what, book=book, who=who, client=client,
                                     fetch_timeout=fetch_timeout)
            try:
                check_media(data, field=name, index=index)
            except InvalidRequestError as exc:
                raise Rejected(f"invalid params, {what}: {exc.message}") from None
            out.append(data)
        decoded[name] = out
    return V2Submission(model=model, mode=mode, prompt=prompt, resolution=label,
                        duration=duration, ratio=ratio, media=decoded, callback_url=callback)


# -- regeneration: a finished H3 768P output again at 2K (api-contract-v2.md 1.10) ----------
REGENERATION_FIELDS = {"model", "content", "resolution", "callback_url", "aigc_watermark",
                       "source_task_id"}
REGENERATION_MAX_TEXT = 40_000
#: $ per output second of a regeneration, and for the original inputs billed again.
REGENERATION_PRICE = 0.05
REGENERATION_IMAGE_PRICE = 0.025
REGENERATION_VIDEO_PRICE = 0.05


@dataclass(frozen=True)
class BaseVideo:
    """What the simulator measured of a regeneration's base video."""

    width: int
    height: int
    frames: int
    ratio: str  # nearest H3 ratio

    @property
    def duration(self) -> int:
        """The duration the clip was asked for (the 17k+5 grid rounds it up < 1 s)."""
        return self.frames // H3_FPS


def base_video_info(data: bytes) -> BaseVideo:
    """Measure a base video and check it is an unmodified H3 768P output (24 fps, W and H
    divisible by 32, area 589,824..1,032,192, 107..362 frames on the 17k+5 grid, audio)."""
    import io

    import av

    try:
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.video:
                raise Rejected("invalid params, base_video has no video stream")
            stream = container.streams.video[0]
            fps = float(stream.average_rate or 0)
            width, height = stream.codec_context.width, stream.codec_context.height
            has_audio = bool(container.streams.audio)
            frames = stream.frames or sum(1 for p in container.demux(stream) if p.size)
    except Rejected:
        raise
    except Exception:  # noqa: BLE001 - whatever the decoder says, it is not a video
        raise Rejected("invalid params, base_video is not a readable MP4") from None
    problem = None
    if abs(fps - 24) > 0.01:
        problem = f"it runs at {fps:g} fps"
    elif width % 32 or height % 32 or not 589_824 <= width * height <= 1_032_192:
        problem = f"{width}x{height} is not an H3 768P size"
    elif not (107 <= frames <= 362 and (frames - 5) % 17 == 0):
        problem = f"{frames} frames are not on the 17k+5 grid"
    elif not has_audio:
        problem = "it has no audio"
    if problem:
        raise Rejected(f"invalid params, base_video must be an unmodified MiniMax-H3 768P "
                       f"output: {problem}")
    return BaseVideo(width, height, frames, h3.nearest_ratio(width, height))


async def parse_regeneration(body: Any, *, book: Book, who: str | None,
                             client: httpx.AsyncClient | None, fetch_timeout: float = 5.0
                             ) -> tuple[V2Submission, BaseVideo]:
    """Validate a ``/v2/video_regeneration`` body like MiniMax does (form (b): content with
    the same items as the original create plus one ``base_video``)."""
    if not isinstance(body, dict):
        raise Rejected("invalid params, request body must be a JSON object")
    unknown = sorted(set(body) - REGENERATION_FIELDS)
    if unknown:
        raise Rejected(f"invalid params, unknown field {unknown[0]} (a regeneration takes no "
                       "duration or ratio: the base video fixes them)")
    if body.get("model") != "MiniMax-H3":
        raise Rejected(f"invalid params, regeneration supports MiniMax-H3 only, not "
                       f"{body.get('model')!r}")
    if "source_task_id" in body:
        if "content" in body:
            raise Rejected("invalid params, give exactly one of source_task_id or content")
        raise Rejected("invalid params, regeneration by source_task_id is not enabled for "
                       "this account (whitelist only); send content with the base_video")
    if body.get("resolution") != "2K":
        raise Rejected("invalid params, regeneration resolution must be 2K")
    content = body.get("content")
    if not isinstance(content, list):
        raise Rejected("invalid params, content must be a list")
    bases = [i for i in content if isinstance(i, dict) and i.get("role") == "base_video"]
    rest = [i for i in content if not (isinstance(i, dict) and i.get("role") == "base_video")]
    if len(bases) != 1 or bases[0].get("type") != "video_url":
        raise Rejected("invalid params, content must include exactly one video_url item "
                       "with role base_video")
    inner = bases[0].get("video_url")
    url = inner.get("url") if isinstance(inner, dict) else None
    if not isinstance(url, str) or not url:
        raise Rejected("invalid params, base_video.video_url.url is required")
    texts = [i.get("text") for i in rest if isinstance(i, dict) and i.get("type") == "text"]
    if any(isinstance(t, str) and len(t) > REGENERATION_MAX_TEXT for t in texts):
        raise Rejected(f"invalid params, text may be at most {REGENERATION_MAX_TEXT} "
                       "characters for a regeneration")
    data = await media_bytes(url, "base_video", book=book, who=who, client=client,
                             fetch_timeout=fetch_timeout)
    base = base_video_info(data)
    # The rest is a create's content (roles, media limits): checked as one, the text
    # stood in for (a regeneration's may be longer than a create's).
    text = next((t for t in texts if isinstance(t, str) and t.strip()), None)
    shadow = [({**i, "text": "x"} if isinstance(i, dict) and i.get("type") == "text" else i)
              for i in rest]
    create = {"model": "MiniMax-H3", "content": shadow, "resolution": "2K",
              "duration": base.duration, "ratio": base.ratio}
    for key in ("callback_url", "aigc_watermark"):
        if key in body:
            create[key] = body[key]
    sub = await parse_v2(create, book=book, who=who, client=client,
                         fetch_timeout=fetch_timeout)
    return replace(sub, prompt=text or ""), base


def _actual_ratio(sub: V2Submission) -> str:
    """The ratio the clip gets: the sent one, or the nearest to the guiding image."""
    if sub.ratio != "adaptive":
        return sub.ratio
    from hailuo.images import image_size

    for name in ("first_frame_image", "last_frame_image", "reference_images"):
        if sub.media.get(name):
            try:
                w, h = image_size(sub.media[name][0])
            except InvalidRequestError:  # HEIC without a decoder: the default
                break
            return h3.nearest_ratio(w, h)
    return "16:9"


def _seconds(data: bytes) -> float:
    import io

    import av

    try:
        with av.open(io.BytesIO(data)) as container:
            return (container.duration or 0) / 1_000_000
    except Exception:  # noqa: BLE001
        return 0.0


# -- routes ----------------------------------------------------------------------------------
def register(app: FastAPI, sim: Any, exchange_cls: type) -> Book:
    """Add the v2 routes to ``app``; ``exchange_cls`` is ``app.Exchange`` (faults, auth,
    logging), given here so this module does not import ``app``."""
    book = Book()

    class V2Exchange(exchange_cls):  # type: ignore[misc, valid-type]
        """The common exchange with v2's error shapes."""

        def _authenticate(self) -> Response | None:
            import hmac

            header = self.request.headers.get("authorization", "")
            scheme, _, key = header.partition(" ")
            key = key.strip() if scheme.lower() == "bearer" else ""
            accepted = self.sim.config.accepted_keys
            if not key:
                self.entry["auth"] = "missing"
                return self.error(401, "authorized_error", "login fail: please carry the API "
                                  "secret key in the Authorization header", 1004)
            if accepted is None or any(hmac.compare_digest(key.encode(), k.encode())
                                       for k in accepted):
                region = self.sim.config.wrong_region_code
                if region is not None:
                    self.entry["auth"] = "wrong_region"
                    self.faults.append("wrong_region")
                    return self.error(401, "authorized_error", "invalid api key", region)
                self.entry["auth"] = "accepted"
                self.who = hashlib.sha256(key.encode()).hexdigest()[:16]
                return None
            self.entry["auth"] = "rejected"
            return self.error(401, "authorized_error", "invalid api key", 2049)

        def error(self, http: int, kind: str, message: str, code: int | None = None,
                  headers: dict[str, str] | None = None) -> Response:
            return self.reply(error_body(http, kind, message, code), http, headers)

        def server_error(self, status: int) -> Response:
            kind, code = _SERVER[status]
            message = "unknown error" if code else "the service is overloaded, retry later"
            return self.error(status, kind, message, code)

        def too_many(self, why: str, *, retry_after: int) -> Response:
            self.faults.append("rate_limited")
            return self.error(429, "rate_limit_error", f"rate limit exceeded ({why})", 1002,
                              {"Retry-After": str(retry_after)})

        def rejected(self, exc: Rejected) -> Response:
            return self.error(exc.http, exc.kind, exc.message, exc.code)

    def meta(task_id: str) -> Meta | None:
        with book.lock:
            found = book.meta.get(task_id)
        return None if found is None or found.deleted else found

    def v2_task(task_id: str) -> tuple[Task, Meta] | None:
        info = meta(task_id)
        task = sim.state.task(task_id, MINIMAX) if info is not None else None
        return (task, info) if task is not None and info is not None else None

    def status_word(task: Task, info: Meta) -> tuple[str, Phase]:
        phase, _ = task.phase()
        if info.cancelled_at is not None:
            return "cancelled", phase
        return sim._word(phase, _STATUS[phase]), phase

    def task_body(task: Task, info: Meta, base_url: str) -> dict[str, Any]:
        word, phase = status_word(task, info)
        done = task.completed_at or info.updated_at
        body: dict[str, Any] = {
            "id": task.id, "model": task.model, "status": word,
            "created_at": int(task.created_at),
            "updated_at": int(done if phase.terminal else max(task.created_at, time.time())),
            "resolution": task.resolution.upper(), "duration": task.duration, "usage": {},
            "ratio": info.ratio, "task_type": info.task_type, "modality": "video",
        }
        if word == "succeeded":
            url, _ = sim.link(task, base_url, "download")
            body["content"] = {"url": url}
            body["usage"] = {"total_seconds": info.input_seconds + task.duration,
                             "input_seconds": info.input_seconds,
                             "output_seconds": task.duration,
                             "input_image_count": info.image_count,
                             "input_audio_seconds": info.audio_seconds}
        elif word == "failed":
            code, message = task.failure or (1000, "unknown error")
            body["error"] = {"code": str(code), "message": message}
        return body

    def start_render(task: Task, sub: V2Submission, info: Meta) -> None:
        config = sim.config
        spec = h3render.H3Spec(
            width=task.width, height=task.height, frames=h3.frame_count(task.duration),
            prompt=sub.prompt, model=sub.model,
            first_frame=(sub.media.get("first_frame_image") or [None])[0],
            last_frame=(sub.media.get("last_frame_image") or [None])[0],
            references=tuple(sub.media.get("reference_images", ())),
            reference_videos=tuple(sub.media.get("reference_videos", ())),
            reference_audios=tuple(sub.media.get("reference_audios", ())),
            camera=task.camera)
        cheap, preset = config.cheap, config.render_preset
        data_dir = sim.data_dir

        def work() -> None:
            if info.cancelled_at is not None:
                return  # cancelled while queued: never rendered
            with sim.state.lock:
                task.render_started_at = time.time()
            out = data_dir / f"{task.id}.mp4"
            try:
                if cheap:
                    h3render.restamp_h3(h3render.template(data_dir, spec, preset), out, spec,
                                        task.id)
                else:
                    h3render.render_h3(spec, out, preset=preset)
                size = out.stat().st_size
            except Exception as exc:  # a render bug fails the task, never hangs it
                log.exception("H3 render of %s failed", task.id)
                with sim.state.lock:
                    task.render_error = f"{type(exc).__name__}: {exc}"
                return
            with sim.state.lock:
                task.path, task.size = out, size
                task.render_finished_at = time.time()

        assert sim.renderer is not None
        pool = sim.renderer.pool
        if task.queue_end <= time.time():
            task.future = pool.submit(work)
            return
        # A queued task is not being rendered: the render starts when the queue time is
        # over (or the task is forced on), so one cancelled while queued never renders.
        outer: Future[None] = Future()
        task.future = outer

        def after_the_queue() -> None:
            while info.cancelled_at is None and time.time() < task.queue_end:
                time.sleep(min(0.1, max(0.0, task.queue_end - time.time())))
            if info.cancelled_at is not None:
                outer.set_result(None)
                return
            try:
                inner = pool.submit(work)
            except RuntimeError as exc:  # the server is stopping
                outer.set_exception(exc)
                return
            inner.add_done_callback(lambda f: outer.set_exception(f.exception())
                                    if f.exception() else outer.set_result(None))

        threading.Thread(target=after_the_queue, name=f"h3-queue-{task.id}",
                         daemon=True).start()

    def create(sub: V2Submission, base_url: str) -> Task:
        from hailuo.simulator.core import _camera

        config = sim.config
        ratio = _actual_ratio(sub)
        width, height = h3.frame_size(sub.resolution, ratio)
        fail = sim.dice.roll("fail", config.fail_rate)
        fail_code = sim.dice.choice("fail_code", list(config.fail_codes)) if fail else None
        camera, notes = _camera(sub.prompt)
        task = Task(
            id=new_minimax_id(), provider=MINIMAX, model=sub.model, mode=sub.mode,
            resolution=sub.resolution, duration=sub.duration, width=width, height=height,
            prompt=sub.prompt, created_at=time.time(), queue_seconds=config.queue_seconds,
            render_seconds=config.render_seconds, file_token=secrets.token_urlsafe(18),
            camera=camera, fail_code=fail_code,
            fail_message=MINIMAX_MESSAGES.get(fail_code, "generation failed") if fail else None,
            callback_url=sub.callback_url, base_url=base_url, notes=[*notes, "api v2"],
            cost=round(PRICE.get((sub.model, sub.resolution), 0.13) * sub.duration, 4))
        info = Meta(
            ratio=ratio,
            image_count=sum(len(sub.media.get(k, ())) for k in (
                "first_frame_image", "last_frame_image", "reference_images")),
            input_seconds=math.ceil(sum(map(_seconds, sub.media.get("reference_videos", ())))),
            audio_seconds=math.ceil(sum(map(_seconds, sub.media.get("reference_audios", ())))))
        with book.lock:
            book.meta[task.id] = info
        sim.state.add_task(task)
        if fail_code is None:
            start_render(task, sub, info)
        follow(task, info, base_url)
        return task

    def follow(task: Task, info: Meta, base_url: str) -> None:
        """v2 callbacks: ``{"task": {...}}`` as a query answers, on each status change."""
        if task.callback_url and sim.sender is not None:
            sim.sender.follow_v2(task, lambda t: {"task": task_body(t, info, base_url)})

    # -- create ----------------------------------------------------------------------------
    @app.post("/v2/video_generation")
    async def v2_submit(request: Request) -> Any:
        ex = V2Exchange(sim, request, MINIMAX, "submit")
        early = await ex.begin()
        if early is not None:
            return early
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > H3_MAX_BODY_BYTES:
            return ex.error(413, "bad_request_error", "request body exceeds 64 MB", 2013)
        raw = await request.body()
        ex.entry["body_sha256"] = hashlib.sha256(raw).hexdigest()
        if len(raw) > H3_MAX_BODY_BYTES:
            return ex.error(413, "bad_request_error", "request body exceeds 64 MB", 2013)
        if sim.fault("v2_server_error"):
            ex.faults.append("v2_server_error")
            return ex.server_error(500)
        limited = ex.rate_limit("submit", sim.config.rpm)
        if limited is not None:
            return limited
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            return ex.rejected(Rejected("invalid params, request body is not valid JSON"))
        if sim.fault("h3_plan_key") and isinstance(body, dict) and body.get("model") in H3_MODELS:
            ex.faults.append("h3_plan_key")
            return ex.error(400, "bad_request_error", PLAN_KEY_MESSAGE.rsplit(" (", 1)[0],
                            2013)
        if sim.config.submit_seconds > 0:
            import asyncio

            await asyncio.sleep(sim.config.submit_seconds)
        try:
            sub = await parse_v2(body, book=book, who=ex.who, client=sim.client,
                                 fetch_timeout=sim.config.image_fetch_timeout)
        except Rejected as exc:
            return ex.rejected(exc)
        task = create(sub, ex.base_url)
        ex.entry.update(task_id=task.id, accepted=True)
        answer = {"task_id": task.id}
        if sim.dice.roll("drop_after_submit", sim.config.drop_after_submit_rate):
            return ex.drop("dropped_after_submit")
        if sim.fault("error_after_accept"):
            ex.faults.append("error_after_accept")
            return ex.server_error(502)
        made_hostile = hostile.submit_answer(ex, answer, task.id, 200)
        if isinstance(made_hostile, Response):
            return made_hostile
        return ex.reply(made_hostile or answer)

    def create_regeneration(sub: V2Submission, base: BaseVideo, base_url: str) -> Task:
        """A regeneration task: the base's ratio and frame count at 2K, the same sound
        (it depends on the prompt and references, as the original's did)."""
        from hailuo.simulator.core import _camera

        config = sim.config
        width, height = h3.frame_size("2k", base.ratio)
        camera, notes = _camera(sub.prompt)
        images = sum(len(sub.media.get(k, ())) for k in (
            "first_frame_image", "last_frame_image", "reference_images"))
        video_seconds = math.ceil(sum(map(_seconds, sub.media.get("reference_videos", ()))))
        cost = (REGENERATION_PRICE * base.duration
                + REGENERATION_IMAGE_PRICE * max(0, images - 5)
                + REGENERATION_VIDEO_PRICE * video_seconds)
        task = Task(
            id=new_minimax_id(), provider=MINIMAX, model="MiniMax-H3", mode=sub.mode,
            resolution="2k", duration=base.duration, width=width, height=height,
            prompt=sub.prompt, created_at=time.time(), queue_seconds=config.queue_seconds,
            render_seconds=config.render_seconds, file_token=secrets.token_urlsafe(18),
            camera=camera, callback_url=sub.callback_url, base_url=base_url,
            notes=[*notes, "api v2", "regeneration"], cost=round(cost, 4))
        info = Meta(ratio="", task_type="regeneration", image_count=images,
                    input_seconds=video_seconds,
                    audio_seconds=math.ceil(sum(map(_seconds,
                                                    sub.media.get("reference_audios", ())))))
        with book.lock:
            book.meta[task.id] = info
        sim.state.add_task(task)
        start_render(task, sub, info)
        follow(task, info, base_url)
        return task

    @app.post("/v2/video_regeneration")
    async def v2_regenerate(request: Request) -> Any:
        ex = V2Exchange(sim, request, MINIMAX, "submit")
        early = await ex.begin()
        if early is not None:
            return early
        raw = await request.body()
        ex.entry["body_sha256"] = hashlib.sha256(raw).hexdigest()
        if len(raw) > H3_MAX_BODY_BYTES:
            return ex.error(413, "bad_request_error", "request body exceeds 64 MB", 2013)
        limited = ex.rate_limit("submit", sim.config.rpm)
        if limited is not None:
            return limited
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            return ex.rejected(Rejected("invalid params, request body is not valid JSON"))
        try:
            sub, base = await parse_regeneration(body, book=book, who=ex.who,
                                                 client=sim.client,
                                                 fetch_timeout=sim.config.image_fetch_timeout)
        except Rejected as exc:
            return ex.rejected(exc)
        task = create_regeneration(sub, base, ex.base_url)
        ex.entry.update(task_id=task.id, accepted=True, regeneration=True)
        if sim.dice.roll("drop_after_submit", sim.config.drop_after_submit_rate):
            return ex.drop("dropped_after_submit")
        return ex.reply({"task_id": task.id})

    # -- query and list ---------------------------------------------------------------------
    async def lookup(request: Request, kind: str) -> tuple[Any, Response | None]:
        ex = V2Exchange(sim, request, MINIMAX, kind)
        early = await ex.begin()
        if early is None:
            early = ex.rate_limit("status", sim.config.status_rpm)
        return ex, early

    @app.get("/v2/query/video_generation/{task_id}")
    async def v2_query(task_id: str, request: Request) -> Any:
        ex, early = await lookup(request, "status")
        if early is not None:
            return early
        ex.entry["task_id"] = task_id
        found = v2_task(task_id)
        if found is None:
            return ex.error(400, "bad_request_error", "invalid params, invalid task_id", 2013)
        task, info = found
        return hostile.status_answer(ex, {"task": task_body(task, info, ex.base_url)}, task.id)

    @app.get("/v2/query/video_generation")
    async def v2_list(request: Request) -> Any:
        ex, early = await lookup(request, "list")
        if early is not None:
            return early
        q = request.query_params
        try:
            page_num = max(1, int(q.get("page_num") or 1))
            page_size = min(100, max(1, int(q.get("page_size") or 20)))
        except ValueError:
            return ex.error(400, "bad_request_error", "invalid params, page_num and page_size "
                            "must be integers", 2013)
        wanted_ids = {t for t in (q.get("filter.task_ids") or "").split(",") if t}
        with book.lock:
            ids = [tid for tid, info in book.meta.items() if not info.deleted]
        rows = []
        week = time.time() - 7 * 86400
        for tid in ids:
            found = v2_task(tid)
            if found is None:
                continue
            task, info = found
            if task.created_at < week:
                continue
            word, _ = status_word(task, info)
            if ((q.get("filter.model") and task.model != q["filter.model"])
                    or (q.get("filter.status") and word != q["filter.status"])
                    or (q.get("filter.task_type") and info.task_type != q["filter.task_type"])
                    or (wanted_ids and tid not in wanted_ids)):
                continue
            rows.append((task, info))
        rows.sort(key=lambda r: r[0].created_at, reverse=True)
        page = rows[(page_num - 1) * page_size: page_num * page_size]
        return ex.reply({"items": [task_body(t, i, ex.base_url) for t, i in page],
                         "total": len(rows)})

    # -- cancel / delete --------------------------------------------------------------------
    @app.delete("/v2/video_generation/{task_id}")
    async def v2_delete(task_id: str, request: Request) -> Any:
        ex = V2Exchange(sim, request, MINIMAX, "cancel")
        early = await ex.begin()
        if early is not None:
            return early
        ex.entry["task_id"] = task_id
        found = v2_task(task_id)
        if found is None:
            return ex.error(400, "bad_request_error", "invalid params, invalid task_id", 2013)
        task, info = found
        word, phase = status_word(task, info)
        if word == "queued":
            with book.lock:
                info.cancelled_at = info.updated_at = time.time()
            with sim.state.lock:
                task.cost = 0.0
            return ex.reply({"task_id": task.id, "action": "cancelled",
                             "status": "cancelled"})
        if word in ("succeeded", "failed"):
            with book.lock:
                info.deleted = True
            return ex.reply({"task_id": task.id, "action": "deleted", "status": word})
        return ex.error(400, "bad_request_error", f"invalid params, a {word} task cannot be "
                        "cancelled or deleted", 2013)

    # -- uploads ----------------------------------------------------------------------------
    @app.post("/v1/files/upload")
    async def files_upload(request: Request) -> Any:
        ex = V2Exchange(sim, request, MINIMAX, "upload")
        early = await ex.begin()
        if early is not None:
            return early
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES + 65536:
            return ex.error(413, "bad_request_error", "file too large", 2013)
        raw = await request.body()
        ex.entry["body_sha256"] = hashlib.sha256(raw).hexdigest()
        fields = _multipart(request.headers.get("content-type", ""), raw)
        if fields is None or "file" not in fields:
            return ex.error(400, "bad_request_error", "invalid params, file is required "
                            "(multipart field \"file\")", 2013)
        data, filename = fields["file"]
        purpose = fields.get("purpose", (b"", ""))[0].decode("utf-8", "replace")
        if not purpose:
            return ex.error(400, "bad_request_error", "invalid params, purpose is required",
                            2013)
        assert ex.who is not None
        stored = Stored(file_id=int(new_minimax_id()), data=data, filename=filename or "file",
                        purpose=purpose, created_at=int(time.time()), who=ex.who)
        book.add_file(stored)
        ex.entry["accepted"] = True
        return ex.reply({"file": {"file_id": stored.file_id, "bytes": len(data),
                                  "created_at": stored.created_at,
                                  "filename": stored.filename, "purpose": purpose},
                         "base_resp": {"status_code": 0, "status_msg": "success"}})

    app.state.v2 = book
    return book


def _multipart(content_type: str, body: bytes) -> dict[str, tuple[bytes, str]] | None:
    """Form fields of a multipart body: name -> (bytes, filename)."""
    if not content_type.lower().startswith("multipart/form-data"):
        return None
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode("latin-1") + body)
    if not message.is_multipart():
        return None
    out: dict[str, tuple[bytes, str]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name:
            out[str(name)] = (part.get_payload(decode=True) or b"", part.get_filename() or "")
    return out
