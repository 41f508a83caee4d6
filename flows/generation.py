"""The three single-clip flows: text-to-video, image-to-video, first+last frame."""

from __future__ import annotations

from prefect import flow

from hailuo.pricing import check_budget
from hailuo.prompts import PromptElements
from prefect_hailuo.blocks.credentials import resolve_connection
from prefect_hailuo.flows.models import ClipResult, ClipSpec, Destination, GenerationOptions
from prefect_hailuo.flows.pipeline import publish_artifacts, resolve_inputs, run_clip


def _one_clip(spec: ClipSpec, options: GenerationOptions, destination: Destination,
              credentials_block: str | None, title: str) -> ClipResult:
    connection = resolve_connection(credentials_block, options.provider)
    spec = resolve_inputs(spec, destination)
    check_budget([spec.to_request(options)], connection.provider, options.max_cost_usd)
    result = run_clip(spec, connection, options, destination)
    publish_artifacts([result], title)
    return result


@flow(name="hailuo-text-to-video", log_prints=True)
def text_to_video(
    prompt: str | None = None,
    elements: PromptElements | None = None,
    options: GenerationOptions = GenerationOptions(),
    destination: Destination = Destination(),
    credentials_block: str | None = None,
) -> ClipResult:
    """Generate one clip from a prompt (or from the guide's six prompt elements).

    Args:
        prompt: the prompt, camera commands in brackets allowed, e.g. "[Pan left] ...".
        elements: alternatively, camera/subject/action/scene/lighting/style, composed for you.
        options: model, duration, resolution, take, cost limit, timeout.
        destination: local folder and optional S3 bucket block.
        credentials_block: a saved HailuoCredentials block; empty runs the embedded simulator.
    """
    if not prompt and elements is None:
        raise ValueError("give a prompt or prompt elements")
    text = prompt or elements.build()  # type: ignore[union-attr]
    return _one_clip(ClipSpec(prompt=text), options, destination, credentials_block,
                     "text-to-video")


@flow(name="hailuo-image-to-video", log_prints=True)
def image_to_video(
    first_frame_image: str,
    prompt: str | None = None,
    options: GenerationOptions = GenerationOptions(),
    destination: Destination = Destination(),
    credentials_block: str | None = None,
) -> ClipResult:
    """Animate an image. The prompt should describe movement, not re-describe the picture.

    Args:
        first_frame_image: a local path, an https URL or an s3:// URI (read with the
            destination's bucket block credentials).
    """
    return _one_clip(ClipSpec(prompt=prompt, first_frame_image=first_frame_image), options,
                     destination, credentials_block, "image-to-video")


@flow(name="hailuo-first-last-frame", log_prints=True)
def first_last_frame(
    first_frame_image: str,
    last_frame_image: str,
    prompt: str | None = None,
    options: GenerationOptions = GenerationOptions(),
    destination: Destination = Destination(),
    credentials_block: str | None = None,
) -> ClipResult:
    """A transition between two images (MiniMax-Hailuo-02 only); the last image is cropped
    to the first's aspect ratio by the provider."""
    return _one_clip(ClipSpec(prompt=prompt, first_frame_image=first_frame_image,
                              last_frame_image=last_frame_image), options, destination,
                     credentials_block, "first-last-frame")
