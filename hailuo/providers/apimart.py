"""APIMart's dialect: lowercase resolutions, ``watermark``, ``webhook``, ``{"code", "data"}``.

What APIMart answers today (``api-contract-v2.md`` section 2), all accepted here:

* Submit answers in three shapes: legacy ``{"code":200,"data":[{"task_id"}]}``, legacy
  ``{"code":200,"data":{"id","status":"pending"}}`` and, with the request header
  ``X-APIMart-Response-Version: 2026-07-27``, HTTP 202 ``{"code":202,"data":{"id",
  "status":"queued"}}`` (a replay of an ``Idempotency-Key`` adds the response header
  ``Idempotency-Replayed: true``).
* Errors as ``{"error":{"code","message","type"}}`` or ``{"success":false,"message"}``;
  bad parameters can come back as HTTP **500** ``build_request_failed``, which is an
  invalid request, not an outage.
* Idempotency verdicts (409 ``idempotency_in_progress`` / ``idempotency_key_reused`` /
  ``idempotency_result_indeterminate``, 503 ``idempotency_unavailable``) with the word in
  ``error.code`` or in ``error.message``.
* ``credits_cost`` is in credits (10 credits = 1 USD); ``cost`` is USD. ``Job.cost`` is USD.
* Local images are uploaded (``POST /v1/uploads/images``, multipart ``file``): generation
  calls no longer accept base64 data URLs.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from hailuo import errors
from hailuo.capabilities import Provider
from hailuo.models import Job, JobStatus, VideoRequest
from hailuo.providers.base import (
    FAST_PRETREATMENT_MODELS,
    Dialect,
    as_int,
    error_for,
    from_unix,
    log,
    status_word,
)

RESPONSE_VERSION = "2026-07-27"
#: 10 APIMart credits are 1 USD.
CREDITS_PER_USD = 10.0
IDEMPOTENCY_WORDS = ("idempotency_in_progress", "idempotency_result_indeterminate",
                     "idempotency_key_reused", "idempotency_unavailable")
_INVALID_WORDS = ("build_request_failed",)
_TRUE_WORDS = {"true", "yes", "on", "supported", "enabled", "required", "optional",
               "honored", "honoured", "available"}
_TRUTHY_KEYS = ("supported", "enabled", "honored", "honoured", "available", "required")
_WORD_KEYS = ("mode", "status", "support", "level", "value")


def _error_parts(body: Any) -> tuple[str, list[str], Any]:
    """(message, words to search, raw code) of an APIMart error body of any known shape."""
    if not isinstance(body, dict):
        return "", [], None
    err = body.get("error")
    if isinstance(err, dict):
        message = str(err.get("message") or err.get("type") or err.get("code") or "")
        words = [str(err.get(k) or "") for k in ("code", "type", "message")]
        return message, words, err.get("code")
    if isinstance(err, str) and err:
        return err, [err, str(body.get("message") or "")], body.get("code")
    message = str(body.get("message") or body.get("msg") or "")
    words = [message, str(body.get("code") or ""), str(body.get("type") or "")]
    return message, words, body.get("code")


def _has_word(words: list[str], candidates: tuple[str, ...]) -> str | None:
    text = " ".join(words).lower()
    return next((w for w in candidates if w in text), None)


def _ok_code(code: Any) -> bool:
    if code in (None, ""):
        return True
    value = as_int(code)
    return value is None or value == 0 or 200 <= value < 300  # a word is not an error code


def _raise_for_error(status_code: int, body: Any, retry_after: float | None,
                     task_id: str | None = None) -> None:
    failed = isinstance(body, dict) and (body.get("success") is False or bool(body.get("error")))
    if status_code < 400 and not failed and (not isinstance(body, dict)
                                             or _ok_code(body.get("code"))):
        return
    message, words, raw_code = _error_parts(body)
    message = message or f"APIMart answered HTTP {status_code}"
    if _has_word(words, _INVALID_WORDS):
        # APIMart reports bad parameters as HTTP 500 build_request_failed: never retried.
        raise errors.InvalidRequestError(f"APIMart: {message} (build_request_failed: the "
                                         "request's parameters were refused)",
                                         http_status=status_code, task_id=task_id)
    code = as_int(raw_code)
    if code is not None and code == status_code:
        code = None  # APIMart repeats the HTTP status as "code"; keep provider codes only
    if (status_code < 400 and isinstance(body, dict) and body.get("success") is False
            and code is None):
        # {"success": false, "message": ...}: a definite refusal, its message kept.
        raise errors.RequestRefusedError(f"APIMart: {message}", http_status=status_code,
                                         task_id=task_id)
    raise error_for(message=f"APIMart: {message}", code=code, http_status=status_code,
                    retry_after=retry_after, task_id=task_id)


def _urls(data: dict[str, Any]) -> tuple[list[str], datetime | None]:
    urls: list[str] = []
    expires = None
    result = data.get("result") if isinstance(data.get("result"), dict) else {}
    for video in result.get("videos") or []:
        if not isinstance(video, dict):
            continue
        url = video.get("url")
        found = url if isinstance(url, list) else [url] if url else []
        urls.extend(str(u) for u in found if isinstance(u, str) and u)
        expires = expires or from_unix(video.get("expires_at"))
    return urls, expires


def cost_usd(data: Mapping[str, Any]) -> float | None:
    """The task's cost in USD: ``cost`` is USD, ``credits_cost`` is credits (10 = 1 USD)."""
    cost = data.get("cost")
    if isinstance(cost, int | float) and not isinstance(cost, bool):
        return float(cost)
    credits = data.get("credits_cost")
    if isinstance(credits, int | float) and not isinstance(credits, bool):
        return round(float(credits) / CREDITS_PER_USD, 6)
    return None


