"""Prefect tasks: thin, documented wrappers over the ``hailuo`` core package."""

from tasks.generation import submit_generation, wait_for_generation
from tasks.media import download_video, extract_last_frame, make_thumbnail
from tasks.prompt import build_prompt
from tasks.stitching import make_contact_sheet, make_poster, stitch_clips, upload_still
from tasks.storage import fetch_input_image, upload_to_s3

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
]
