"""MiniMax's native dialect: uppercase resolutions, ``base_resp`` codes inside HTTP 200,
``aigc_watermark``, ``callback_url``, ``subject_reference``, and a separate file lookup.

``fast_pretreatment`` is sent only to the models whose documentation lists it; code 1013
on ``files/retrieve`` is transient; a ``Success`` without ``file_id`` or a file answer
without ``download_url`` is a ``ResultMissingError`` carrying the task id.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hailuo import errors
from hailuo.capabilities import Provider
from hailuo.models import Job, JobStatus, VideoRequest
from hailuo.providers.base import (
    FAST_PRETREATMENT_MODELS,
    Dialect,
    as_int,
    error_for,
    log,
    status_word,
)

#: Region hosts: a key works only with the host of the platform that issued it.
GLOBAL_HOST = "https://api.minimax.io"
CHINA_HOST = "https://api.minimaxi.com"
_OTHER_REGION = {"api.minimax.io": CHINA_HOST, "api.minimaxi.com": GLOBAL_HOST,
                 "api.minimax.cn": GLOBAL_HOST}
#: Codes a key from the other region gets (api-contract-v2.md 1.0 and 7.4).
REGION_CODES = (1004, 2049)


def region_hint(host: str | None) -> str:
    """Which host to try when MiniMax refuses the key (codes 1004 / 2049)."""
    host = (host or "").lower()
    other = _OTHER_REGION.get(host)
    if other:
        here = "global" if host == "api.minimax.io" else "mainland China"
        return (f"MiniMax keys work only with the host of the region that issued them; this "
                f"client talks to https://{host} ({here}): if the key is from the other "
                f"platform, set base_url to {other}")
    return (f"MiniMax keys work only with the host of the region that issued them: "
            f"{GLOBAL_HOST} (platform.minimax.io, global) or {CHINA_HOST} "
            f"(platform.minimaxi.com, mainland China); check that base_url matches the key")


def _raise_for_error(status_code: int, body: Any, retry_after: float | None,
                     task_id: str | None = None) -> None:
    base = body.get("base_resp") if isinstance(body, dict) else None
    code = as_int(base.get("status_code")) if isinstance(base, dict) else None
    if status_code < 400 and code in (None, 0):
        return
    if code in (None, 0):
        code = None
    message = (base or {}).get("status_msg") if isinstance(base, dict) else None
    raise error_for(message=f"MiniMax: {message or f'HTTP {status_code}'}", code=code,
                    http_status=status_code, retry_after=retry_after, task_id=task_id)


class MinimaxDialect(Dialect):
    provider = Provider.MINIMAX
    submit_path = "/v1/video_generation"

    def submit_body(self, request: VideoRequest, images: Mapping[str, str]) -> dict[str, Any]:
        body: dict[str, Any] = {"model": request.model}
        if request.prompt:
            body["prompt"] = request.prompt
        if request.duration is not None:
            body["duration"] = request.duration
        if request.resolution is not None:
            body["resolution"] = request.resolution.upper()
        for name in ("first_frame_image", "last_frame_image"):
            if name in images:
                body[name] = images[name]
        if "subject_reference" in images:
            body["subject_reference"] = [
                {"type": "character", "image": [images["subject_reference"]]}
            ]
        body["prompt_optimizer"] = request.prompt_optimizer
        if request.model in FAST_PRETREATMENT_MODELS:
            body["fast_pretreatment"] = request.fast_pretreatment
        elif request.fast_pretreatment:
            log.warning("fast_pretreatment is not documented for %s; not sent", request.model)
        body["aigc_watermark"] = request.watermark
        if request.callback_url:
            body["callback_url"] = request.callback_url
        return body

    def parse_submit(self, status_code: int, body: Any, retry_after: float | None) -> Job:
        _raise_for_error(status_code, body, retry_after)
        task_id = body.get("task_id") if isinstance(body, dict) else None
        if not task_id:
            raise error_for(message="MiniMax submit answer carried no task id",
                            http_status=status_code)
        return Job(task_id=str(task_id), provider=self.provider, status=JobStatus.QUEUED)

    def status_call(self, task_id: str) -> tuple[str, dict[str, str]]:
        return "/v1/query/video_generation", {"task_id": task_id}

    def parse_status(self, task_id: str, status_code: int, body: Any,
                     retry_after: float | None, *, lenient: bool = False) -> Job:
        word = body.get("status") if isinstance(body, dict) else None
        base = body.get("base_resp") if isinstance(body, dict) else None
        code = as_int(base.get("status_code")) if isinstance(base, dict) else None
        task_id = str(body.get("task_id") or task_id) if isinstance(body, dict) else task_id
        status = status_word(word, task_id=task_id, lenient=lenient) if word else None
        if status is JobStatus.FAILED and status_code < 400:
            # A failed task: base_resp carries the reason (e.g. 1026), not a call error.
            return Job(task_id=task_id, provider=self.provider,
                       status=JobStatus.FAILED, error_code=code if code else None,
                       error_message=(base or {}).get("status_msg") or "generation failed")
        _raise_for_error(status_code, body, retry_after, task_id)
        if status is None:
            raise error_for(message="MiniMax query answer carried no status",
                            http_status=status_code, task_id=task_id)
        return Job(
            task_id=task_id,
            provider=self.provider,
            status=status,
            file_id=str(body["file_id"]) if body.get("file_id") else None,
            width=as_int(body.get("video_width")),
            height=as_int(body.get("video_height")),
        )

    def file_call(self, job: Job) -> tuple[str, dict[str, str]] | None:
        if job.status is JobStatus.COMPLETED and job.file_id:
            return "/v1/files/retrieve", {"file_id": job.file_id}
        return None

    def parse_file(self, job: Job, status_code: int, body: Any, retry_after: float | None) -> Job:
        _raise_for_error(status_code, body, retry_after, job.task_id)
        file = body.get("file") if isinstance(body, dict) else None
        url = file.get("download_url") if isinstance(file, dict) else None
        if not isinstance(url, str) or not url:
            raise errors.ResultMissingError(
                f"MiniMax files/retrieve for file {job.file_id} carried no download_url",
                http_status=status_code, task_id=job.task_id)
        urls = [url]
        backup = file.get("backup_download_url")
        if isinstance(backup, str) and backup:
            urls.append(backup)
        return job.model_copy(update={"video_urls": urls})
