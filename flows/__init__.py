"""Prefect flows of prefect-hailuo."""

from flows.batch import generate_batch
from flows.continuity import FilmResult, multi_clip_continuity
from flows.generation import first_last_frame, image_to_video, text_to_video
from flows.models import BatchResult, ClipResult, ClipSpec, Destination, GenerationOptions

__all__ = [
    "BatchResult",
    "ClipResult",
    "ClipSpec",
    "Destination",
    "GenerationOptions",
    "first_last_frame",
    "generate_batch",
    "image_to_video",
    "text_to_video",
    "FilmResult",
    "multi_clip_continuity",
]
