"""Prefect tasks: thin, documented wrappers over the ``hailuo`` core package."""

from prefect_hailuo.tasks.generation import submit_generation, wait_for_generation
from prefect_hailuo.tasks.media import download_video, extract_last_frame, make_thumbnail
from prefect_hailuo.tasks.prompt import build_prompt
from prefect_hailuo.tasks.stitching import (
    make_contact_sheet,
    make_poster,
    stitch_clips,
    upload_still,
)
from prefect_hailuo.tasks.storage import fetch_input_image, upload_to_s3
from prefect_hailuo.tasks.upscale import upscale_to_2k

__all__ = [
    "build_prompt",
    "download_video",
    "extract_last_frame",
    "fetch_input_image",
    "make_thumbnail",
    "submit_generation",
    "upload_to_s3",
    "wait_for_generation",
    "make_contact_sheet",
    "make_poster",
    "stitch_clips",
    "upload_still",
    "upscale_to_2k",
]
