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

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from hailuo.capabilities import (
    H3_MAX_COUNTS,
    H3_MAX_PROMPT_CHARS,
    H3_MAX_REFERENCES,
    H3_MODELS,
    H3_RATIOS,
    MAX_PROMPT_CHARS,
    Capability,
    Mode,
    Provider,
    is_h3,
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
    # MiniMax-H3 / MiniMax-H3-Max only (MiniMax's v2 API); refused for the other models.
    ratio: str | None = Field(None, description="H3 only: adaptive, 21:9, 16:9, 4:3, 1:1, 3:4 "
                              "or 9:16. Text-to-video needs a concrete ratio; with a first/"
                              "last frame the output follows the image (adaptive).")
    reference_images: tuple[str, ...] = Field((), description="H3 only: up to 9 reference "
                                              "images (https URL, mm_file://id, data URI or "
                                              "local path).")
    reference_videos: tuple[str, ...] = Field((), description="H3 only: up to 3 reference "
                                              "videos, 2-15 s each, 15 s in total (billed).")
    reference_audios: tuple[str, ...] = Field((), description="H3 only: up to 3 reference "
                                              "audios (WAV/MP3, 2-15 s); need a reference "
                                              "image or video.")

    @field_validator("resolution", mode="before")
    @classmethod
    def _canonical_resolution(cls, value: object) -> object:
        return None if value in (None, "") else normalise_resolution(value)  # type: ignore[arg-type]

    @field_validator("prompt")
    @classmethod
    def _prompt_length(cls, value: str | None, info: ValidationInfo) -> str | None:
        limit = H3_MAX_PROMPT_CHARS if is_h3(info.data.get("model")) else MAX_PROMPT_CHARS
        if value is not None and len(value) > limit:
            raise ValueError(f"prompt is {len(value)} characters; the limit is {limit}")
        return value

    @field_validator("ratio", mode="before")
    @classmethod
    def _canonical_ratio(cls, value: object) -> object:
        return None if value in (None, "") else str(value).strip().lower()

    @property
    def references(self) -> bool:
        """Whether any H3 reference medium is given."""
        return bool(self.reference_images or self.reference_videos or self.reference_audios)

    @property
    def mode(self) -> Mode:
        if self.subject_reference:
            return Mode.SUBJECT_REFERENCE
        if self.references:
            return Mode.REFERENCE
        if self.last_frame_image and not self.first_frame_image and is_h3(self.model):
            return Mode.LAST_FRAME
        if self.last_frame_image:
            return Mode.FIRST_LAST_FRAME
        if self.first_frame_image:
            return Mode.IMAGE_TO_VIDEO
        return Mode.TEXT_TO_VIDEO

    def capability(self, provider: Provider | str) -> Capability:
        """The capability row for this request, or ``InvalidRequestError`` naming the field."""
        provider = Provider(provider)
        if is_h3(self.model):
            return self._h3_capability(provider)
        known = models_for(provider)
        if provider is Provider.MINIMAX:
            known = (*known, *H3_MODELS)
        if self.model not in known:
            raise InvalidRequestError(
                f"model {self.model!r} is not offered by {provider}; allowed: {', '.join(known)}",
                field="model",
            )
        for name in H3_ONLY_FIELDS:
            if getattr(self, name):
                raise InvalidRequestError(
                    f"{name} is only for {' / '.join(H3_MODELS)} (MiniMax's v2 API); "
                    f"{self.model} does not take it", field=name)
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

    def _h3_capability(self, provider: Provider) -> Capability:
        if provider is not Provider.MINIMAX:
            raise InvalidRequestError(H3_APIMART_REFUSAL.format(model=self.model,
                                                                provider=provider),
                                      field="model")
        if self.subject_reference:
            raise InvalidRequestError(
                f"subject_reference is not a {self.model} field; give the character as "
                "reference_images", field="subject_reference")
        if self.references and (self.first_frame_image or self.last_frame_image):
            field = next(n for n in H3_REFERENCE_FIELDS if getattr(self, n))
            raise InvalidRequestError(
                f"{field}: frame roles (first_frame_image / last_frame_image) and reference "
                f"roles (reference_images / reference_videos / reference_audios) cannot be "
                f"mixed in one {self.model} request (MiniMax refuses it); use either",
                field=field)
        cap = lookup(provider, self.model, self.mode)
        assert cap is not None, (self.model, self.mode)  # every H3 mode is in the table
        return cap

    def _validate_h3(self, cap: Capability) -> VideoRequest:
        """H3 / H3-Max rules (api-contract-v2.md 1.2, 1.3); media bytes are checked by the
        client when it builds the body (``hailuo.h3media``)."""
        if not (self.prompt and self.prompt.strip()):
            raise InvalidRequestError(f"prompt is required for {self.model} in every mode "
                                      "(the body needs one non-empty text item)",
                                      field="prompt")
        if self.fast_pretreatment:
            raise InvalidRequestError(f"fast_pretreatment does not exist for {self.model}",
                                      field="fast_pretreatment")
        if self.watermark and self.model != "MiniMax-H3":
            raise InvalidRequestError(
                f"watermark is not confirmed for {self.model} (an AIGC watermark request "
                "is reported to fail; only MiniMax-H3 documents aigc_watermark)",
                field="watermark")
        concrete = ", ".join(r for r in H3_RATIOS if r != "adaptive")
        ratio = self.ratio
        if ratio is not None and ratio not in H3_RATIOS:
            raise InvalidRequestError(f"ratio {ratio!r} is not offered by {self.model}; "
                                      f"allowed: {', '.join(H3_RATIOS)}", field="ratio")
        mode = cap.mode
        if mode is Mode.TEXT_TO_VIDEO and ratio in (None, "adaptive"):
            raise InvalidRequestError(
                f"ratio is required for {self.model} text-to-video and may not be adaptive "
                f"(there is no image to follow); give one of {concrete}", field="ratio")
        if mode in (Mode.IMAGE_TO_VIDEO, Mode.LAST_FRAME, Mode.FIRST_LAST_FRAME):
            if ratio not in (None, "adaptive"):
                raise InvalidRequestError(
                    f"ratio {ratio!r} would be ignored: with a first or last frame "
                    f"{self.model} follows the image's aspect (adaptive); leave ratio unset "
                    "or crop the image to the ratio you want", field="ratio")
            ratio = "adaptive"
        ratio = ratio or "adaptive"
        for name, most in H3_MAX_COUNTS.items():
            values = getattr(self, name)
            count = len(values) if isinstance(values, tuple) else int(bool(values))
            if count > most:
                raise InvalidRequestError(f"{name}: {count} given; at most {most}", field=name)
        total = sum(len(getattr(self, n)) for n in H3_REFERENCE_FIELDS)
        if total > H3_MAX_REFERENCES:
            field = next(n for n in reversed(H3_REFERENCE_FIELDS) if getattr(self, n))
            raise InvalidRequestError(f"{total} reference files; at most {H3_MAX_REFERENCES} "
                                      "together", field=field)
        if self.reference_audios and not (self.reference_images or self.reference_videos):
            raise InvalidRequestError(
                "reference_audios need at least one reference image or reference video",
                field="reference_audios")
        resolution = self.resolution or cap.default_resolution
        if resolution not in cap.options:
            raise InvalidRequestError(
                f"resolution {resolution!r} is not available for {self.model}; allowed: "
                f"{', '.join(r.upper() for r in cap.resolutions)}", field="resolution")
        duration = self.duration if self.duration is not None else cap.default_duration
        if duration not in cap.options[resolution]:
            allowed = cap.options[resolution]
            raise InvalidRequestError(
                f"duration {duration} s is not available for {self.model}; allowed: "
                f"{min(allowed)}-{max(allowed)} s (whole seconds)", field="duration")
        return self.model_copy(update={"resolution": resolution, "duration": duration,
                                       "ratio": ratio})

    def validate_for(self, provider: Provider | str) -> VideoRequest:
        """Check against the capability table; return a copy with defaults filled in."""
        cap = self.capability(provider)
        if is_h3(self.model):
            return self._validate_h3(cap)
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


#: Fields only the v2 models take; legacy models refuse them naming the field.
H3_REFERENCE_FIELDS = ("reference_images", "reference_videos", "reference_audios")
H3_ONLY_FIELDS = ("ratio", *H3_REFERENCE_FIELDS)
H3_APIMART_REFUSAL = (
    "{model} is not available on {provider} in this client: APIMart's request shape for H3 "
    "is not documented, and a guessed paid request is never sent. Use MiniMax's own API "
    "(https://api.minimax.io, a pay-as-you-go key): credentials with provider=\"minimax\" "
    "(on the command line --provider minimax)")


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
    cost: float | None = Field(None, description="What the provider reported, in USD "
                               "(APIMart's credits_cost is converted: 10 credits = $1).")
    submitted_at: datetime | None = None
    updated_at: datetime = Field(default_factory=utcnow)
    idempotency_key: str | None = None
    simulated: bool = Field(False, description="Answered by the local simulator: not paid.")
    model: str | None = Field(None, description="The task's model when the client knows it "
                              "(set for MiniMax-H3 tasks: it routes status, wait and "
                              "download to MiniMax's v2 API).")


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
