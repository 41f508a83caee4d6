"""Image generation: MiniMax ``image-01`` (sync) and APIMart's image models (async tasks).

MiniMax (api-contract-v2.md 5.1): ``POST /v1/image_generation`` answers at once with
``data.image_urls[]`` (links live 24 h) or ``data.image_base64[]``; success and failure
counts may be strings under ``metadata`` or numbers under ``data``. Images blocked by the
safety filter are simply missing, so fewer than ``n`` can come back with status 0, and
**an empty list with status 0 is a failure** (``ContentRejectedError``): nothing usable
was made.

APIMart (5.3): ``POST /v1/images/generations`` starts a task (legacy list, legacy
object or 2026-07-27 shapes), sent with an ``Idempotency-Key`` derived from the request's
identity; ``GET /v1/tasks/{id}`` is polled until ``result.images[].url`` (a string or a
list) appears.

Checked locally first, naming the field: model per provider, prompt length, aspect ratio
from the documented list **or** width/height (image-01 only, both, 512-2048, multiples of
8 - never both, since the provider would silently ignore width/height), ``n`` per model,
style (image-01-live only). Every image that comes back is opened with Pillow, must pass
the same checks as a video's first frame (``hailuo.images.check_image``), and is written
atomically.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import logging
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from hailuo import errors, pricing
from hailuo.capabilities import Provider
from hailuo.errors import InvalidRequestError
from hailuo.files import atomic_output
from hailuo.ids import check_id
from hailuo.images import check_image, prepare_image
from hailuo.mediaclient import MediaHTTP, media_fingerprint, minimax_error
from hailuo.models import JobStatus, parse_status, utcnow
from hailuo.providers.apimart import (
    IDEMPOTENCY_WORDS,
    RESPONSE_VERSION,
    _error_parts,
    _has_word,
    _raise_for_error,
)
from hailuo.providers.base import as_int, from_unix

log = logging.getLogger("hailuo.imagegen")

MINIMAX_IMAGE_PATH = "/v1/image_generation"
APIMART_IMAGE_PATH = "/v1/images/generations"
MINIMAX_MODELS = ("image-01", "image-01-live")
APIMART_MODELS = ("gpt-image-2", "gemini-3-pro-image-preview",
                  "gemini-3.1-flash-image-preview", "qwen-image-2.0", "qwen-image-2.0-pro")
DEFAULT_MODELS = {Provider.MINIMAX: "image-01", Provider.APIMART: "gpt-image-2"}
#: image-01 aspect ratios and the pixels each gives (5.1).
MINIMAX_RATIOS: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024), "16:9": (1280, 720), "4:3": (1152, 864), "3:2": (1248, 832),
    "2:3": (832, 1248), "3:4": (864, 1152), "9:16": (720, 1280), "21:9": (1344, 576)}
_APIMART_RATIOS: dict[str, tuple[str, ...]] = {
    "gpt-image-2": ("auto", "1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "5:4", "4:5",
                    "2:1", "1:2", "21:9", "9:21"),
    "gemini-3-pro-image-preview": ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16",
                                   "16:9", "21:9"),
    "gemini-3.1-flash-image-preview": ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4",
                                       "9:16", "16:9", "21:9", "1:4", "4:1", "1:8", "8:1"),
    "qwen-image-2.0": ("1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3"),
    "qwen-image-2.0-pro": ("1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3"),
}
_MAX_N = {"image-01": 9, "image-01-live": 9, "gpt-image-2": 1,
          "gemini-3-pro-image-preview": 1, "gemini-3.1-flash-image-preview": 1,
          "qwen-image-2.0": 6, "qwen-image-2.0-pro": 6}
_RESOLUTIONS = {"gemini-3-pro-image-preview": ("1K", "2K", "4K"),
                "gemini-3.1-flash-image-preview": ("0.5K", "1K", "2K", "4K"),
                "qwen-image-2.0": ("1K", "2K"), "qwen-image-2.0-pro": ("1K", "2K"),
                "gpt-image-2": ("1K", "2K", "4K")}
STYLES = ("漫画", "元气", "中世纪", "水彩")
_SUFFIX = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}


class ImageRequest(BaseModel):
    """One text-to-image request. ``validated_for(provider)`` checks it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt: str
    model: str | None = Field(None, description="None: image-01 on MiniMax, gpt-image-2 on "
                              "APIMart.")
    aspect_ratio: str | None = Field(None, description="e.g. 16:9; None with no width/height "
                                     "takes 1:1.")
    width: int | None = Field(None, description="image-01 only, with height: 512-2048, a "
                              "multiple of 8.")
    height: int | None = None
    n: int = Field(1, description="Images to make (image-01: 1-9).")
    response_format: Literal["url", "base64"] = "url"
    seed: int | None = None
    prompt_optimizer: bool = False
    watermark: bool = False
    style_type: str | None = Field(None, description="image-01-live only.")
    style_weight: float | None = None
    subject_reference: str | None = Field(None, description="A character image (MiniMax: "
                                          "URL, data URL or local path; APIMart: URL).")
    resolution: str | None = Field(None, description="APIMart models: 1K, 2K, ...")
    negative_prompt: str | None = Field(None, description="qwen-image models only.")

    def validated_for(self, provider: Provider | str) -> ImageRequest:
        provider = Provider(provider)
        model = self.model or DEFAULT_MODELS[provider]
        allowed = MINIMAX_MODELS if provider is Provider.MINIMAX else APIMART_MODELS
        if model not in allowed:
            raise InvalidRequestError(f"{model!r} is not offered by {provider}; allowed: "
                                      f"{', '.join(allowed)}", field="model")
        prompt = (self.prompt or "").strip()
        limit = 800 if model.startswith("qwen") else 1500
        if not prompt:
            raise InvalidRequestError("prompt is empty", field="prompt")
        if len(prompt) > limit:
            raise InvalidRequestError(f"prompt is {len(prompt)} characters; {model} takes "
                                      f"at most {limit}", field="prompt")
        if not 1 <= self.n <= _MAX_N[model]:
            raise InvalidRequestError(f"{self.n} images: {model} makes 1 to {_MAX_N[model]} "
                                      "per request", field="n")
        ratio = self.aspect_ratio
        sized = self.width is not None or self.height is not None
        if sized:
            if model != "image-01":
                raise InvalidRequestError(f"width/height are only for image-01, not {model}; "
                                          "use aspect_ratio", field="width")
            if ratio is not None:
                raise InvalidRequestError("give aspect_ratio or width/height, not both (the "
                                          "provider would ignore width/height)", field="width")
            for name in ("width", "height"):
                value = getattr(self, name)
                if value is None:
                    raise InvalidRequestError("width and height go together: set both",
                                              field=name)
                if not 512 <= value <= 2048 or value % 8:
                    raise InvalidRequestError(f"{value} must be 512-2048 and a multiple of 8",
                                              field=name)
        elif provider is Provider.MINIMAX:
            ratio = ratio or "1:1"
            if ratio not in MINIMAX_RATIOS or (ratio == "21:9" and model != "image-01"):
                ok = [r for r in MINIMAX_RATIOS if r != "21:9" or model == "image-01"]
                raise InvalidRequestError(f"{ratio!r} is not offered by {model}; allowed: "
                                          f"{', '.join(ok)}", field="aspect_ratio")
        else:
            ratio = ratio or "1:1"
            if ratio not in _APIMART_RATIOS[model]:
                raise InvalidRequestError(f"{ratio!r} is not offered by {model}; allowed: "
                                          f"{', '.join(_APIMART_RATIOS[model])}",
                                          field="aspect_ratio")
        if (self.style_type or self.style_weight is not None) and model != "image-01-live":
            raise InvalidRequestError(f"style is only for image-01-live, not {model}",
                                      field="style_type")
        if self.style_type is not None and self.style_type not in STYLES:
            raise InvalidRequestError(f"{self.style_type!r}: allowed {', '.join(STYLES)}",
                                      field="style_type")
        if self.style_weight is not None and not 0 < self.style_weight <= 1:
            raise InvalidRequestError(f"{self.style_weight} is outside (0, 1]",
                                      field="style_weight")
        if provider is Provider.MINIMAX:
            for name in ("resolution", "negative_prompt"):
                if getattr(self, name) is not None:
                    raise InvalidRequestError(f"{name} is an APIMart field; image-01 takes "
                                              "aspect_ratio or width/height", field=name)
        else:
            if self.response_format != "url":
                raise InvalidRequestError("APIMart answers with URLs only",
                                          field="response_format")
            if self.resolution is not None and self.resolution.upper() not in _RESOLUTIONS.get(
                    model, ()):
                raise InvalidRequestError(f"{self.resolution!r}: {model} offers "
                                          f"{', '.join(_RESOLUTIONS.get(model, ())) or 'none'}",
                                          field="resolution")
            if self.negative_prompt is not None and not model.startswith("qwen"):
                raise InvalidRequestError(f"negative_prompt is only for qwen-image models, "
                                          f"not {model}", field="negative_prompt")
            if self.subject_reference and not self.subject_reference.lower().startswith(
                    ("http://", "https://")):
                raise InvalidRequestError("APIMart takes reference images as URLs only "
                                          "(upload the file first)", field="subject_reference")
            if self.seed is not None or self.prompt_optimizer:
                name = "seed" if self.seed is not None else "prompt_optimizer"
                raise InvalidRequestError(f"{name} is a MiniMax image-01 field", field=name)
        if self.subject_reference:
            check_image(self.subject_reference, field="subject_reference")
        return self.model_copy(update={"model": model, "prompt": prompt,
                                       "aspect_ratio": None if sized else ratio})

    def expected_size(self) -> tuple[int, int] | None:
        """The pixels a validated MiniMax request gives (None: not documented)."""
        if self.width and self.height:
            return self.width, self.height
        if self.model in MINIMAX_MODELS and self.aspect_ratio in MINIMAX_RATIOS:
            return MINIMAX_RATIOS[self.aspect_ratio]
        return None

    def quote(self, provider: Provider | str) -> pricing.PriceQuote:
        checked = self.validated_for(provider)
        return pricing.image_quote(checked.model or "", checked.n, provider)

    def body(self, provider: Provider | str) -> dict[str, Any]:
        """The wire body for a validated request."""
        if Provider(provider) is Provider.APIMART:
            body: dict[str, Any] = {"model": self.model, "prompt": self.prompt,
                                    "size": self.aspect_ratio, "n": self.n}
            if self.resolution:
                body["resolution"] = self.resolution
            if self.negative_prompt:
                body["negative_prompt"] = self.negative_prompt
            if self.subject_reference:
                body["image_urls"] = [self.subject_reference]
            return body
        body = {"model": self.model, "prompt": self.prompt, "n": self.n,
                "response_format": self.response_format,
                "prompt_optimizer": self.prompt_optimizer}
        if self.aspect_ratio:
            body["aspect_ratio"] = self.aspect_ratio
        else:
            body["width"], body["height"] = self.width, self.height
        if self.seed is not None:
            body["seed"] = self.seed
        if self.watermark:
            body["aigc_watermark"] = True
        if self.style_type:
            body["style"] = {"style_type": self.style_type,
                             "style_weight": self.style_weight or 0.8}
        if self.subject_reference:
            body["subject_reference"] = [{
                "type": "character",
                "image_file": prepare_image(self.subject_reference,
                                            field="subject_reference")}]
        return body

    def fingerprint(self, provider: Provider | str, take: int = 1) -> str:
        return media_fingerprint("image", self.validated_for(provider), provider, take,
                                 image_fields=("subject_reference",))


