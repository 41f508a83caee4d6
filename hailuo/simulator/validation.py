"""The provider's own checks on a submit body, in each provider's wire dialect.

Why the simulator validates at all: a client bug that skips (or gets wrong) its local
validation must still be caught, with the same error a real provider would give,
instead of the simulator happily rendering an impossible 1080p 10 s clip. Why strict
about dialects: sending ``"768P"`` to APIMart or ``callback_url`` to APIMart is exactly
the kind of bug that costs money silently, so the other dialect's spellings are refused.
Everything allowed comes from ``hailuo.capabilities``; nothing is hard-coded here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from hailuo.capabilities import Mode, Provider, lookup, models_for, modes_for
from hailuo.errors import InvalidImageError
from hailuo.images import MAX_IMAGE_BYTES, image_bytes, prepare_image
from hailuo.models import MAX_PROMPT_CHARS
from hailuo.providers.base import FAST_PRETREATMENT_MODELS

_APIMART_FIELDS = {"model", "prompt", "duration", "resolution", "first_frame_image",
                   "last_frame_image", "prompt_optimizer", "fast_pretreatment", "watermark",
                   "webhook", "metadata"}
_MINIMAX_FIELDS = {"model", "prompt", "duration", "resolution", "first_frame_image",
                   "last_frame_image", "subject_reference", "prompt_optimizer",
                   "fast_pretreatment", "callback_url", "aigc_watermark"}
_METADATA_FIELDS = ("resolution", "prompt_optimizer", "fast_pretreatment", "watermark")
#: APIMart's answer to a data: URL (docs.apimart.ai uploads page: "we no longer support
#: passing base64 image data directly in generation APIs").
DATA_URL_REFUSED = ("base64 image data is no longer supported in generation APIs; upload the "
                    "image with POST /v1/uploads/images and pass the returned URL")
#: Resolves an image URL the provider itself stores (an upload): bytes, or None when the
#: URL is not one of its own. Raises ``Rejected`` for its own URL that is gone.
LocalImages = Callable[[str, str], bytes | None]
_RESOLUTION = {Provider.APIMART: re.compile(r"^\d{3,4}p$"),
               Provider.MINIMAX: re.compile(r"^\d{3,4}P$")}


class Rejected(Exception):
    """The provider refuses the request; ``message`` is what it tells the client."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass(frozen=True)
class Submission:
    """A validated submit, provider-neutral, with its images as bytes."""

    provider: Provider
    model: str
    mode: Mode
    prompt: str
    resolution: str  # canonical lowercase label actually rendered
    duration: int
    first_frame: bytes | None = None
    last_frame: bytes | None = None
    subject: bytes | None = None
    callback_url: str | None = None
    watermark: bool = False
    prompt_optimizer: bool = True
    fast_pretreatment: bool = False


