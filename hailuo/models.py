"""The data that flows through the house: a request, a provider job, a downloaded video.

``VideoRequest`` is provider-neutral (resolutions are canonical lowercase labels, image
inputs are URLs, data URLs or local paths). ``validate_for(provider)`` checks it against
the capability table and returns a copy with the provider's defaults filled in; it raises
``InvalidRequestError`` naming the field and the allowed values. Each provider module
turns a validated request into its own wire dialect.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hailuo.capabilities import (
    MAX_PROMPT_CHARS,
    Capability,
    Mode,
    Provider,
    lookup,
    models_for,
    modes_for,
    normalise_resolution,
)
from hailuo.errors import InvalidRequestError
from hailuo.prompts import normalise_prompt

DEFAULT_MODEL = "MiniMax-Hailuo-02"


class VideoRequest(BaseModel):
    """One generation request, as a user thinks of it (not as a provider spells it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(DEFAULT_MODEL, description="Model name, e.g. MiniMax-Hailuo-02 or "
                       "MiniMax-Hailuo-2.3.")
    prompt: str | None = Field(None, description="What to film, up to 2000 characters; may "
                               "hold bracketed camera commands such as [Pan left].")
    duration: int | None = Field(None, description="Clip length in seconds; None takes the "
                                 "model's default (5 on APIMart Hailuo-02, else 6).")
    resolution: str | None = Field(None, description="512p, 768p or 1080p (case-insensitive); "
                                   "None takes 768p.")
    first_frame_image: str | None = Field(None, description="First frame: https URL, data URL "
                                          "or local file path.")
    last_frame_image: str | None = Field(None, description="Last frame for a first+last frame "
                                         "transition (Hailuo-02 only).")
    subject_reference: str | None = Field(None, description="Character reference image "
                                          "(MiniMax S2V-01 only).")
    prompt_optimizer: bool = Field(True, description="Let the provider refine the prompt.")
    fast_pretreatment: bool = Field(False, description="Shorter pre-processing, less polish.")
    watermark: bool = Field(False, description="Ask the provider for its AIGC watermark.")
    callback_url: str | None = Field(None, description="Where the provider should POST status "
                                     "changes (APIMart appends /callback).")

    @field_validator("resolution", mode="before")
    @classmethod
    def _canonical_resolution(cls, value: object) -> object:
        return None if value in (None, "") else normalise_resolution(value)  # type: ignore[arg-type]

    @field_validator("prompt")
    @classmethod
    def _prompt_length(cls, value: str | None) -> str | None:
        if value is not None and len(value) > MAX_PROMPT_CHARS:
            raise ValueError(f"prompt is {len(value)} characters; the limit is {MAX_PROMPT_CHARS}")
        return value

    @property
    def mode(self) -> Mode:
        if self.subject_reference:
            return Mode.SUBJECT_REFERENCE
        if self.last_frame_image:
            return Mode.FIRST_LAST_FRAME
        if self.first_frame_image:
            return Mode.IMAGE_TO_VIDEO
        return Mode.TEXT_TO_VIDEO

    def capability(self, provider: Provider | str) -> Capability:
        """The capability row for this request, or ``InvalidRequestError`` naming the field."""
        provider = Provider(provider)
        known = models_for(provider)
        if self.model not in known:
            raise InvalidRequestError(
                f"model {self.model!r} is not offered by {provider}; allowed: {', '.join(known)}",
                field="model",
            )
        if self.last_frame_image and not self.first_frame_image:
            raise InvalidRequestError(
                "last_frame_image needs first_frame_image (first+last frame mode)",
                field="first_frame_image",
            )
        cap = lookup(provider, self.model, self.mode)
        if cap is None:
            modes = ", ".join(modes_for(provider, self.model))
            field = {
                Mode.SUBJECT_REFERENCE: "subject_reference",
                Mode.FIRST_LAST_FRAME: "last_frame_image",
                Mode.IMAGE_TO_VIDEO: "first_frame_image",
                Mode.TEXT_TO_VIDEO: "first_frame_image",
            }[self.mode]
            hint = {
                Mode.SUBJECT_REFERENCE: " (subject reference needs model S2V-01 on minimax)",
                Mode.FIRST_LAST_FRAME: " (first+last frame needs MiniMax-Hailuo-02)",
                Mode.TEXT_TO_VIDEO: f" ({self.model} is image-to-video only: give "
                "first_frame_image)",
            }.get(self.mode, "")
            raise InvalidRequestError(
                f"{self.model} on {provider} does not support {self.mode}{hint}; "
                f"it supports: {modes or 'nothing'}",
                field=field,
            )
        return cap

    def validate_for(self, provider: Provider | str) -> VideoRequest:
        """Check against the capability table; return a copy with defaults filled in."""
        cap = self.capability(provider)
        if self.mode is Mode.TEXT_TO_VIDEO and not (self.prompt and self.prompt.strip()):
            raise InvalidRequestError("prompt is required for text-to-video", field="prompt")
        prompt = normalise_prompt(self.prompt) if self.prompt else self.prompt
        if self.subject_reference and (self.first_frame_image or self.last_frame_image):
            raise InvalidRequestError(
                "subject_reference cannot be combined with first/last frame images",
                field="subject_reference",
            )
        if not cap.options:  # 01-series / S2V-01: the provider fixes both
            for name in ("resolution", "duration"):
                value = getattr(self, name)
                fixed = getattr(cap, f"fixed_{name}")
                if value is not None and value != fixed:
                    raise InvalidRequestError(
                        f"{name} {value!r} is not adjustable for {self.model}; it is always "
                        f"{fixed}", field=name,
                    )
            return self.model_copy(update={"resolution": None, "duration": None,
                                           "prompt": prompt})
        resolution = self.resolution or cap.default_resolution
        if resolution not in cap.options:
            raise InvalidRequestError(
                f"resolution {resolution!r} is not available for {self.model} "
                f"{cap.mode} on {cap.provider}; allowed: {', '.join(cap.resolutions)}",
                field="resolution",
            )
        allowed = cap.options[resolution]
        duration = self.duration if self.duration is not None else (
            cap.default_duration if cap.default_duration in allowed else min(allowed))
        if duration not in allowed:
            if duration in cap.durations:
                ok = [r for r, ds in cap.options.items() if duration in ds]
                msg = (f"duration {duration} s is not available at {resolution} for "
                       f"{self.model} on {cap.provider} (only {', '.join(map(str, allowed))} s); "
                       f"for {duration} s use resolution {' or '.join(ok)}")
            else:
                msg = (f"duration {duration} s is not available for {self.model} on "
                       f"{cap.provider}; allowed: {', '.join(map(str, cap.durations))} s")
            raise InvalidRequestError(msg, field="duration")
        return self.model_copy(update={"resolution": resolution, "duration": duration,
                                       "prompt": prompt})

    def output_duration(self, provider: Provider | str) -> int:
        req = self.validate_for(provider)
        return req.duration or self.capability(provider).fixed_duration or 6

    def output_resolution(self, provider: Provider | str) -> str:
        req = self.validate_for(provider)
        return req.resolution or self.capability(provider).fixed_resolution or "720p"


class JobStatus(StrEnum):
    """Provider statuses folded into one set; ``terminal`` ends every wait."""

    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


_STATUS_SYNONYMS = {
    "submitted": JobStatus.QUEUED,
    "pending": JobStatus.QUEUED,
    "queued": JobStatus.QUEUED,
    "queueing": JobStatus.QUEUED,
    "preparing": JobStatus.QUEUED,
    "processing": JobStatus.PROCESSING,
    "running": JobStatus.PROCESSING,
    "in_progress": JobStatus.PROCESSING,
    "completed": JobStatus.COMPLETED,
    "success": JobStatus.COMPLETED,
    "succeeded": JobStatus.COMPLETED,
    "fail": JobStatus.FAILED,
    "failed": JobStatus.FAILED,
    "failure": JobStatus.FAILED,
    "error": JobStatus.FAILED,
    "cancelled": JobStatus.CANCELLED,
    "canceled": JobStatus.CANCELLED,
}


def parse_status(value: str) -> JobStatus:
    """Case-insensitive, synonym-tolerant (``Fail``, ``failed``, ``Success``, ``completed``)."""
    try:
        return _STATUS_SYNONYMS[str(value).strip().lower()]
    except KeyError:
        raise ValueError(f"unknown task status {value!r}") from None


def utcnow() -> datetime:
    return datetime.now(UTC)


class Job(BaseModel):
    """A provider task as we know it: enough to resume waiting or downloading later."""

    task_id: str
    provider: Provider
    status: JobStatus = JobStatus.QUEUED
    progress: int | None = None
    estimated_time: float | None = Field(None, description="Provider's estimate, seconds.")
    video_urls: list[str] = Field(default_factory=list)
    file_id: str | None = None
    expires_at: datetime | None = None
    width: int | None = None
    height: int | None = None
    error_code: int | None = None
    error_message: str | None = None
    cost: float | None = None
    submitted_at: datetime | None = None
    updated_at: datetime = Field(default_factory=utcnow)
    idempotency_key: str | None = None
    simulated: bool = Field(False, description="Answered by the local simulator: not paid.")


class DownloadedVideo(BaseModel):
    """A video on local disk whose bytes were hashed and which decoded as a real video."""

    task_id: str
    path: Path
    sha256: str
    size: int
    width: int
    height: int
    duration: float
    fps: float
    frames: int
    codec: str
