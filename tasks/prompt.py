"""Prompt task: the guide's six elements plus camera commands -> one validated prompt."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from hailuo.prompts import PromptElements, lint_prompt


@task(name="build-prompt", cache_policy=NO_CACHE)
def build_prompt(elements: PromptElements, style_suffix: str | None = None,
                 image_to_video: bool = False) -> str:
    """Compose and validate a prompt (camera commands checked); lint warnings are logged."""
    prompt = elements.build(style_suffix=style_suffix)
    logger = get_run_logger()
    for warning in lint_prompt(prompt, image_to_video=image_to_video):
        logger.warning("prompt: %s", warning)
    return prompt