class ImageAnswer(BaseModel):
    """A finished answer: image bytes (base64 mode) or URLs, and the counts."""

    model_config = ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")

    fingerprint: str
    request: ImageRequest
    provider: Provider
    urls: list[str] = Field(default_factory=list)
    data: list[bytes] = Field(default_factory=list)
    success_count: int | None = None
    failed_count: int | None = None
    task_id: str | None = None
    expires_at: datetime | None = None
    cost: float | None = None
    simulated: bool = False
    received_at: datetime = Field(default_factory=utcnow)


class GeneratedImage(BaseModel):
    path: Path
    format: str
    width: int
    height: int
    sha256: str
    size: int


class ImageResult(BaseModel):
    """The images on disk, each opened with Pillow and checked like a first frame."""

    fingerprint: str
    provider: Provider
    model: str
    prompt: str
    images: list[GeneratedImage]
    requested: int
    failed_count: int = 0
    expected_size: tuple[int, int] | None = None
    cost_usd: float
    cost_basis: str
    task_id: str | None = None
    simulated: bool = False

    @property
    def paths(self) -> list[Path]:
        return [image.path for image in self.images]


def _count(*values: Any) -> int | None:
    for value in values:
        number = as_int(value)
        if number is not None:
            return number
    return None


def parse_minimax_images(body: Any, request: ImageRequest, fingerprint: str, *,
                         simulated: bool = False) -> ImageAnswer:
    data = body.get("data") if isinstance(body, dict) else None
    data = data if isinstance(data, dict) else {}
    meta = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
    urls = [u for u in data.get("image_urls") or [] if isinstance(u, str) and u]
    blobs: list[bytes] = []
    for item in data.get("image_base64") or []:
        if not isinstance(item, str):
            continue
        text = item.split(",", 1)[1] if item.startswith("data:") else item
        try:
            blobs.append(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError):
            raise errors.ProviderAnswerError("MiniMax image answer: image_base64 holds "
                                             "something that is not base64") from None
    success = _count(meta.get("success_count"), data.get("success_count"))
    failed = _count(meta.get("failed_count"), data.get("failed_count"))
    ident = str(body.get("id") or "") or None
    if not urls and not blobs:
        blocked = failed if failed is not None else request.n
        raise errors.ContentRejectedError(
            f"MiniMax image generation answered status 0 with no images ({blocked} of "
            f"{request.n} blocked by the safety filter); nothing usable was made. Change "
            "the prompt", code=1026, task_id=ident, failed_count=failed)
    return ImageAnswer(fingerprint=fingerprint, request=request, provider=Provider.MINIMAX,
                       urls=urls, data=blobs, success_count=success, failed_count=failed,
                       task_id=ident, simulated=simulated)


