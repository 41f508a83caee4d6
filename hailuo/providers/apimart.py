"""APIMart's dialect: lowercase resolutions, ``watermark``, ``webhook``, ``{"code", "data"}``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hailuo.capabilities import Provider
from hailuo.models import Job, JobStatus, VideoRequest, parse_status
from hailuo.providers.base import Dialect, as_int, error_for, from_unix


def _raise_for_error(status_code: int, body: Any, retry_after: float | None,
                     task_id: str | None = None) -> None:
    err = body.get("error") if isinstance(body, dict) else None
    code = body.get("code") if isinstance(body, dict) else None
    if status_code < 400 and not err and (code in (None, 200, "200", 0, "0")):
        return
    if isinstance(err, dict):
        message = str(err.get("message") or err.get("type") or "APIMart error")
        code = as_int(err.get("code"))
    else:
        message = str(body.get("message") if isinstance(body, dict) else "") or (
            f"APIMart answered HTTP {status_code}")
        code = as_int(code)
    if code is not None and code == status_code:
        code = None  # APIMart repeats the HTTP status as "code"; keep provider codes only
    raise error_for(message=f"APIMart: {message}", code=code, http_status=status_code,
                    retry_after=retry_after, task_id=task_id)


class ApimartDialect(Dialect):
    provider = Provider.APIMART
    submit_path = "/v1/videos/generations"
    honours_idempotency_key = True

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
                body[name] = images[name]
        body["prompt_optimizer"] = request.prompt_optimizer
        body["fast_pretreatment"] = request.fast_pretreatment
        body["watermark"] = request.watermark
        if request.callback_url:
            body["webhook"] = request.callback_url
        return body

    def parse_submit(self, status_code: int, body: Any, retry_after: float | None) -> Job:
        _raise_for_error(status_code, body, retry_after)
        data = body.get("data") if isinstance(body, dict) else None
        if isinstance(data, list):  # shape 1: {"data": [{"status", "task_id"}]}
            data = data[0] if data else None
        if not isinstance(data, dict) or not (data.get("task_id") or data.get("id")):
            raise error_for(message="APIMart submit answer carried no task id",
                            http_status=status_code)
        info = data.get("task_info") or {}
        return Job(
            task_id=str(data.get("task_id") or data.get("id")),
            provider=self.provider,
            status=parse_status(data.get("status") or "submitted"),
            progress=as_int(data.get("progress")),
            estimated_time=info.get("estimated_time") or data.get("estimated_time"),
        )

    def status_call(self, task_id: str) -> tuple[str, dict[str, str]]:
        return f"/v1/tasks/{task_id}", {}

    def parse_status(self, task_id: str, status_code: int, body: Any,
                     retry_after: float | None) -> Job:
        _raise_for_error(status_code, body, retry_after, task_id)
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            raise error_for(message="APIMart status answer carried no data",
                            http_status=status_code, task_id=task_id)
        status = parse_status(data.get("status") or "pending")
        urls: list[str] = []
        expires = None
        videos = (data.get("result") or {}).get("videos") or []
        for video in videos:
            url = video.get("url")
            urls.extend(url if isinstance(url, list) else [url] if url else [])
            expires = expires or from_unix(video.get("expires_at"))
        error = data.get("error") or {}
        cost = data.get("cost", data.get("credits_cost"))
        return Job(
            task_id=str(data.get("id") or task_id),
            provider=self.provider,
            status=status,
            progress=as_int(data.get("progress")),
            estimated_time=data.get("estimated_time"),
            video_urls=urls,
            expires_at=expires,
            error_code=as_int(error.get("code")) if status is JobStatus.FAILED else None,
            error_message=error.get("message") if status is JobStatus.FAILED else None,
            cost=float(cost) if isinstance(cost, int | float) else None,
            submitted_at=from_unix(data.get("created")),
        )
