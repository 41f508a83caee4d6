"""MiniMax's native dialect: uppercase resolutions, ``base_resp`` codes inside HTTP 200,
``aigc_watermark``, ``callback_url``, ``subject_reference``, and a separate file lookup."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hailuo.capabilities import Provider
from hailuo.models import Job, JobStatus, VideoRequest, parse_status
from hailuo.providers.base import Dialect, as_int, error_for


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
        body["fast_pretreatment"] = request.fast_pretreatment
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
                     retry_after: float | None) -> Job:
        status_word = body.get("status") if isinstance(body, dict) else None
        base = body.get("base_resp") if isinstance(body, dict) else None
        code = as_int(base.get("status_code")) if isinstance(base, dict) else None
        if status_word and parse_status(status_word) is JobStatus.FAILED and status_code < 400:
            # A failed task: base_resp carries the reason (e.g. 1026), not a call error.
            return Job(task_id=str(body.get("task_id") or task_id), provider=self.provider,
                       status=JobStatus.FAILED, error_code=code if code else None,
                       error_message=(base or {}).get("status_msg") or "generation failed")
        _raise_for_error(status_code, body, retry_after, task_id)
        if not status_word:
            raise error_for(message="MiniMax query answer carried no status",
                            http_status=status_code, task_id=task_id)
        return Job(
            task_id=str(body.get("task_id") or task_id),
            provider=self.provider,
            status=parse_status(status_word),
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
        if not isinstance(file, dict) or not file.get("download_url"):
            raise error_for(message="MiniMax file answer carried no download_url",
                            http_status=status_code, task_id=job.task_id)
        urls = [file["download_url"]]
        if file.get("backup_download_url"):
            urls.append(file["backup_download_url"])
        return job.model_copy(update={"video_urls": urls})
