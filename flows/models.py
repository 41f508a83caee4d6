"""Flow parameters and results as pydantic models, so the Prefect UI renders real forms.

Every field has a human title and a description (the UI shows both), and every field whose
values are known is an enum, derived from the capability table (``hailuo.choices``), so the
run form offers a dropdown: model, resolution, duration, ratio and provider.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, field_validator

from hailuo.capabilities import Provider
from hailuo.choices import Duration, ModelName, Ratio, Resolution, canonical_resolution
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

    output_dir: str = Field("out", title="Output folder", description="Local folder (on the "
                            "machine running the flow) for videos, thumbnails and manifests; "
                            "each clip lands in a sub-folder named after its batch or film "
                            "(single clips: `clips`).")
    s3_bucket_block: str | None = Field(
        None, title="S3 bucket block", description="Name of a prefect-aws S3Bucket block; "
        "empty keeps files local only.")
    s3_prefix: str = Field("hailuo", title="S3 key prefix",
                           description="Key prefix inside the bucket.")
    presign_seconds: int = Field(86400, ge=60, le=604800, title="Presigned URL lifetime (s)",
                                 description="Lifetime of the presigned URLs returned and "
                                 "linked from the artifacts.")

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

    model: ModelName = Field(  # type: ignore[valid-type]
        DEFAULT_MODEL, title="Model", description="MiniMax-Hailuo-02 (every mode, 512p-1080p), "
        "MiniMax-Hailuo-2.3 (768p/1080p), MiniMax-H3 / H3-Max (MiniMax's own API only), ...")
    duration: Duration | None = Field(  # type: ignore[valid-type]
        None, title="Duration (s)", description="Seconds; empty takes the model's default. "
        "APIMart Hailuo-02: 5 or 10; MiniMax and Hailuo-2.3: 6 or 10; 1080p: the shortest only.")
    resolution: Resolution | None = Field(  # type: ignore[valid-type]
        None, title="Resolution", description="Empty takes 768p. 1080p allows only the "
        "shortest duration.")
    ratio: Ratio | None = Field(  # type: ignore[valid-type]
        None, title="Aspect ratio (H3)", description="MiniMax-H3 / H3-Max only; empty for "
        "every other model. Text-to-video needs a concrete ratio; a clip that starts or "
        "ends on an image follows the image (adaptive), so the run's ratio applies only to "
        "clips made from text or references.")
    prompt_optimizer: bool = Field(True, title="Prompt optimizer",
                                   description="Let the provider refine the prompt.")
    fast_pretreatment: bool = Field(False, title="Fast pretreatment",
                                    description="Faster pre-processing, less polish.")
    watermark: bool = Field(False, title="Watermark",
                            description="Ask for the provider's AIGC watermark.")
    take: int = Field(1, ge=1, title="Take", description="A new number makes a new, "
                      "separately paid take.")
    max_cost_usd: float | None = Field(
        None, ge=0, title="Cost limit (USD)", description="Refuse before submitting anything "
        "if the estimate exceeds it.")
    timeout_seconds: float = Field(1800, gt=0, title="Timeout per clip (s)",
                                   description="Total wait per clip, queue included.")
    max_resubmits: int = Field(
        2, ge=0, title="Resubmits after a failure", description="New submits after a "
        "provider-side failure (never for content rejections 1026/1027).")
    callbacks: bool = Field(
        False, title="Callbacks", description="Start a callback receiver in the flow process "
        "and give its URL to the provider, so a finished render is noticed within about a "
        "second (polling stays the fallback).")
    callback_public_url: str | None = Field(
        None, title="Callback public URL", description="URL the provider can reach the "
        "receiver at (behind a proxy or tunnel); empty uses the local address.")
    provider: Provider = Field(
        Provider.APIMART, title="Simulator dialect", description="Dialect of the embedded "
        "simulator when no credentials are given (a credentials block sets its own provider).")

    @field_validator("duration", "ratio", "max_cost_usd", "callback_public_url",
                     mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return blank_to_none(value)

    @field_validator("resolution", mode="before")
    @classmethod
    def _canonical_resolution(cls, value: Any) -> Any:
        return canonical_resolution(value)

    @field_validator("model", mode="before")
    @classmethod
    def _empty_is_default(cls, value: Any) -> Any:
        return DEFAULT_MODEL if blank_to_none(value) is None else value


class ClipSpec(BaseModel):
    """One clip of a batch."""

    name: str | None = Field(None, title="Name", description="Label used for the clip's "
                             "file name, artifact and listings; empty: from the prompt.")
    prompt: str | None = Field(None, title="Prompt",
                               description="Prompt, camera commands in brackets allowed.")
    first_frame_image: str | None = Field(None, title="First frame image",
                                          description="Local path, https URL or s3:// URI.")
    last_frame_image: str | None = Field(None, title="Last frame image",
                                         description="For first+last frame transitions.")
    subject_reference: str | None = Field(None, title="Subject reference image",
                                          description="Character image (MiniMax S2V-01).")
    model: ModelName | None = Field(  # type: ignore[valid-type]
        None, title="Model", description="Overrides the run's model.")
    duration: Duration | None = Field(  # type: ignore[valid-type]
        None, title="Duration (s)", description="Overrides the run's duration.")
    resolution: Resolution | None = Field(  # type: ignore[valid-type]
        None, title="Resolution", description="Overrides the run's resolution.")
    ratio: Ratio | None = Field(  # type: ignore[valid-type]
        None, title="Aspect ratio (H3)", description="Overrides the run's ratio (H3 only).")
    reference_images: list[str] | None = Field(
        None, title="Reference images (H3)", description="MiniMax-H3 "
        "reference mode: up to 9 images (local path, https URL or s3:// URI); not with a "
        "first or last frame.")
    reference_videos: list[str] | None = Field(
        None, title="Reference videos (H3)", description="Up to 3 videos, "
        "2-15 s each and 15 s in total (their seconds are billed).")
    reference_audios: list[str] | None = Field(
        None, title="Reference audios (H3)", description="Up to 3 WAV/MP3 "
        "clips, 2-15 s; need a reference image or video.")
    take: int | None = Field(None, ge=1, title="Take",
                             description="Overrides the run's take number.")

    @field_validator("name", "prompt", "first_frame_image", "last_frame_image",
                     "subject_reference", "model", "duration", "ratio", "take",
                     mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return blank_to_none(value)

    @field_validator("reference_images", "reference_videos", "reference_audios",
                     mode="before")
    @classmethod
    def _references(cls, value: Any) -> Any:
        """Blank entries (a cleared form row) are dropped, and nothing left means not set
        (None); one string is a list of one."""
        if isinstance(value, str):
            value = [value]
        if isinstance(value, (list, tuple)):
            return [v for v in value if blank_to_none(v) is not None] or None
        return value

    @field_validator("resolution", mode="before")
    @classmethod
    def _canonical_resolution(cls, value: Any) -> Any:
        return canonical_resolution(value)

    def to_request(self, options: GenerationOptions) -> VideoRequest:
        """The clip's request under the run's options. The run's ``ratio`` (H3) is the
        default for clips made from text or references; a clip that starts or ends on an
        image follows the image (H3 frame modes are adaptive: a concrete ratio there is
        refused, so the run's is not applied; the clip's own still is, and refused)."""
        framed = bool(self.first_frame_image or self.last_frame_image)
        return VideoRequest(
            model=self.model or options.model,
            prompt=self.prompt,
            duration=self.duration if self.duration is not None else options.duration,
            resolution=self.resolution or options.resolution,
            ratio=self.ratio or (None if framed else options.ratio),
            first_frame_image=self.first_frame_image,
            last_frame_image=self.last_frame_image,
            subject_reference=self.subject_reference,
            reference_images=tuple(self.reference_images or ()),
            reference_videos=tuple(self.reference_videos or ()),
            reference_audios=tuple(self.reference_audios or ()),
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
    host: str | None = Field(None, description="The machine whose disk holds local_path.")
    ratio: str | None = Field(None, description="H3: the aspect ratio of the video (nearest "
                              "of 21:9 ... 9:16); None for other models.")
    has_audio: bool = Field(False, description="The video carries a sound track (H3 clips "
                            "do: native stereo 32 kHz).")
    label: str | None = Field(None, description="What the clip is called in files, "
                              "artifacts and events: its name, else a short prompt slug.")


class BatchResult(BaseModel):
    clips: list[ClipResult]
    failed: dict[str, str] = Field(
        default_factory=dict, description="name -> 'ErrorType: message (task_id=...)'")
    total_cost_usd: float
