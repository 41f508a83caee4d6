"""MiniMax's video v2 dialect (MiniMax-H3 / MiniMax-H3-Max), api-contract-v2.md section 1.

No I/O here: ``hailuo.v2client`` does the HTTP through ``HailuoClient``'s helpers.

How v2 differs from v1 (``hailuo.providers.minimax``), all handled here:

* ``POST /v2/video_generation`` takes ``content[]`` items with roles (text, first_frame,
  last_frame, reference_image, reference_video, reference_audio), ``resolution``
  (``768P`` / ``2K`` / ``480P``), an integer ``duration`` and ``ratio``; none of
  ``prompt`` / ``prompt_optimizer`` / ``fast_pretreatment`` / ``first_frame_image`` /
  ``subject_reference`` / ``seed`` exist. The answer is ``{"task_id": "<decimal string>"}``.
* ``GET /v2/query/video_generation/{task_id}``: the id is a PATH segment (escaped by the
  client). The ``?task_id=`` form hits the LIST endpoint, which ignores it and answers
  other tasks: an answer shaped like a list is refused, never read as our task.
* Statuses are lowercase (``queued running succeeded failed cancelled``, ``expired`` as
  terminal); the result is ``task.content.url``, time-limited: querying again gives a
  fresh one. ``task.error.code`` is a string.
* Errors carry a real HTTP status and ``{"type":"error","error":{"type","message",
  "http_code"}}``; the internal code is the number in the message's trailing parentheses.
  A v1-style ``base_resp`` with a non-zero code inside an HTTP 200 is an error too.
  ``2013`` about a Token Plan / Credit key is :class:`PlanKeyError` (an authentication
  problem, not a bad request); ``1004`` / ``2049`` are region/key errors (the client adds
  which host to try).
* ``GET /v2/query/video_generation?page_num&page_size&filter.*`` lists tasks of the last
  7 days; ``DELETE /v2/video_generation/{task_id}`` cancels a queued task (not charged) or
  deletes a finished one.
* ``POST /v1/files/upload`` (multipart, ``purpose``) stores a local medium too large for
  the 64 MB body; the create then refers to it as ``mm_file://<file_id>``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from hailuo import errors
from hailuo.capabilities import Provider
from hailuo.ids import check_id
from hailuo.models import Job, JobStatus, VideoRequest
from hailuo.providers.base import as_int, error_for, from_unix, status_word

SUBMIT_PATH = "/v2/video_generation"
QUERY_PATH = "/v2/query/video_generation"
CANCEL_PATH = "/v2/video_generation"
UPLOAD_PATH = "/v1/files/upload"
#: Regenerate a finished MiniMax-H3 768P output at 2K (api-contract-v2.md 1.10).
REGENERATION_PATH = "/v2/video_regeneration"
#: The base video's role: only on ``/v2/video_regeneration``.
BASE_VIDEO_ROLE = "base_video"
#: ``purpose`` of a media upload. The contract names no value for v2 inputs: this is the
#: purpose MiniMax's own video files carry (api-contract.md files/retrieve); unconfirmed.
UPLOAD_PURPOSE = "video_generation"
MM_FILE = "mm_file://"
#: Words of the v2 ``error.type`` and the errors they mean when no code is given.
_TYPE_ERRORS: dict[str, type[errors.HailuoError]] = {
    "bad_request_error": errors.InvalidRequestError,
    "authorized_error": errors.AuthenticationError,
    "insufficient_balance_error": errors.InsufficientBalanceError,
    "unprocessable_entity_error": errors.ContentRejectedError,
    "rate_limit_error": errors.RateLimitedError,
    "server_error": errors.ProviderUnavailableError,
    "overloaded_error": errors.ProviderUnavailableError,
}
_CODE_IN_MESSAGE = re.compile(r"\((\d{3,5})\)\s*$")
_PLAN_WORDS = ("tokenplan", "token plan", "credit", "plan key", "sk-cp", "not support h3",
               "does not support h3", "cannot use h3")
_ROLES = {"first_frame_image": ("image_url", "first_frame"),
          "last_frame_image": ("image_url", "last_frame"),
          "reference_images": ("image_url", "reference_image"),
          "reference_videos": ("video_url", "reference_video"),
          "reference_audios": ("audio_url", "reference_audio")}
MEDIA_FIELDS = tuple(_ROLES)


class PlanKeyError(errors.AuthenticationError):
    """MiniMax refused H3 for this key: Token Plan and Credit (subscription, ``sk-cp-...``)
    keys cannot use H3 (code 2013). A pay-as-you-go key is needed; never retried."""


def v2_error(status_code: int, body: Any) -> tuple[str, int | None, str | None] | None:
    """(message, code, error.type) of a v2 error answer, or None when it is not one.

    Also a v1-style ``base_resp`` with a non-zero ``status_code`` (a relay's shape)."""
    if not isinstance(body, dict):
        return None
    err = body.get("error")
    if body.get("type") == "error" or isinstance(err, dict):
        err = err if isinstance(err, dict) else {}
        message = str(err.get("message") or err.get("type") or "error")
        match = _CODE_IN_MESSAGE.search(message)
        code = int(match.group(1)) if match else as_int(err.get("code"))
        kind = err.get("type") if isinstance(err.get("type"), str) else None
        return message, code, kind
    base = body.get("base_resp")
    if isinstance(base, dict) and as_int(base.get("status_code")) not in (None, 0):
        return (str(base.get("status_msg") or "error"), as_int(base.get("status_code")),
                None)
    return None


def raise_for_error(status_code: int, body: Any, retry_after: float | None,
                    task_id: str | None = None, model: str | None = None) -> None:
    """Raise the typed error a v2 answer carries; return when it carries none."""
    found = v2_error(status_code, body)
    if found is None:
        if status_code < 400:
            return
        found = (f"HTTP {status_code}", None, None)
    message, code, kind = found
    text = f"MiniMax v2: {message}"
    if code == 2013 and any(w in message.lower() for w in _PLAN_WORDS):
        raise PlanKeyError(
            f"{text}. This key cannot use {model or 'MiniMax-H3'}: Token Plan and Credit "
            "(subscription, sk-cp-...) keys are refused for H3; use a pay-as-you-go API key "
            "from the MiniMax platform", code=code, http_status=status_code, task_id=task_id)
    cls = _TYPE_ERRORS.get(kind or "")
    if code is None and cls is not None:
        kw: dict[str, Any] = {"http_status": status_code, "task_id": task_id}
        if cls in (errors.RateLimitedError, errors.ProviderUnavailableError):
            kw["retry_after"] = retry_after
        raise cls(text, **kw)
    raise error_for(message=text, code=code, http_status=status_code,
                    retry_after=retry_after, task_id=task_id)


def is_definite_error(status_code: int, body: Any) -> bool:
    """Whether an answer is MiniMax's own structured error (not a proxy's HTML page or an
    empty body): the provider said what happened."""
    return v2_error(status_code, body) is not None


def _media_item(field: str, url: str) -> dict[str, Any]:
    kind, role = _ROLES[field]
    return {"type": kind, kind: {"url": url}, "role": role}


def job_from_task(task: Mapping[str, Any], *, lenient: bool = True,
                  task_id: str | None = None) -> Job:
    """A job from one v2 task object (query, list item or callback body's ``task``)."""
    raw_id = task.get("id") if task.get("id") not in (None, "") else task_id
    tid = check_id(raw_id, what="task id", task_id=task_id)
    word = task.get("status")
    error = task.get("error") if isinstance(task.get("error"), dict) else {}
    text = str(word).strip().lower() if isinstance(word, str) else ""
    if text == "expired":
        status = JobStatus.FAILED
        error = {"code": error.get("code"), "message": error.get("message")
                 or "task expired (MiniMax keeps v2 tasks for 7 days)"}
    else:
        status = status_word(word, task_id=tid, lenient=lenient)
    content = task.get("content") if isinstance(task.get("content"), dict) else {}
    url = content.get("url")
    urls = [url] if isinstance(url, str) and url else []
    model = task.get("model") if isinstance(task.get("model"), str) else None
    job = Job(task_id=tid, provider=Provider.MINIMAX, status=status,
              video_urls=urls if status is JobStatus.COMPLETED else [],
              submitted_at=from_unix(task.get("created_at")), model=model)
    if status is JobStatus.FAILED:
        job = job.model_copy(update={
            "error_code": as_int(error.get("code")),
            "error_message": str(error.get("message") or "generation failed")})
    return job


class MinimaxV2Dialect:
    """MiniMax video v2. Not a ``Dialect`` subclass: its calls take other arguments
    (content items, list filters, DELETE), and ``HailuoClient`` routes H3 models here."""

    provider = Provider.MINIMAX
    api = "v2"
    submit_path = SUBMIT_PATH
    upload_path = UPLOAD_PATH

    def submit_headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json", "Accept": "application/json"}

    def submit_body(self, request: VideoRequest,
                    media: Mapping[str, str | Sequence[str]]) -> dict[str, Any]:
        """Body of a validated request; ``media`` maps field -> wire URL (or list of URLs:
        https, ``mm_file://id`` or a data URI)."""
        content: list[dict[str, Any]] = [{"type": "text", "text": request.prompt or ""}]
        for field in MEDIA_FIELDS:
            value = media.get(field)
            if not value:
                continue
            for url in ([value] if isinstance(value, str) else value):
                content.append(_media_item(field, url))
        assert request.resolution is not None and request.duration is not None
        body: dict[str, Any] = {
            "model": request.model,
            "content": content,
            "resolution": request.resolution.upper(),
            "duration": int(request.duration),
            "ratio": request.ratio or "adaptive",
        }
        if request.callback_url:
            body["callback_url"] = request.callback_url
        if request.watermark:  # only MiniMax-H3 (validation refuses it for H3-Max)
            body["aigc_watermark"] = True
        if request.model == "MiniMax-H3-Max" and not request.prompt_optimizer:
            body["extra"] = {"prompt_expansion_mode": "disabled"}
        return body

    regeneration_path = REGENERATION_PATH

    def regeneration_body(self, request: VideoRequest,
                          media: Mapping[str, str | Sequence[str]], base_video: str,
                          resolution: str = "2K") -> dict[str, Any]:
        """Body of ``POST /v2/video_regeneration``, form (b) of api-contract-v2.md 1.10:
        the exact prompt sent the first time, the same frames / references, and the
        finished 768P output as a ``video_url`` item with role ``base_video``; no duration
        or ratio (the base video fixes both). Form (a), ``source_task_id``, is for
        whitelisted accounts only and is not used."""
        original = self.submit_body(request, media)
        content = [*original["content"], {"type": "video_url", "video_url": {"url": base_video},
                                          "role": BASE_VIDEO_ROLE}]
        body: dict[str, Any] = {"model": request.model, "content": content,
                                "resolution": resolution}
        for key in ("callback_url", "aigc_watermark"):
            if key in original:
                body[key] = original[key]
        return body

    def parse_submit(self, status_code: int, body: Any, retry_after: float | None,
                     model: str | None = None) -> Job:
        raise_for_error(status_code, body, retry_after, model=model)
        task_id = body.get("task_id") if isinstance(body, dict) else None
        if task_id in (None, ""):
            raise errors.UnreadableAnswerError(
                f"MiniMax v2 submit answer (HTTP {status_code}) carried no task_id",
                http_status=status_code)
        return Job(task_id=check_id(task_id, what="task id"), provider=self.provider,
                   status=JobStatus.QUEUED, model=model)

    # -- query ---------------------------------------------------------------------------
    def status_call(self, task_id: str) -> tuple[str, dict[str, str]]:
        """The query of one task: the id in the PATH (escaped), never ``?task_id=``."""
        return f"{QUERY_PATH}/{quote(task_id, safe='')}", {}

    def parse_status(self, task_id: str, status_code: int, body: Any,
                     retry_after: float | None, *, lenient: bool = False) -> Job:
        raise_for_error(status_code, body, retry_after, task_id)
        if not isinstance(body, dict):
            raise errors.UnreadableAnswerError("MiniMax v2 query answer is not a JSON object",
                                               http_status=status_code, task_id=task_id)
        task = body.get("task")
        if not isinstance(task, dict):
            if "items" in body:
                raise errors.UnreadableAnswerError(
                    "MiniMax v2 answered a task LIST to a query of one task (the ?task_id= "
                    "form hits the list endpoint); the answer is not used",
                    http_status=status_code, task_id=task_id)
            raise errors.UnreadableAnswerError("MiniMax v2 query answer carried no task",
                                               http_status=status_code, task_id=task_id)
        return job_from_task(task, lenient=lenient, task_id=task_id)

    # -- list ----------------------------------------------------------------------------
    def list_call(self, *, model: str | None = None, status: str | None = None,
                  task_ids: Sequence[str] = (), task_type: str | None = None,
                  page_num: int = 1, page_size: int = 20) -> tuple[str, dict[str, str]]:
        params = {"page_num": str(int(page_num)), "page_size": str(int(page_size))}
        if model:
            params["filter.model"] = model
        if status:
            params["filter.status"] = status
        if task_ids:
            params["filter.task_ids"] = ",".join(check_id(t) for t in task_ids)
        if task_type:
            params["filter.task_type"] = task_type
        return QUERY_PATH, params

    def parse_list(self, status_code: int, body: Any, retry_after: float | None
                   ) -> tuple[list[dict[str, Any]], int | None]:
        """(task objects, total) of a list answer; items that are not objects are dropped."""
        raise_for_error(status_code, body, retry_after)
        if not isinstance(body, dict) or not isinstance(body.get("items", []), list):
            raise errors.UnreadableAnswerError("MiniMax v2 list answer carried no items list",
                                               http_status=status_code)
        items = [i for i in body.get("items") or [] if isinstance(i, dict)]
        return items, as_int(body.get("total"))

    # -- cancel / delete -----------------------------------------------------------------
    def cancel_path(self, task_id: str) -> str:
        return f"{CANCEL_PATH}/{quote(task_id, safe='')}"

    def parse_cancel(self, task_id: str, status_code: int, body: Any,
                     retry_after: float | None) -> tuple[str, Job]:
        """(action, job): action ``cancelled`` (queued, not charged) or ``deleted``."""
        raise_for_error(status_code, body, retry_after, task_id)
        data = body if isinstance(body, dict) else {}
        action = str(data.get("action") or "").lower()
        word = data.get("status") or ("cancelled" if action == "cancelled" else None)
        status = status_word(word, task_id=task_id, default=JobStatus.CANCELLED)
        return action, Job(task_id=task_id, provider=self.provider, status=status)

    # -- uploads -------------------------------------------------------------------------
    def parse_upload(self, status_code: int, body: Any, retry_after: float | None,
                     field: str) -> str:
        """The ``mm_file://<file_id>`` of an upload answer (``file.file_id`` may be a JSON
        number)."""
        raise_for_error(status_code, body, retry_after)
        file = body.get("file") if isinstance(body, dict) else None
        file_id = file.get("file_id") if isinstance(file, dict) else None
        if file_id in (None, ""):
            raise errors.UnreadableAnswerError(
                f"MiniMax upload of {field} answered without file.file_id",
                http_status=status_code)
        return f"{MM_FILE}{check_id(file_id, what='file id')}"


V2_DIALECT = MinimaxV2Dialect()
