"""The single-clip flows: text-to-video, image-to-video, first+last frame (MiniMax-H3:
also a last frame alone) and reference-to-video (MiniMax-H3 reference images, videos
and audios). Every flow takes H3 through its options (model, ratio); cancelling a run
cancels its queued H3 tasks (``tasks/cancellation.py``)."""

from __future__ import annotations

from typing import Annotated

from prefect import flow

from hailuo.capabilities import is_h3
from hailuo.errors import InvalidRequestError
from prefect_hailuo.blocks.credentials import HailuoCredentials
from prefect_hailuo.flows.models import (
    ClipResult,
    ClipSpec,
    Destination,
    GenerationOptions,
    blank_to_none,
)
from prefect_hailuo.flows.params import (
    Credentials,
    CredentialsBlock,
    Elements,
    FirstFrame,
    LastFrame,
    Options,
    Prompt,
    Where,
    pick_credentials,
    titled,
)
from prefect_hailuo.flows.pipeline import publish_artifacts, run_clip
from prefect_hailuo.flows.preflight import prepare_clips
from prefect_hailuo.tasks.cancellation import cancel_queued_tasks


def _one_clip(spec: ClipSpec, options: GenerationOptions, destination: Destination,
              credentials: HailuoCredentials | str | None, title: str) -> ClipResult:
    # Credentials, output folder, bucket, inputs, request and budget: all checked before
    # the submit (flows/preflight.py).
    connection, [spec] = prepare_clips([spec], options, destination, credentials)
    result = run_clip(spec, connection, options, destination)
    publish_artifacts([result], title)
    return result


@flow(name="hailuo-text-to-video", log_prints=True, persist_result=True,
      on_cancellation=[cancel_queued_tasks])
def text_to_video(
    prompt: Prompt = None,
    elements: Elements = None,
    options: Options = GenerationOptions(),
    destination: Where = Destination(),
    credentials: Credentials = None,
    credentials_block: CredentialsBlock = None,
) -> ClipResult:
    """Generate one clip from a prompt, or from the guide's six prompt elements.

    Args:
        prompt: The prompt, camera commands in brackets allowed, e.g. "[Pan left] a
            lighthouse at dusk". Give this or the prompt elements, not both.
        elements: Instead of a prompt: camera, shot, subject, action, scene, lighting and
            style, composed into one prompt for you. Give these or a prompt, not both.
        options: Model, duration, resolution, take, cost limit, timeout.
        destination: Local folder and optional S3 bucket block.
        credentials: The HailuoCredentials block to use, picked from the saved blocks; it
            wins over the credentials block name.
        credentials_block: The same by name (CLI and code): a saved HailuoCredentials
            block, or "simulator" for the embedded simulator (nothing is paid). Empty
            means not set; with neither set the run fails at once, naming the block to
            create.
    """
    text = blank_to_none(prompt)
    given = elements is not None
    if text and given:
        raise InvalidRequestError(
            "give either prompt or elements, not both: prompt is "
            f"{text[:60]!r} and elements has {elements.subject!r} as subject; clear one "  # type: ignore[union-attr]
            "of them", field="prompt")
    if not text and not given:
        raise InvalidRequestError("give a prompt or the prompt elements (at least a "
                                  "subject)", field="prompt")
    if not text:
        text = elements.build()  # type: ignore[union-attr]
    return _one_clip(ClipSpec(prompt=text), options, destination,
                     pick_credentials(credentials, credentials_block), "text-to-video")


@flow(name="hailuo-image-to-video", log_prints=True, persist_result=True,
      on_cancellation=[cancel_queued_tasks])
def image_to_video(
    first_frame_image: FirstFrame,
    prompt: Prompt = None,
    options: Options = GenerationOptions(),
    destination: Where = Destination(),
    credentials: Credentials = None,
    credentials_block: CredentialsBlock = None,
) -> ClipResult:
    """Animate an image. The prompt should describe movement, not re-describe the picture.

    Args:
        first_frame_image: The image the clip starts on: a path on the machine running
            the flow, an https URL, or an s3:// URI (read with the destination's bucket
            block credentials).
        prompt: The movement, camera commands in brackets allowed, e.g. "[Push in] the
            balloon rises". Empty lets the model decide.
        options: Model, duration, resolution, take, cost limit, timeout.
        destination: Local folder and optional S3 bucket block.
        credentials: The HailuoCredentials block to use, picked from the saved blocks; it
            wins over the credentials block name.
        credentials_block: The same by name (CLI and code): a saved HailuoCredentials
            block, or "simulator" for the embedded simulator (nothing is paid). Empty
            means not set; with neither set the run fails at once, naming the block to
            create.
    """
    spec = ClipSpec(prompt=prompt, first_frame_image=first_frame_image)
    _required(spec, "first_frame_image")
    return _one_clip(spec, options, destination,
                     pick_credentials(credentials, credentials_block), "image-to-video")


