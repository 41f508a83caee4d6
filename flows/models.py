"""Flow parameters and results as pydantic models, so the Prefect UI renders real forms."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from hailuo.capabilities import Provider
from hailuo.models import DEFAULT_MODEL, VideoRequest


def blank_to_none(value: Any) -> Any:
    """An empty (or blank) text parameter means "not set": the Prefect UI and deployment
    parameters send "" for a field the user cleared, and "" must never reach a block
    lookup, a file path or a URL as if it were a value."""
    if isinstance(value, str) and not value.strip():
        return None
    return value


class Destination(BaseModel):
    """Where finished videos go: always a local folder, plus S3 when a bucket block is named."""

    output_dir: str = Field("out", description="Local folder for videos, thumbnails, manifests.")
    s3_bucket_block: str | None = Field(
        None, description="Name of a prefect-aws S3Bucket block; empty keeps files local only.")
    s3_prefix: str = Field("hailuo", description="Key prefix inside the bucket.")
    presign_seconds: int = Field(86400, ge=60, le=604800,
                                 description="Lifetime of the presigned URLs returned.")

    @field_validator("s3_bucket_block", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        value = blank_to_none(value)
        return value.strip() if isinstance(value, str) else value

    @field_validator("output_dir", mode="before")
    @classmethod
    def _empty_is_default(cls, value: Any) -> Any:
        return "out" if blank_to_none(value) is None else value


class GenerationOptions(BaseModel):
    """Settings shared by every clip of a run."""

    model: str = Field(DEFAULT_MODEL, description="MiniMax-Hailuo-02, MiniMax-Hailuo-2.3, ...")
    duration: int | None = Field(None, description="Seconds; empty takes the model default.")
    resolution: Literal["512p", "768p", "1080p"] | None = Field(
        None, description="Empty takes 768p. 1080p allows only the shortest duration.")
    prompt_optimizer: bool = Field(True, description="Let the provider refine the prompt.")
    fast_pretreatment: bool = Field(False, description="Faster pre-processing, less polish.")
    watermark: bool = Field(False, description="Ask for the provider's AIGC watermark.")
    take: int = Field(1, ge=1, description="A new number makes a new, separately paid take.")
    max_cost_usd: float | None = Field(
        None, ge=0, description="Refuse before submitting anything if the estimate exceeds it.")
    timeout_seconds: float = Field(1800, gt=0, description="Total wait per clip, queue included.")
    max_resubmits: int = Field(
        2, ge=0, description="New submits after a provider-side failure (never for content "
        "rejections 1026/1027).")
    callbacks: bool = Field(
        False, description="Start a callback receiver in the flow process and give its URL to "
        "the provider, so a finished render is noticed within about a second (polling stays "
        "the fallback).")
    callback_public_url: str | None = Field(
        None, description="URL the provider can reach the receiver at (behind a proxy or "
        "tunnel); empty uses the local address.")
    provider: Provider = Field(
        Provider.APIMART, description="Dialect of the embedded simulator when no credentials block "
        "is given (a credentials block sets its own provider).")

    @field_validator("duration", "resolution", "max_cost_usd", "callback_public_url",
                     mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return blank_to_none(value)

    @field_validator("model", mode="before")
    @classmethod
    def _empty_is_default(cls, value: Any) -> Any:
        return DEFAULT_MODEL if blank_to_none(value) is None else value


class ClipSpec(BaseModel):
    """One clip of a batch."""

    name: str | None = Field(None, description="Label used in artifacts and file listings.")
    prompt: str | None = Field(None, description="Prompt, camera commands allowed.")
    first_frame_image: str | None = Field(None, description="Local path, https URL or s3:// URI.")
    last_frame_image: str | None = Field(None, description="For first+last frame transitions.")
    subject_reference: str | None = Field(None, description="Character image (MiniMax S2V-01).")
    model: str | None = Field(None, description="Overrides the run's model.")
    duration: int | None = Field(None, description="Overrides the run's duration.")
    resolution: str | None = Field(None, description="Overrides the run's resolution.")
    take: int | None = Field(None, ge=1, description="Overrides the run's take number.")

    @field_validator("name", "prompt", "first_frame_image", "last_frame_image",
                     "subject_reference", "model", "duration", "resolution", "take",
                     mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return blank_to_none(value)

    def to_request(self, options: GenerationOptions) -> VideoRequest:
        return VideoRequest(
            model=self.model or options.model,
            prompt=self.prompt,
            duration=self.duration if self.duration is not None else options.duration,
            resolution=self.resolution or options.resolution,
            first_frame_image=self.first_frame_image,
            last_frame_image=self.last_frame_image,
            subject_reference=self.subject_reference,
            prompt_optimizer=options.prompt_optimizer,
            fast_pretreatment=options.fast_pretreatment,
            watermark=options.watermark,
        )


class ClipResult(BaseModel):
    """A finished, verified clip."""

    name: str | None = None
    task_id: str
    provider: str
    model: str
    prompt: str | None
    resolution: str
    duration: float
    width: int
    height: int
    local_path: str
    sha256: str
    size: int
    cost_usd: float = Field(description="Estimate from the price table (hailuo.pricing).")
    thumbnail_path: str | None = None
    manifest_path: str
    s3_uri: str | None = None
    manifest_uri: str | None = None
    presigned_url: str | None = None
    thumbnail_url: str | None = None
    simulated: bool = False


class BatchResult(BaseModel):
    clips: list[ClipResult]
    failed: dict[str, str] = Field(
        default_factory=dict, description="name -> 'ErrorType: message (task_id=...)'")
    total_cost_usd: float