def idempotency_supported(value: Any) -> bool:
    """Whether a model-schema ``idempotency`` value says the key is honoured.

    Seen or plausible shapes: a boolean, a word (``"supported"``), an object
    (``{"supported": true, "header": "Idempotency-Key"}``). Anything else, or nothing,
    is "not confirmed".
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.strip().lower() in _TRUE_WORDS
    if isinstance(value, dict):
        for key in _TRUTHY_KEYS:
            if key in value:
                return idempotency_supported(value[key])
        for key in _WORD_KEYS:
            if isinstance(value.get(key), str):
                return idempotency_supported(value[key])
    return False


class ApimartDialect(Dialect):
    provider = Provider.APIMART
    submit_path = "/v1/videos/generations"
    upload_path = "/v1/uploads/images"
    schema_path = "/v1/model-schema"
    sends_idempotency_key = True
    uploads_images = True

    def submit_headers(self, idempotency_key: str) -> dict[str, str]:
        return {"Idempotency-Key": idempotency_key,
                "X-APIMart-Response-Version": RESPONSE_VERSION,
                "Accept": "application/json"}

    def submit_body(self, request: VideoRequest, images: Mapping[str, str]) -> dict[str, Any]:
        body: dict[str, Any] = {"model": request.model}
        if request.prompt:
            body["prompt"] = request.prompt
        if request.duration is not None:
            body["duration"] = request.duration
        if request.resolution is not None:
            body["resolution"] = request.resolution.lower()
        for name in ("first_frame_image", "last_frame_image"):
            if name in images:
                if images[name][:5].lower() == "data:":  # APIMart refuses base64 images
                    raise errors.InvalidImageError(
                        f"{name}: APIMart takes no data: URLs; upload the image first "
                        "(HailuoClient.submit does)", field=name)
                body[name] = images[name]
        body["prompt_optimizer"] = request.prompt_optimizer
        if request.model in FAST_PRETREATMENT_MODELS:
            body["fast_pretreatment"] = request.fast_pretreatment
        elif request.fast_pretreatment:
            log.warning("fast_pretreatment is not documented for %s; not sent", request.model)
        body["watermark"] = request.watermark
        if request.callback_url:
            body["webhook"] = request.callback_url
        return body

    def idempotency_signal(self, status_code: int, body: Any) -> str | None:
        if status_code < 400:
            return None
        _, words, _ = _error_parts(body)
        return _has_word(words, IDEMPOTENCY_WORDS)

    def parse_submit(self, status_code: int, body: Any, retry_after: float | None) -> Job:
        _raise_for_error(status_code, body, retry_after)
        data = body.get("data") if isinstance(body, dict) else None
        if isinstance(data, list):  # legacy shape: {"data": [{"status", "task_id"}]}
            data = data[0] if data else None
        if not isinstance(data, dict) or not (data.get("task_id") or data.get("id")):
            raise error_for(message="APIMart submit answer carried no task id",
                            http_status=status_code)
        task_id = str(data.get("task_id") or data.get("id"))
        info = data.get("task_info") if isinstance(data.get("task_info"), dict) else {}
        urls, expires = _urls(data)
        return Job(
            task_id=task_id,
            provider=self.provider,
            status=status_word(data.get("status") or "submitted", task_id=task_id,
                               default=JobStatus.QUEUED),
            progress=as_int(data.get("progress")),
            estimated_time=info.get("estimated_time") or data.get("estimated_time"),
            video_urls=urls,
            expires_at=expires,
        )

    def status_call(self, task_id: str) -> tuple[str, dict[str, str]]:
        return f"/v1/tasks/{task_id}", {}

    def parse_status(self, task_id: str, status_code: int, body: Any,
                     retry_after: float | None, *, lenient: bool = False) -> Job:
        _raise_for_error(status_code, body, retry_after, task_id)
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            raise error_for(message="APIMart status answer carried no data",
                            http_status=status_code, task_id=task_id)
        status = status_word(data.get("status") or "pending", task_id=task_id,
                             lenient=lenient)
        urls, expires = _urls(data)
        error = data.get("error") if isinstance(data.get("error"), dict) else {}
        failed = status in (JobStatus.FAILED, JobStatus.CANCELLED)
        return Job(
            task_id=str(data.get("id") or task_id),
            provider=self.provider,
            status=status,
            progress=as_int(data.get("progress")),
            estimated_time=data.get("estimated_time"),
            video_urls=urls,
            expires_at=expires,
            error_code=as_int(error.get("code")) if failed else None,
            error_message=error.get("message") if failed else None,
            cost=cost_usd(data),
            submitted_at=from_unix(data.get("created")),
        )

    # -- uploads (POST /v1/uploads/images) ------------------------------------------
    def parse_upload(self, status_code: int, body: Any, retry_after: float | None,
                     field: str) -> tuple[str, datetime | None]:
        """(url, expires_at if the answer says) of an image upload, or the typed error.

        The answer has no envelope: ``{"url", "filename", "content_type", "bytes",
        "created_at"}``; a 400 (missing file, unsupported format) or 413 (over 20 MB) is
        the image's fault and names the field.
        """
        if status_code in (400, 413, 415, 422):
            message, _, _ = _error_parts(body)
            raise errors.InvalidImageError(
                f"{field}: APIMart refused the image upload (HTTP {status_code}): "
                f"{message or 'invalid image'}", field=field, http_status=status_code)
        _raise_for_error(status_code, body, retry_after)
        data = body if isinstance(body, dict) else {}
        if isinstance(data.get("data"), dict) and "url" not in data:
            data = data["data"]
        url = data.get("url")
        if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
            raise errors.ProviderUnavailableError(
                "APIMart image upload answer carried no http(s) url", http_status=status_code)
        return url, from_unix(data.get("expires_at"))

    # -- model schema (GET /v1/model-schema) ----------------------------------------
    def schema_call(self, model: str) -> tuple[str, dict[str, str]]:
        return self.schema_path, {"model": model, "operation": "video_generation"}

    def parse_schema_idempotency(self, status_code: int, body: Any) -> bool | None:
        """True/False from a model-schema answer; None when the answer is not usable."""
        if status_code >= 400 or not isinstance(body, dict):
            return None
        if isinstance(body.get("data"), dict) and "idempotency" not in body:
            body = body["data"]
        if body.get("success") is False or body.get("error"):
            return None
        return idempotency_supported(body.get("idempotency"))
