"""Camera-command parsing, the six-element builder and the linter."""

from __future__ import annotations

import pytest

from hailuo.errors import InvalidRequestError
from hailuo.models import MAX_PROMPT_CHARS
from hailuo.prompts import (
    CameraCommand,
    PromptElements,
    build_prompt,
    lint_prompt,
    normalise_prompt,
    parse_camera_commands,
)

ALL = [
    "Truck left", "Truck right", "Pan left", "Pan right", "Push in", "Pull out",
    "Pedestal up", "Pedestal down", "Tilt up", "Tilt down", "Zoom in", "Zoom out",
    "Shake", "Tracking shot", "Static shot",
]


def test_enum_has_exactly_the_15_commands() -> None:
    assert [c.value for c in CameraCommand] == ALL


@pytest.mark.parametrize("name", ALL)
def test_each_command_parses(name: str) -> None:
    assert parse_camera_commands(f"A cat sleeps [{name}] on a sofa") == [[CameraCommand(name)]]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[  pan LEFT ]", [CameraCommand.PAN_LEFT]),
        ("[ZOOM   IN]", [CameraCommand.ZOOM_IN]),
        ("[pan left,pedestal UP]", [CameraCommand.PAN_LEFT, CameraCommand.PEDESTAL_UP]),
        ("[static Shot]", [CameraCommand.STATIC_SHOT]),
    ],
)
def test_case_and_spacing_are_normalised(text: str, expected: list[CameraCommand]) -> None:
    assert parse_camera_commands(text) == [expected]


def test_brackets_keep_their_order() -> None:
    prompt = "[Push in] a door opens [Pan left, Tilt up] then [Static shot]"
    assert parse_camera_commands(prompt) == [
        [CameraCommand.PUSH_IN],
        [CameraCommand.PAN_LEFT, CameraCommand.TILT_UP],
        [CameraCommand.STATIC_SHOT],
    ]


def test_no_brackets_means_no_commands() -> None:
    assert parse_camera_commands("a quiet lake at dawn") == []


def test_three_per_bracket_allowed_four_rejected() -> None:
    assert len(parse_camera_commands("[Pan left, Tilt up, Zoom in]")[0]) == 3
    with pytest.raises(InvalidRequestError) as exc:
        parse_camera_commands("[Pan left, Tilt up, Zoom in, Shake]")
    assert exc.value.field == "prompt"
    assert "at most 3" in exc.value.message


@pytest.mark.parametrize(
    ("bad", "suggestion"),
    [
        ("Slow zoom in", "Zoom in"),
        ("Pan-left", "Pan left"),
        ("zoom-in", "Zoom in"),
        ("Trucking left", "Truck left"),
        ("Tracking", "Tracking shot"),
        ("Tilt upp", "Tilt up"),
    ],
)
def test_near_miss_gets_did_you_mean(bad: str, suggestion: str) -> None:
    with pytest.raises(InvalidRequestError) as exc:
        parse_camera_commands(f"A car drives [{bad}] along the coast")
    assert exc.value.field == "prompt"
    assert repr(bad) in exc.value.message
    assert f"did you mean '{suggestion}'?" in exc.value.message


def test_far_miss_lists_known_commands() -> None:
    with pytest.raises(InvalidRequestError) as exc:
        parse_camera_commands("[Dolly vertigo]")
    assert "did you mean" not in exc.value.message
    assert "known commands" in exc.value.message
    assert all(name in exc.value.message for name in ALL)


@pytest.mark.parametrize(
    "prompt", ["[]", "[  ]", "[Pan left,]", "[Pan left", "Pan left]", "[[Pan left]]", "a ] b [ c"]
)
def test_empty_and_unbalanced_brackets_rejected(prompt: str) -> None:
    with pytest.raises(InvalidRequestError) as exc:
        parse_camera_commands(prompt)
    assert exc.value.field == "prompt"


