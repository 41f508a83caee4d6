"""The three single-clip flows: text-to-video, image-to-video, first+last frame."""

from __future__ import annotations

from prefect import flow

from hailuo.errors import InvalidRequestError
from hailuo.prompts import PromptElements
from prefect_hailuo.flows.models import ClipResult, ClipSpec, Destination, GenerationOptions
from prefect_hailuo.flows.pipeline import publish_artifacts, run_clip
from prefect_hailuo.flows.preflight import prepare_clips


def _one_clip(spec: ClipSpec, options: GenerationOptions, destination: Destination,
              credentials_block: str | None, title: str) -> ClipResult:
    # Credentials, output folder, bucket, inputs, request and budget: all checked before
    # the submit (flows/preflight.py).
    connection, [spec] = prepare_clips([spec], options, destination, credentials_block)
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
    spec = ClipSpec(prompt=prompt, first_frame_image=first_frame_image)
    _required(spec, "first_frame_image")
    return _one_clip(spec, options, destination, credentials_block, "image-to-video")


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
    spec = ClipSpec(prompt=prompt, first_frame_image=first_frame_image,
                    last_frame_image=last_frame_image)
    _required(spec, "first_frame_image", "last_frame_image")
    return _one_clip(spec, options, destination, credentials_block, "first-last-frame")


def _required(spec: ClipSpec, *fields: str) -> None:
    """An empty image parameter is "not set", and these flows need theirs."""
    for name in fields:
        if not getattr(spec, name):
            raise InvalidRequestError(f"{name} is required (a local path, an https URL or an "
                                      "s3:// URI)", field=name)
