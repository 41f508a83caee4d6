"""The run forms a person fills in, as a real Prefect server holds them (issue 17, item 1).

One ``prefect server start`` for the module; ``prefect --no-prompt deploy --all`` from the
repository, exactly as an operator deploys; then each deployment's
``parameter_openapi_schema`` is read back over the REST API, the thing the UI renders its
run form from. Checked: every parameter has a human title and a description, the nested
models' fields too; model, resolution, duration, ratio and provider are enums whose values
come from the capability table; credentials are a block reference (a block picker); the
text-to-video deployment has no default prompt that could hide the prompt elements.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hailuo.capabilities import Provider
from hailuo.choices import DURATIONS, MODELS, RATIOS, RESOLUTIONS
from prefect_hailuo.deployments.serve import deployment_specs
from tests.prefect_servers import PREFECT, Server, running_server

pytestmark = [pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
#: Deployments whose flows are not (yet) on ``flows/params.py``: each with the reason.
#: Strict xfail, so the entry must go once the flow adopts titles and the block picker.
PENDING: dict[str, str] = {}
#: Models the forms show as parameters; each field must carry a title and a description.
FORM_MODELS = ("GenerationOptions", "Destination", "ClipSpec", "PromptElements")


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("forms-server")) as srv:
        yield srv


@pytest.fixture(scope="module")
def deployments(server) -> dict[str, dict]:
    """Deployed the operator's way; returns each deployment as the server answers it."""
    pool = server.run(str(PREFECT), "work-pool", "create", "hailuo", "--type", "process")
    assert pool.returncode == 0, (pool.stdout + pool.stderr)[-2000:]
    deploy = server.run(str(PREFECT), "--no-prompt", "deploy", "--all", timeout=300)
    assert deploy.returncode == 0, (deploy.stdout + deploy.stderr)[-3000:]
    found = httpx.post(f"{server.url}/deployments/filter", json={}, timeout=30).json()
    return {d["name"]: d for d in found}


def _names() -> list:
    return [pytest.param(s["name"], marks=pytest.mark.xfail(strict=True,
                                                            reason=PENDING[s["name"]]))
            if s["name"] in PENDING else s["name"] for s in deployment_specs()]


def _resolve(schema: dict, prop: dict) -> dict:
    """A property's own schema: ``$ref`` / ``anyOf`` with null followed into definitions."""
    options = prop.get("anyOf") or prop.get("allOf") or [prop]
    concrete = [o for o in options if o.get("type") != "null"]
    assert len(concrete) == 1, prop
    target = concrete[0]
    if "$ref" in target:
        return schema["definitions"][target["$ref"].rsplit("/", 1)[1]]
    return target


def _enum(schema: dict, prop: dict) -> list:
    return _resolve(schema, prop)["enum"]


def _human(title: str | None, name: str) -> bool:
    return bool(title) and "_" not in title and title[0].isupper() and title != name


def test_every_flow_is_deployed(deployments):
    assert set(deployments) == {s["name"] for s in deployment_specs()}


@pytest.mark.parametrize("name", _names())
def test_every_parameter_has_a_human_title_and_a_description(deployments, name):
    schema = deployments[name]["parameter_openapi_schema"]
    props = schema["properties"]
    assert props
    for key, prop in props.items():
        assert _human(prop.get("title"), key), (name, key, prop.get("title"))
        assert (prop.get("description") or "").strip(), (name, key)
    for model in FORM_MODELS:
        for key, prop in schema.get("definitions", {}).get(model, {}).get(
                "properties", {}).items():
            assert _human(prop.get("title"), key) or prop.get("title") == key.capitalize(), (
                model, key, prop.get("title"))
            assert (prop.get("description") or "").strip(), (model, key)


@pytest.mark.parametrize("name", _names())
def test_credentials_are_a_block_picker_beside_the_name(deployments, name):
    schema = deployments[name]["parameter_openapi_schema"]
    picker = _resolve(schema, schema["properties"]["credentials"])
    assert picker["block_type_slug"] == "hailuo-credentials"
    assert schema["properties"]["credentials_block"]["title"] == "Credentials block name"
    # the name form stays for the CLI and code; the deployment still defaults to it
    assert deployments[name]["parameters"]["credentials_block"] == "hailuo"


@pytest.mark.parametrize("name", [s["name"] for s in deployment_specs()])
def test_model_resolution_duration_ratio_provider_are_dropdowns(deployments, name):
    schema = deployments[name]["parameter_openapi_schema"]
    options = schema["definitions"]["GenerationOptions"]["properties"]
    assert _enum(schema, options["model"]) == list(MODELS)
    assert _enum(schema, options["resolution"]) == list(RESOLUTIONS)
    assert _enum(schema, options["duration"]) == list(DURATIONS)
    assert _enum(schema, options["ratio"]) == list(RATIOS)
    assert _enum(schema, options["provider"]) == [p.value for p in Provider]
    if "ClipSpec" in schema["definitions"]:
        clip = schema["definitions"]["ClipSpec"]["properties"]
        assert _enum(schema, clip["model"]) == list(MODELS)
        assert _enum(schema, clip["resolution"]) == list(RESOLUTIONS)
        assert _enum(schema, clip["duration"]) == list(DURATIONS)
        assert _enum(schema, clip["ratio"]) == list(RATIOS)
    if "Storyboard" in schema["definitions"]:
        board = schema["definitions"]["Storyboard"]["properties"]
        segment = schema["definitions"]["Segment"]["properties"]
        for props in (board, segment):
            assert _enum(schema, props["resolution"]) == list(RESOLUTIONS)
            assert _enum(schema, props["duration"]) == list(DURATIONS)
        assert _enum(schema, board["model"]) == list(MODELS)


def test_the_enums_come_from_the_capability_table():
    from hailuo.capabilities import CAPABILITIES, H3_RATIOS, V2_CAPABILITIES

    rows = (*CAPABILITIES, *V2_CAPABILITIES)
    assert set(MODELS) == {c.model for c in rows}
    assert set(RESOLUTIONS) == {r for c in rows for r in c.options}
    assert set(DURATIONS) == {d for c in rows for ds in c.options.values() for d in ds}
    assert tuple(H3_RATIOS) == RATIOS
    assert {"512p", "768p", "1080p"} <= set(RESOLUTIONS) and {5, 6, 10} <= set(DURATIONS)


def test_text_to_video_has_no_default_prompt_to_hide_the_elements(deployments, server):
    deployment = deployments["text-to-video"]
    assert "prompt" not in deployment["parameters"]
    schema = deployment["parameter_openapi_schema"]
    assert schema["properties"]["prompt"].get("default") is None
    assert schema["properties"]["elements"]["title"] == "Prompt elements"
    # the example schedule carries its own prompt (inactive until switched on)
    schedules = deployment["schedules"]
    assert schedules and all(s["active"] is False for s in schedules)
    assert all(s["parameters"]["prompt"].startswith("[Push in]") for s in schedules)