def test_normalise_prompt_rewrites_brackets_only() -> None:
    assert (
        normalise_prompt("[pan left,pedestal UP] A Fox runs,  fast [zoom IN]")
        == "[Pan left, Pedestal up] A Fox runs,  fast [Zoom in]"
    )
    assert normalise_prompt("no commands here") == "no commands here"


def test_normalise_prompt_raises_like_parse() -> None:
    with pytest.raises(InvalidRequestError, match="did you mean 'Zoom in'"):
        normalise_prompt("[Slow zoom in] product rotates")


# --------------------------------------------------------------------------- builder

GUIDE = dict(
    camera="Tracking shot",
    subject="a woman in a red coat",
    action="walks briskly through a rain-soaked Manhattan street",
    scene="at dusk",
    lighting="neon signs reflecting on the wet pavement",
    style="cinematic noir style",
)


def test_build_composes_the_guide_example() -> None:
    assert PromptElements(**GUIDE).build() == (
        "[Tracking shot] A woman in a red coat walks briskly through a rain-soaked Manhattan "
        "street, at dusk, neon signs reflecting on the wet pavement, cinematic noir style"
    )


def test_build_with_shot_and_style_suffix() -> None:
    prompt = PromptElements(**GUIDE, shot="wide-angle shot").build(
        style_suffix="warm 35mm film grain."
    )
    assert prompt.startswith("[Tracking shot] Wide-angle shot, a woman in a red coat walks")
    assert prompt.endswith("cinematic noir style, warm 35mm film grain")


@pytest.mark.parametrize(
    ("camera", "expected"),
    [
        ("pan left, pedestal up", "[Pan left, Pedestal up]"),
        ("[pan left] [zoom in]", "[Pan left] [Zoom in]"),
        (["Pan left", "Zoom in"], "[Pan left] [Zoom in]"),
        (["Pan left, Pedestal up", "Zoom in"], "[Pan left, Pedestal up] [Zoom in]"),
        ([["pan left", "pedestal up"], ["ZOOM IN"]], "[Pan left, Pedestal up] [Zoom in]"),
        ([CameraCommand.SHAKE], "[Shake]"),
        (None, ""),
    ],
)
def test_camera_accepts_several_shapes(camera: object, expected: str) -> None:
    prompt = PromptElements(camera=camera, subject="a boat").build()
    assert prompt == f"{expected} A boat".strip()


def test_subject_only() -> None:
    assert build_prompt(subject="a red kite") == "A red kite"


def test_build_prompt_shortcut_matches_model() -> None:
    assert build_prompt(**GUIDE, style_suffix="soft grain") == PromptElements(**GUIDE).build(
        "soft grain"
    )


def test_build_prompt_bad_camera_names_camera_field() -> None:
    with pytest.raises(InvalidRequestError) as exc:
        build_prompt(subject="a cat", camera="slow zoom in")
    assert exc.value.field == "camera"
    assert "did you mean 'Zoom in'" in exc.value.message


def test_build_prompt_four_commands_in_list_names_camera() -> None:
    with pytest.raises(InvalidRequestError) as exc:
        build_prompt(subject="a cat", camera=[["Pan left", "Tilt up", "Zoom in", "Shake"]])
    assert exc.value.field == "camera"


def test_build_prompt_requires_subject() -> None:
    with pytest.raises(InvalidRequestError) as exc:
        build_prompt(action="runs")
    assert exc.value.field == "subject"
    with pytest.raises(InvalidRequestError) as exc:
        build_prompt(subject="   ")
    assert exc.value.field == "subject"


def test_bad_bracket_inside_an_element_names_that_element() -> None:
    with pytest.raises(InvalidRequestError) as exc:
        PromptElements(subject="a barista", action="pours milk [Zoom inn]").build()
    assert exc.value.field == "action"
    assert "did you mean 'Zoom in'" in exc.value.message


def test_brackets_inside_elements_are_normalised() -> None:
    prompt = PromptElements(subject="a barista", action="pours milk, [zoom IN]").build()
    assert prompt == "A barista pours milk, [Zoom in]"