async def parse_submission(provider: Provider, body: Any, *, fetch_timeout: float = 5.0,
                           client: httpx.AsyncClient | None = None,
                           data_urls: bool = True, undocumented_fields: str = "reject",
                           local_images: LocalImages | None = None) -> Submission:
    """Validate ``body`` in ``provider``'s dialect; raise ``Rejected`` like the provider.

    ``data_urls=False`` refuses base64 images (APIMart today); ``undocumented_fields``
    "reject" refuses ``fast_pretreatment`` for a model that does not document it.
    """
    if not isinstance(body, dict):
        raise Rejected("request body must be a JSON object")
    fields = _dialect_fields(provider, body)

    model = fields.get("model")
    if not isinstance(model, str) or not model:
        raise Rejected("model is required", "model")
    known = models_for(provider)
    if model not in known:
        raise Rejected(f"model {model} is not supported; supported models: {', '.join(known)}",
                       "model")

    prompt = fields.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise Rejected("prompt must be a string", "prompt")
    prompt = prompt or ""
    if len(prompt) > MAX_PROMPT_CHARS:
        raise Rejected(f"prompt is {len(prompt)} characters; the maximum is {MAX_PROMPT_CHARS}",
                       "prompt")

    images = {name: fields.get(name) for name in ("first_frame_image", "last_frame_image")}
    subject_value = _subject_image(fields.get("subject_reference"))
    mode = _mode(images["first_frame_image"], images["last_frame_image"], subject_value)
    cap = lookup(provider, model, mode)
    if cap is None:
        supported = ", ".join(modes_for(provider, model))
        raise Rejected(f"model {model} does not support {mode}; it supports: {supported}",
                       "model")
    if mode is Mode.TEXT_TO_VIDEO and not prompt.strip():
        raise Rejected("prompt is required for text-to-video", "prompt")

    resolution, duration = _resolution_duration(provider, cap, fields)
    if ("fast_pretreatment" in fields and model not in FAST_PRETREATMENT_MODELS
            and undocumented_fields == "reject"):
        raise Rejected(f"fast_pretreatment is not supported by model {model}",
                       "fast_pretreatment")
    flags = {name: _bool(fields, name, default)
             for name, default in (("prompt_optimizer", True), ("fast_pretreatment", False))}
    watermark_field = "watermark" if provider is Provider.APIMART else "aigc_watermark"
    watermark = _bool(fields, watermark_field, False)
    callback_field = "webhook" if provider is Provider.APIMART else "callback_url"
    callback = fields.get(callback_field)
    if callback is not None and (not isinstance(callback, str)
                                 or not callback.startswith(("http://", "https://"))):
        raise Rejected(f"{callback_field} must be an http(s) URL", callback_field)

    loaded: dict[str, bytes | None] = {}
    async with _client(client, fetch_timeout) as http:
        for name, value in (*images.items(), ("subject_reference", subject_value)):
            loaded[name] = None if value is None else await load_image(
                value, name, http, fetch_timeout, data_urls=data_urls, local=local_images)
    return Submission(
        provider=provider, model=model, mode=mode, prompt=prompt, resolution=resolution,
        duration=duration, first_frame=loaded["first_frame_image"],
        last_frame=loaded["last_frame_image"], subject=loaded["subject_reference"],
        callback_url=callback or None, watermark=watermark, **flags,
    )


def _dialect_fields(provider: Provider, body: dict[str, Any]) -> dict[str, Any]:
    """The body's fields, with APIMart's ``metadata`` variant folded in."""
    own, other = ((_APIMART_FIELDS, _MINIMAX_FIELDS) if provider is Provider.APIMART
                  else (_MINIMAX_FIELDS, _APIMART_FIELDS))
    for name in body:
        if name not in own and name in other:
            raise Rejected(f"unknown field {name}", name)
    fields = dict(body)
    if provider is Provider.APIMART and "metadata" in fields:
        metadata = fields.pop("metadata")
        if not isinstance(metadata, dict):
            raise Rejected("metadata must be an object", "metadata")
        for name in _METADATA_FIELDS:
            if name in metadata and name not in fields:
                fields[name] = metadata[name]
    return fields


def _subject_image(value: Any) -> str | None:
    """MiniMax ``subject_reference: [{"type": "character", "image": ["<url>"]}]``."""
    if value is None:
        return None
    shape = 'subject_reference must be [{"type": "character", "image": ["<url>"]}]'
    if not isinstance(value, list) or len(value) != 1 or not isinstance(value[0], dict):
        raise Rejected(f"{shape} with exactly one subject", "subject_reference")
    item = value[0]
    if item.get("type") != "character":
        raise Rejected(f"{shape}: type must be character", "subject_reference")
    image = item.get("image")
    if not isinstance(image, list) or len(image) != 1 or not isinstance(image[0], str):
        raise Rejected(f"{shape}: image must hold one URL", "subject_reference")
    return image[0]


def _mode(first: Any, last: Any, subject: str | None) -> Mode:
    if subject is not None:
        if first is not None or last is not None:
            raise Rejected("subject_reference cannot be combined with first/last frame images",
                           "subject_reference")
        return Mode.SUBJECT_REFERENCE
    if last is not None:
        if first is None:
            raise Rejected("last_frame_image requires first_frame_image", "last_frame_image")
        return Mode.FIRST_LAST_FRAME
    return Mode.IMAGE_TO_VIDEO if first is not None else Mode.TEXT_TO_VIDEO


