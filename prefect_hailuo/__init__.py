"""prefect-hailuo: MiniMax Hailuo video generation as dependable Prefect 3 flows.

The public API, importable from here::

    from prefect_hailuo import HailuoCredentials, text_to_video, GenerationOptions

Layers point one way: ``hailuo`` (the pure core, no Prefect) <- ``prefect_hailuo.blocks``
<- ``prefect_hailuo.tasks`` <- ``prefect_hailuo.flows`` <- ``prefect_hailuo.deployments``
<- ``prefect_hailuo.cli``.

Why the names are resolved lazily (PEP 562): ``import prefect_hailuo`` must stay cheap,
because the ``hailuo`` command checks its input before Prefect (about 2 s to import) is
loaded, and it lives in this package. ``dir()`` lists every public name, so Prefect's
``prefect block register -m prefect_hailuo`` (which walks the module's members) and
``load_prefect_collections()`` find the blocks as with eager imports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

#: public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    # blocks
    "HailuoCredentials": "prefect_hailuo.blocks",
    "HailuoConnection": "prefect_hailuo.blocks",
    "resolve_connection": "prefect_hailuo.blocks",
    # flow parameters and results
    "ClipSpec": "prefect_hailuo.flows.models",
    "Destination": "prefect_hailuo.flows.models",
    "GenerationOptions": "prefect_hailuo.flows.models",
    "ClipResult": "prefect_hailuo.flows.models",
    "BatchResult": "prefect_hailuo.flows.models",
    "FilmResult": "prefect_hailuo.flows.continuity",
    "NarratedFilmResult": "prefect_hailuo.flows.film",
    # flows
    "text_to_video": "prefect_hailuo.flows.generation",
    "image_to_video": "prefect_hailuo.flows.generation",
    "first_last_frame": "prefect_hailuo.flows.generation",
    "reference_to_video": "prefect_hailuo.flows.generation",
    "generate_batch": "prefect_hailuo.flows.batch",
    "multi_clip_continuity": "prefect_hailuo.flows.continuity",
    "storyboard": "prefect_hailuo.flows.storyboard",
    "film": "prefect_hailuo.flows.film",
    # tasks
    "build_prompt": "prefect_hailuo.tasks",
    "submit_generation": "prefect_hailuo.tasks",
    "wait_for_generation": "prefect_hailuo.tasks",
    "download_video": "prefect_hailuo.tasks",
    "make_thumbnail": "prefect_hailuo.tasks",
    "extract_last_frame": "prefect_hailuo.tasks",
    "fetch_input_image": "prefect_hailuo.tasks",
    "upload_to_s3": "prefect_hailuo.tasks",
    "stitch_clips": "prefect_hailuo.tasks",
    "make_poster": "prefect_hailuo.tasks",
    "make_contact_sheet": "prefect_hailuo.tasks",
    "upload_still": "prefect_hailuo.tasks",
    "upscale_to_2k": "prefect_hailuo.tasks",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'prefect_hailuo' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # resolved once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


if TYPE_CHECKING:  # static analysers and IDEs see the real objects
    from prefect_hailuo.blocks import HailuoConnection, HailuoCredentials, resolve_connection
    from prefect_hailuo.flows.batch import generate_batch
    from prefect_hailuo.flows.continuity import FilmResult, multi_clip_continuity
    from prefect_hailuo.flows.film import NarratedFilmResult, film
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
    from prefect_hailuo.tasks import (
        build_prompt,
        download_video,
        extract_last_frame,
        fetch_input_image,
        make_contact_sheet,
        make_poster,
        make_thumbnail,
        stitch_clips,
        submit_generation,
        upload_still,
        upload_to_s3,
        upscale_to_2k,
        wait_for_generation,
    )