@flow(name="hailuo-first-last-frame", log_prints=True, persist_result=True,
      on_cancellation=[cancel_queued_tasks])
def first_last_frame(
    first_frame_image: FirstFrame,
    last_frame_image: LastFrame,
    prompt: Prompt = None,
    options: Options = GenerationOptions(),
    destination: Where = Destination(),
    credentials: Credentials = None,
    credentials_block: CredentialsBlock = None,
) -> ClipResult:
    """A transition between two images (MiniMax-Hailuo-02 and MiniMax-H3); the last image
    is cropped to the first's aspect ratio by the provider. MiniMax-H3 also takes the last
    frame alone: leave the first frame empty.

    Args:
        first_frame_image: The image the clip starts on: a path on the machine running
            the flow, an https URL, or an s3:// URI. MiniMax-H3: may be empty (the clip
            only ends on the last image).
        last_frame_image: The image the clip ends on (same kinds of location).
        prompt: What happens in between, camera commands in brackets allowed. Empty lets
            the model decide.
        options: Model (MiniMax-Hailuo-02), duration, resolution, take, cost limit.
        destination: Local folder and optional S3 bucket block.
        credentials: The HailuoCredentials block to use, picked from the saved blocks; it
            wins over the credentials block name.
        credentials_block: The same by name (CLI and code): a saved HailuoCredentials
            block, or "simulator" for the embedded simulator (nothing is paid). Empty
            means not set; with neither set the run fails at once, naming the block to
            create.
    """
    spec = ClipSpec(prompt=prompt, first_frame_image=first_frame_image,
                    last_frame_image=last_frame_image)
    last_only = is_h3(spec.model or options.model)  # H3: a last frame alone is a mode
    _required(spec, *(() if last_only else ("first_frame_image",)), "last_frame_image")
    return _one_clip(spec, options, destination,
                     pick_credentials(credentials, credentials_block), "first-last-frame")


ReferenceImages = Annotated[list[str] | None, titled("Reference images")]
ReferenceVideos = Annotated[list[str] | None, titled("Reference videos")]
ReferenceAudios = Annotated[list[str] | None, titled("Reference audios")]


@flow(name="hailuo-reference-to-video", log_prints=True, persist_result=True,
      on_cancellation=[cancel_queued_tasks])
def reference_to_video(
    prompt: Prompt = None,
    reference_images: ReferenceImages = None,
    reference_videos: ReferenceVideos = None,
    reference_audios: ReferenceAudios = None,
    options: Options = GenerationOptions(model="MiniMax-H3", provider="minimax"),
    destination: Where = Destination(),
    credentials: Credentials = None,
    credentials_block: CredentialsBlock = None,
) -> ClipResult:
    """A clip guided by reference media (MiniMax-H3 / H3-Max on MiniMax's own API): a
    character, a product, a look, a motion or a sound to follow. The clip has its own
    native sound track.

    Args:
        prompt: What happens; say how the references are used ("the woman in the first
            image walks along the pier in the video's rhythm").
        reference_images: Up to 9 images: paths on the machine running the flow, https
            URLs or s3:// URIs.
        reference_videos: Up to 3 videos, 2-15 s each, 15 s in total (their seconds are
            billed at the output rate).
        reference_audios: Up to 3 WAV/MP3 clips, 2-15 s each; need a reference image or
            video.
        options: Model (MiniMax-H3 or MiniMax-H3-Max), ratio (optional with references:
            adaptive by default), duration, resolution, take, cost limit.
        destination: Local folder and optional S3 bucket block.
        credentials: The HailuoCredentials block to use (provider minimax), picked from
            the saved blocks; it wins over the credentials block name.
        credentials_block: The same by name (CLI and code): a saved HailuoCredentials
            block, or "simulator" for the embedded simulator (with options.provider
            minimax; nothing is paid).
    """
    spec = ClipSpec(prompt=prompt, reference_images=reference_images,
                    reference_videos=reference_videos, reference_audios=reference_audios)
    if not spec.reference_images and not spec.reference_videos:
        raise InvalidRequestError("give at least one reference image or reference video "
                                  "(reference audios need one of them)",
                                  field="reference_images")
    return _one_clip(spec, options, destination,
                     pick_credentials(credentials, credentials_block), "reference-to-video")


def _required(spec: ClipSpec, *fields: str) -> None:
    """An empty image parameter is "not set", and these flows need theirs."""
    for name in fields:
        if not getattr(spec, name):
            raise InvalidRequestError(f"{name} is required (a local path, an https URL or an "
                                      "s3:// URI)", field=name)