def _resolution_duration(provider: Provider, cap: Any, fields: dict[str, Any]) -> tuple[str, int]:
    raw_res, duration = fields.get("resolution"), fields.get("duration")
    if duration is not None and (isinstance(duration, bool) or not isinstance(duration, int)):
        raise Rejected("duration must be an integer number of seconds", "duration")
    resolution = None
    if raw_res is not None:
        if not isinstance(raw_res, str) or not _RESOLUTION[provider].match(raw_res):
            example = "768p" if provider is Provider.APIMART else "768P"
            raise Rejected(f"resolution {raw_res!r} is malformed; expected e.g. {example}",
                           "resolution")
        resolution = raw_res.lower()
    spell = (lambda r: r) if provider is Provider.APIMART else (lambda r: r.upper())
    if not cap.options:  # 01-series / S2V-01: fixed 720p, fixed length
        if resolution is not None and resolution != cap.fixed_resolution:
            raise Rejected(f"{cap.model} only supports resolution "
                           f"{spell(cap.fixed_resolution)}", "resolution")
        if duration is not None and duration != cap.fixed_duration:
            raise Rejected(f"{cap.model} only supports duration {cap.fixed_duration}", "duration")
        return cap.fixed_resolution, cap.fixed_duration
    resolution = resolution or cap.default_resolution
    if resolution not in cap.options:
        allowed = ", ".join(spell(r) for r in cap.options)
        raise Rejected(f"resolution {spell(resolution)} is not supported by {cap.model} "
                       f"for {cap.mode}; supported: {allowed}", "resolution")
    allowed_durations = cap.options[resolution]
    if duration is None:
        duration = (cap.default_duration if cap.default_duration in allowed_durations
                    else min(allowed_durations))
    if duration not in allowed_durations:
        raise Rejected(f"duration {duration} is not supported by {cap.model} at "
                       f"{spell(resolution)}; supported: "
                       f"{', '.join(map(str, allowed_durations))}", "duration")
    return resolution, duration


def _bool(fields: dict[str, Any], name: str, default: bool) -> bool:
    value = fields.get(name, default)
    if not isinstance(value, bool):
        raise Rejected(f"{name} must be a boolean", name)
    return value


class _client:
    """Use the caller's client, or a short-lived one."""

    def __init__(self, client: httpx.AsyncClient | None, timeout: float) -> None:
        self.given, self.timeout, self.own = client, timeout, None

    async def __aenter__(self) -> httpx.AsyncClient:
        if self.given is not None:
            return self.given
        self.own = httpx.AsyncClient(timeout=self.timeout, follow_redirects=True)
        return self.own

    async def __aexit__(self, *exc: object) -> None:
        if self.own is not None:
            await self.own.aclose()


async def load_image(value: Any, field: str, client: httpx.AsyncClient,
                     timeout: float = 5.0, *, data_urls: bool = True,
                     local: LocalImages | None = None) -> bytes:
    """Decode a data URL or fetch an http(s) URL, then check it like the provider does.

    A local path is refused: the provider cannot read the client's disk. The checks
    themselves are ``hailuo.images``' (one statement of the documented rules). The
    provider's own uploads are read from its store (``local``), not over HTTP.
    """
    if not isinstance(value, str) or not value.strip():
        raise Rejected(f"{field} must be an image URL or data URL", field)
    value = value.strip()
    try:
        if value.startswith(("http://", "https://")):
            stored = local(value, field) if local is not None else None
            data = stored if stored is not None else await _fetch(value, field, client,
                                                                  timeout)
        elif value[:5].lower() == "data:" and not data_urls:
            raise Rejected(f"{field}: {DATA_URL_REFUSED}", field)
        elif value[:5].lower() == "data:":
            data = image_bytes(value, field=field) or b""
        else:
            raise Rejected(f"{field} must be a public http(s) URL or a data URL", field)
        prepare_image(data, field=field)
    except InvalidImageError as exc:
        raise Rejected(exc.message, field) from None
    return data


async def _fetch(url: str, field: str, client: httpx.AsyncClient, timeout: float) -> bytes:
    try:
        async with client.stream("GET", url, timeout=timeout) as response:
            if response.status_code != 200:
                raise Rejected(f"{field} could not be downloaded (HTTP "
                               f"{response.status_code})", field)
            chunks, total = [], 0
            async for chunk in response.aiter_bytes():
                total += len(chunk)
                if total >= MAX_IMAGE_BYTES:
                    raise Rejected(f"{field} is larger than 20 MB", field)
                chunks.append(chunk)
            return b"".join(chunks)
    except httpx.HTTPError as exc:
        raise Rejected(f"{field} could not be downloaded ({type(exc).__name__})", field) from None
