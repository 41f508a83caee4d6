"""Flow parameters as the Prefect UI's run form shows them: human titles, and credentials
chosen with a block picker.

How Prefect 3.9 builds a deployment's ``parameter_openapi_schema`` from a flow
(``prefect.utilities.callables.parameter_schema``): each parameter's *description* comes
from the Google-style ``Args:`` section of the flow's docstring (or a ``Field`` default's
description); its *title* is always set to the parameter's name (``credentials_block``),
overriding a ``Field(title=...)`` given in ``Annotated``. Only ``json_schema_extra`` is
applied after that, so ``titled()`` puts the title there. Models used as parameters
(``GenerationOptions``, ``Destination``, ``ClipSpec``) keep their own ``Field`` titles.

A parameter typed as a ``Block`` subclass renders as a block picker (the schema names the
block type's slug); when a run starts, Prefect turns the picked ``{"$ref": ...}`` into the
loaded block, which ``resolve_connection`` then uses by its saved name.
``tests/test_run_forms.py`` reads the schemas back from a real server.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, Field
from pydantic.fields import FieldInfo

from hailuo.prompts import PromptElements
from hailuo.storyboard import Storyboard
from prefect_hailuo.blocks.credentials import HailuoCredentials
from prefect_hailuo.flows.models import ClipSpec, Destination, GenerationOptions, blank_to_none


def titled(title: str) -> FieldInfo:
    """``Annotated`` metadata giving a flow parameter a human title in the run form."""
    return Field(json_schema_extra={"title": title})


Prompt = Annotated[str | None, titled("Prompt")]
def _no_elements(value: object) -> object:
    """Elements left empty in a form (``{}``, or every field blank) are "not set"."""
    if isinstance(value, dict) and not any(
            v.strip() if isinstance(v, str) else v for v in value.values()):
        return None
    return value


Elements = Annotated[PromptElements | None, BeforeValidator(_no_elements),
                     titled("Prompt elements")]
FirstFrame = Annotated[str, titled("First frame image")]
LastFrame = Annotated[str, titled("Last frame image")]
Clips = Annotated[list[ClipSpec], titled("Clips")]
BatchName = Annotated[str | None, titled("Batch name")]
StoryboardInput = Annotated[Storyboard | str, titled("Storyboard")]
Options = Annotated[GenerationOptions, titled("Generation options")]
Where = Annotated[Destination, titled("Output destination")]
Credentials = Annotated[HailuoCredentials | None, titled("Credentials")]
CredentialsBlock = Annotated[str | None, titled("Credentials block name")]
MaxConcurrency = Annotated[int, titled("Clips at once")]
AllowFailures = Annotated[bool, titled("Finish despite failed clips")]
SpreadOver = Annotated[str | None, titled("Spread over workers (chunk deployment)")]
ClipsPerRun = Annotated[int, titled("Clips per chunk run")]

def pick_credentials(credentials: HailuoCredentials | None, credentials_block: str | None
                     ) -> HailuoCredentials | str | None:
    """The credentials a run uses: the block picked in the form, else the name (empty:
    not set). A picked block wins over a name (the deployments name ``hailuo`` by
    default, so a person who picks another block in the form gets the one picked)."""
    name = blank_to_none(credentials_block)
    if credentials is None:
        return name
    picked = getattr(credentials, "_block_document_name", None)
    if name and picked != name:
        from prefect import get_run_logger

        get_run_logger().info("credentials: using the picked block %r, not credentials_block "
                              "%r", picked or "(unsaved)", name)
    return credentials


__all__ = [
    "AllowFailures", "BatchName", "Clips", "ClipsPerRun", "Credentials", "CredentialsBlock",
    "Elements", "FirstFrame", "LastFrame", "MaxConcurrency", "Options", "Prompt", "StoryboardInput",
    "SpreadOver", "Where", "pick_credentials", "titled",
]
