"""Prefect flows of prefect-hailuo."""

from prefect_hailuo.flows.batch import generate_batch
from prefect_hailuo.flows.continuity import FilmResult, multi_clip_continuity
from prefect_hailuo.flows.fanout import ChunkResult, generate_chunk
from prefect_hailuo.flows.generation import (
    first_last_frame,
    image_to_video,
    reference_to_video,
    text_to_video,
)
from prefect_hailuo.flows.models import (
    BatchResult,
    ClipResult,
    ClipSpec,
    Destination,
    GenerationOptions,
)
from prefect_hailuo.flows.storyboard import storyboard

__all__ = [
    "BatchResult",
    "ChunkResult",
    "ClipResult",
    "ClipSpec",
    "Destination",
    "GenerationOptions",
    "first_last_frame",
    "generate_batch",
    "generate_chunk",
    "image_to_video",
    "reference_to_video",
    "text_to_video",
    "FilmResult",
    "multi_clip_continuity",
    "storyboard",
]