def _apimart_problem(status: int, body: Any, retry_after: float | None
                     ) -> errors.HailuoError | None:
    """APIMart's answer to a submit as an error (or None): ``idempotency_in_progress``
    becomes a wait-and-resend (same key, same body), ``idempotency_unavailable`` a
    not-executed 503, the other verdicts an ambiguous submit."""
    if status >= 400:
        _, words, _ = _error_parts(body)
        word = _has_word(words, IDEMPOTENCY_WORDS)
        if word == "idempotency_in_progress":
            return errors.RateLimitedError(f"APIMart: {word}", retry_after=retry_after or 1.0,
                                           http_status=status)
        if word == "idempotency_unavailable":
            return errors.ProviderUnavailableError(f"APIMart: {word} (not executed)",
                                                   http_status=503, retry_after=retry_after)
        if word:
            return errors.AmbiguousSubmitError(
                f"APIMart answered {word} to the image request: an earlier request with "
                "this Idempotency-Key may have been billed; reconcile in the APIMart console "
                "before changing the request", http_status=status)
    try:
        _raise_for_error(status, body, retry_after)
    except errors.HailuoError as exc:
        return exc
    return None


def _apimart_images(data: dict[str, Any]) -> tuple[list[str], datetime | None]:
    result = data.get("result") if isinstance(data.get("result"), dict) else {}
    urls: list[str] = []
    expires = None
    for image in result.get("images") or []:
        if isinstance(image, str):
            urls.append(image)
            continue
        if not isinstance(image, dict):
            continue
        url = image.get("url")
        found = url if isinstance(url, list) else [url] if url else []
        urls.extend(u for u in found if isinstance(u, str) and u)
        expires = expires or from_unix(image.get("expires_at"))
    return urls, expires