def test_too_long_names_the_longest_element() -> None:
    with pytest.raises(InvalidRequestError) as exc:
        PromptElements(subject="a hill", scene="x" * MAX_PROMPT_CHARS).build()
    assert exc.value.field == "scene"
    assert str(MAX_PROMPT_CHARS) in exc.value.message


def test_style_suffix_can_push_over_the_limit() -> None:
    elements = PromptElements(subject="s" * 1000)
    assert len(elements.build()) == 1000
    with pytest.raises(InvalidRequestError) as exc:
        elements.build(style_suffix="z" * 1500)
    assert exc.value.field == "style_suffix"


def test_every_field_is_described() -> None:
    for name, info in PromptElements.model_fields.items():
        assert info.description, name


# --------------------------------------------------------------------------- lint

GOOD = (
    "[Tracking shot] A woman in a red coat walks briskly through a rain-soaked Manhattan "
    "street at dusk, neon signs reflecting on the wet pavement, cinematic noir style"
)


def test_good_prompt_has_no_warnings() -> None:
    assert lint_prompt(GOOD) == []


def test_short_prompt_is_vague() -> None:
    warnings = lint_prompt("a woman walking in a city")
    assert any("vague" in w for w in warnings)
    assert any("no camera command" in w for w in warnings)


def test_long_prompt_without_camera_lighting_style_is_vague() -> None:
    warnings = lint_prompt(
        "a woman with a large dog walks slowly along the river towards the old bridge near town"
    )
    assert any("vague" in w and "lighting" in w for w in warnings)


def test_missing_camera_only() -> None:
    warnings = lint_prompt(GOOD.replace("[Tracking shot] ", ""))
    assert len(warnings) == 1
    assert "no camera command" in warnings[0]


def test_i2v_motion_prompt_is_fine() -> None:
    prompt = "[Zoom in] Product rotates gently, soft studio lighting"
    assert lint_prompt(prompt, image_to_video=True) == []


@pytest.mark.parametrize(
    "prompt",
    [
        "[Static shot] A photo of a young woman with long black hair wearing a red dress "
        "and golden earrings, white background",
        "[Push in] In the image a cat sits on a sofa",
        "[Push in] Tall old wooden house, red roof, green door, white fence, blue sky",
    ],
)
def test_i2v_redescribing_the_picture_warns(prompt: str) -> None:
    warnings = lint_prompt(prompt, image_to_video=True)
    assert any("re-describes" in w for w in warnings)


def test_redescribing_is_not_flagged_for_text_to_video() -> None:
    prompt = "[Push in] Tall old wooden house, red roof, green door, white fence, cinematic style"
    assert not any("re-describes" in w for w in lint_prompt(prompt))


def test_near_limit_and_over_limit() -> None:
    assert any("close to" in w for w in lint_prompt(GOOD + ", " + "very " * 300))
    assert any("over the" in w for w in lint_prompt(GOOD + ", " + "very " * 400))
    assert not any("characters" in w for w in lint_prompt(GOOD))


@pytest.mark.parametrize(
    ("bracket", "needle"),
    [
        ("[Pan left, Pan right]", "Pan left and Pan right"),
        ("[Zoom in, Zoom out]", "Zoom in and Zoom out"),
        ("[Push in, Pull out]", "Push in and Pull out"),
        ("[Static shot, Pan left]", "Static shot with camera motion"),
        ("[Tilt up, Tilt up]", "repeats Tilt up"),
    ],
)
def test_conflicting_commands_warn(bracket: str, needle: str) -> None:
    warnings = lint_prompt(GOOD.replace("[Tracking shot]", bracket))
    assert any(needle in w for w in warnings), warnings


def test_compatible_combination_does_not_warn() -> None:
    assert lint_prompt(GOOD.replace("[Tracking shot]", "[Pan left, Pedestal up]")) == []


def test_lint_never_raises_on_bad_brackets() -> None:
    warnings = lint_prompt("[Slow zoom in] " + GOOD.replace("[Tracking shot] ", ""))
    assert any("did you mean 'Zoom in'" in w for w in warnings)
    assert not any("no camera command" in w for w in warnings)  # one message, not two