class ImageClient(MediaHTTP):
    """Images from MiniMax (sync) or APIMart (async task). ``generate(request, path)``."""

    call_deadline = 300.0
    read_timeout = 240.0

    def __init__(self, provider: Provider | str = Provider.MINIMAX, api_key: Any = None,
                 base_url: str | None = None, *, poll_interval: float = 2.0,
                 max_poll_interval: float = 10.0, wait_timeout: float = 600.0,
                 **kw: Any) -> None:
        super().__init__(provider, api_key, base_url, **kw)
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.wait_timeout = wait_timeout

    def call(self, request: ImageRequest, *, take: int = 1) -> ImageAnswer:
        """One paid request (submit and wait on APIMart); images not yet verified."""
        checked = request.validated_for(self.provider)
        fingerprint = media_fingerprint("image", checked, self.provider, take,
                                        image_fields=("subject_reference",))
        note = f" (about ${checked.quote(self.provider).usd})"
        if self.provider is Provider.MINIMAX:
            return self.paid_answer(
                MINIMAX_IMAGE_PATH, checked.body(self.provider), what="image generation",
                fingerprint=fingerprint, cost_note=note,
                parse_error=lambda s, b, r: minimax_error(s, b, r, what="image"),
                parse=lambda answer, simulated: parse_minimax_images(
                    answer, checked, fingerprint, simulated=simulated))
        key = f"hailuo-img-{fingerprint[:40]}-{take}"
        answer, response = self.paid_post(
            APIMART_IMAGE_PATH, checked.body(self.provider), what="image generation",
            fingerprint=fingerprint, cost_note=note, parse_error=_apimart_problem,
            headers={"Idempotency-Key": key, "X-APIMart-Response-Version": RESPONSE_VERSION,
                     "Accept": "application/json"})
        simulated = self.simulated(response)
        data = answer.get("data") if isinstance(answer, dict) else None
        if isinstance(data, list):
            data = data[0] if data else None
        if not isinstance(data, dict):
            raise errors.AmbiguousSubmitError(
                "APIMart answered the image request without a task; it may have been "
                f"billed. Request fingerprint: {fingerprint}", request_fingerprint=fingerprint,
                idempotency_key=key)
        urls, expires = _apimart_images(data)
        task_id = str(data.get("task_id") or data.get("id") or "") or None
        if not urls:
            if not task_id:
                raise errors.AmbiguousSubmitError(
                    "APIMart answered the image request without a task id; it may have been "
                    f"billed. Idempotency-Key {key!r}; request fingerprint: {fingerprint}",
                    request_fingerprint=fingerprint, idempotency_key=key)
            check_id(task_id, what="task id")
            urls, expires, cost, simulated = self.wait(task_id)
        else:
            cost = None
        return ImageAnswer(fingerprint=fingerprint, request=checked, provider=self.provider,
                           urls=urls, success_count=len(urls),
                           failed_count=max(0, checked.n - len(urls)), task_id=task_id,
                           expires_at=expires, cost=cost, simulated=simulated)

    def wait(self, task_id: str) -> tuple[list[str], datetime | None, float | None, bool]:
        """Poll an APIMart image task until it ends; (urls, expiry, cost, simulated)."""
        from hailuo.providers.apimart import cost_usd

        deadline = time.monotonic() + self.wait_timeout
        delay = self.poll_interval
        while True:
            status, body, retry_after, response = self.get_json(
                f"/v1/tasks/{quote(task_id, safe='')}", what="image task status")
            problem = _apimart_problem(status, body, retry_after)
            if problem is not None and not isinstance(problem, errors.RateLimitedError):
                problem.task_id = problem.task_id or task_id
                raise self._clean(problem)
            data = body.get("data") if isinstance(body, dict) else None
            if problem is None and isinstance(data, dict):
                answered = str(data.get("id") or data.get("task_id") or task_id)
                if answered != task_id:
                    raise errors.TaskIdMismatchError(
                        f"APIMart answered about task {answered[:40]} when asked about "
                        f"{task_id}", task_id=task_id, answered_id=answered[:40])
                try:
                    state = parse_status(str(data.get("status") or "pending"))
                except ValueError:
                    state = JobStatus.PROCESSING
                if state is JobStatus.COMPLETED:
                    urls, expires = _apimart_images(data)
                    if not urls:
                        raise errors.ContentRejectedError(
                            "APIMart image task completed without images (blocked by the "
                            "safety filter?)", task_id=task_id)
                    return urls, expires, cost_usd(data), self.simulated(response)
                if state.terminal:
                    error = data.get("error") if isinstance(data.get("error"), dict) else {}
                    code = as_int(error.get("code"))
                    message = self.scrub(error.get("message") or state.value)
                    cls = (errors.ContentRejectedError
                           if code in (1026, 1027) or error.get("type") ==
                           "content_policy_violation" else errors.GenerationFailedError)
                    raise cls(f"APIMart image task {state.value}: {message}", code=code,
                              task_id=task_id)
            if time.monotonic() >= deadline:
                raise errors.TimedOutError(f"image task still running after "
                                           f"{self.wait_timeout:.0f}s", task_id=task_id)
            self._sleep(max(delay, retry_after or 0.0))
            delay = min(delay * 1.5, self.max_poll_interval)

    def fetch(self, answer: ImageAnswer, path: str | os.PathLike[str]) -> ImageResult:
        """Write every image of ``answer``: ``path`` itself for one image (its suffix set by
        the real format), ``<stem>-<i>`` for several. Each is opened with Pillow and must
        pass the first-frame checks."""
        request = answer.request
        blobs = list(answer.data) or [
            self.fetch_url(url, what=f"image {i + 1} of {len(answer.urls)}")
            for i, url in enumerate(answer.urls)]
        dest = Path(path)
        expected = request.expected_size()
        images: list[GeneratedImage] = []
        for index, blob in enumerate(blobs, start=1):
            fmt, width, height = _verify(blob, index)
            if expected and (width, height) != expected:
                log.warning("image %d is %dx%d; %dx%d was asked for", index, width, height,
                            *expected)
            stem = dest.stem if len(blobs) == 1 else f"{dest.stem}-{index}"
            target = dest.with_name(f"{stem}{_SUFFIX[fmt]}")
            with atomic_output(target) as tmp:
                tmp.write_bytes(blob)
            images.append(GeneratedImage(path=target, format=fmt, width=width, height=height,
                                         sha256=hashlib.sha256(blob).hexdigest(),
                                         size=len(blob)))
        quote_ = pricing.image_quote(request.model or "", request.n, answer.provider)
        failed = answer.failed_count if answer.failed_count is not None else max(
            0, request.n - len(images))
        if failed:
            log.warning("%d of %d images were not delivered (safety filter)", failed,
                        request.n)
        return ImageResult(
            fingerprint=answer.fingerprint, provider=answer.provider,
            model=request.model or "", prompt=request.prompt, images=images,
            requested=request.n, failed_count=failed, expected_size=expected,
            cost_usd=float(quote_.usd), cost_basis=quote_.basis, task_id=answer.task_id,
            simulated=answer.simulated)

    def generate(self, request: ImageRequest, path: str | os.PathLike[str], *,
                 take: int = 1) -> ImageResult:
        return self.fetch(self.call(request, take=take), path)


def _verify(blob: bytes, index: int) -> tuple[str, int, int]:
    """(format, width, height) of a generated image that decodes fully and passes the
    first-frame checks; ``InvalidImageError`` otherwise."""
    field = f"generated image {index}"
    checked = check_image(blob, field=field)
    try:
        with Image.open(io.BytesIO(blob)) as image:
            image.load()
            width, height = image.size
    except (OSError, ValueError) as exc:
        raise errors.InvalidImageError(f"{field}: does not decode ({exc})",
                                       field=field) from None
    return checked.format or "png", width, height


__all__ = ["APIMART_MODELS", "DEFAULT_MODELS", "GeneratedImage", "ImageAnswer",
           "ImageClient", "ImageRequest", "ImageResult", "MINIMAX_MODELS", "MINIMAX_RATIOS",
           "parse_minimax_images"]
