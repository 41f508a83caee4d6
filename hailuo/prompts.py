"""Prompt text for Hailuo: camera commands, a six-element builder and a linter.

Why this exists: Hailuo reads bracketed camera commands (``[Pan left, Pedestal up]``)
out of the prompt. A misspelt command (``[Slow zoom in]``, ``[pan-left]``) is not an
error on the provider's side, it is silently treated as prose, so the paid clip just
does not move the way it was meant to. We therefore parse every bracket locally and
refuse unknown commands before any money is spent, with a "did you mean" hint.

The builder follows the guide's six elements (camera shot or motion, subject, action,
scene, lighting, style/mood); the linter only *warns* (it never raises), because a
vague prompt is legal, merely wasteful.
"""

from __future__ import annotations

import difflib
import re
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hailuo.capabilities import MAX_PROMPT_CHARS
from hailuo.errors import InvalidRequestError

MAX_COMMANDS_PER_BRACKET = 3
LONG_PROMPT_WARN_CHARS = 1500
MIN_T2V_WORDS = 8


class CameraCommand(StrEnum):
    """The 15 camera commands Hailuo understands, spelt exactly as the provider wants."""

    TRUCK_LEFT = "Truck left"
    TRUCK_RIGHT = "Truck right"
    PAN_LEFT = "Pan left"
    PAN_RIGHT = "Pan right"
    PUSH_IN = "Push in"
    PULL_OUT = "Pull out"
    PEDESTAL_UP = "Pedestal up"
    PEDESTAL_DOWN = "Pedestal down"
    TILT_UP = "Tilt up"
    TILT_DOWN = "Tilt down"
    ZOOM_IN = "Zoom in"
    ZOOM_OUT = "Zoom out"
    SHAKE = "Shake"
    TRACKING_SHOT = "Tracking shot"
    STATIC_SHOT = "Static shot"


_BY_KEY: dict[str, CameraCommand] = {c.value.lower(): c for c in CameraCommand}
_KNOWN = ", ".join(c.value for c in CameraCommand)

# Pairs that pull the camera two ways at once inside one bracket.
_OPPOSITES: tuple[tuple[CameraCommand, CameraCommand], ...] = (
    (CameraCommand.TRUCK_LEFT, CameraCommand.TRUCK_RIGHT),
    (CameraCommand.PAN_LEFT, CameraCommand.PAN_RIGHT),
    (CameraCommand.PUSH_IN, CameraCommand.PULL_OUT),
    (CameraCommand.PEDESTAL_UP, CameraCommand.PEDESTAL_DOWN),
    (CameraCommand.TILT_UP, CameraCommand.TILT_DOWN),
    (CameraCommand.ZOOM_IN, CameraCommand.ZOOM_OUT),
)


# --------------------------------------------------------------------------- parsing


def _key(text: str) -> str:
    """Case- and whitespace-insensitive lookup key: ``'  pan   LEFT '`` -> ``'pan left'``."""
    return " ".join(text.split()).lower()


def _suggest(key: str) -> CameraCommand | None:
    """The closest canonical command for a near miss, or None when nothing is close.

    Punctuation is turned into spaces first so ``pan-left`` finds ``Pan left``; a known
    command contained in the text (``slow zoom in``) wins over plain similarity.
    """
    loose = " ".join(re.sub(r"[^a-z]+", " ", key).split())
    contained = [k for k in _BY_KEY if re.search(rf"\b{re.escape(k)}\b", loose)]
    if contained:
        return _BY_KEY[max(contained, key=len)]
    close = difflib.get_close_matches(loose, list(_BY_KEY), n=1, cutoff=0.6)
    return _BY_KEY[close[0]] if close else None


def _command(text: str, field: str) -> CameraCommand:
    key = _key(text)
    if not key:
        raise InvalidRequestError(
            "empty camera command in brackets; write e.g. [Pan left] or [Pan left, Tilt up]",
            field=field,
        )
    if key in _BY_KEY:
        return _BY_KEY[key]
    hint = _suggest(key)
    advice = f"did you mean '{hint.value}'?" if hint else f"known commands: {_KNOWN}"
    raise InvalidRequestError(
        f"unknown camera command {text.strip()!r} in brackets; {advice}", field=field
    )


def _scan(prompt: str, field: str) -> list[tuple[int, int, list[CameraCommand]]]:
    """Every bracket as ``(start, end, commands)``; ``prompt[start:end]`` is ``[...]``."""
    found: list[tuple[int, int, list[CameraCommand]]] = []
    start: int | None = None
    for i, ch in enumerate(prompt):
        if ch == "[":
            if start is not None:
                raise InvalidRequestError(
                    f"unbalanced brackets: '[' at position {i} opens inside another bracket; "
                    "camera commands cannot nest",
                    field=field,
                )
            start = i
        elif ch == "]":
            if start is None:
                raise InvalidRequestError(
                    f"unbalanced brackets: ']' at position {i} has no matching '['",
                    field=field,
                )
            found.append((start, i + 1, _bracket(prompt[start + 1 : i], field)))
            start = None
    if start is not None:
        raise InvalidRequestError(
            f"unbalanced brackets: '[' at position {start} is never closed", field=field
        )
    return found


def _bracket(inner: str, field: str) -> list[CameraCommand]:
    if not inner.strip():
        raise InvalidRequestError(
            "empty brackets []; put one to three camera commands inside, e.g. [Zoom in]",
            field=field,
        )
    parts = inner.split(",")
    if len(parts) > MAX_COMMANDS_PER_BRACKET:
        raise InvalidRequestError(
            f"[{inner.strip()}] combines {len(parts)} camera commands; at most "
            f"{MAX_COMMANDS_PER_BRACKET} may run together in one bracket (use a second "
            "bracket to run more in sequence)",
            field=field,
        )
    return [_command(p, field) for p in parts]


def parse_camera_commands(prompt: str, *, field: str = "prompt") -> list[list[CameraCommand]]:
    """Every ``[...]`` bracket in order, each as the list of commands it runs together.

    Raises ``InvalidRequestError(field=field)`` for unknown commands (with a
    did-you-mean), more than three per bracket, empty or unbalanced brackets.
    """
    return [cmds for _, _, cmds in _scan(prompt, field)]


def _render(commands: list[CameraCommand]) -> str:
    return "[" + ", ".join(c.value for c in commands) + "]"


def normalise_prompt(prompt: str, *, field: str = "prompt") -> str:
    """The same prompt with every bracket in canonical spelling (``[pan left,pedestal UP]``
    -> ``[Pan left, Pedestal up]``); everything outside brackets is left untouched."""
    out: list[str] = []
    pos = 0
    for start, end, cmds in _scan(prompt, field):
        out.append(prompt[pos:start])
        out.append(_render(cmds))
        pos = end
    out.append(prompt[pos:])
    return "".join(out)


# --------------------------------------------------------------------------- builder


def _coerce_camera(value: Any) -> list[list[CameraCommand]]:
    """Accept the shapes people actually write for the camera element.

    * ``None`` / ``""`` -> no camera command
    * ``"Pan left, Pedestal up"`` -> one bracket; ``"[Pan left] [Zoom in]"`` -> as written
    * ``["Pan left, Pedestal up", "Zoom in"]`` -> one bracket per string
    * ``[["Pan left", "Pedestal up"], ["Zoom in"]]`` -> one bracket per inner list
    """
    if value is None:
        return []
    if isinstance(value, str | CameraCommand):
        value = [value]
    if not isinstance(value, list | tuple):
        raise InvalidRequestError(
            f"camera must be a string, a list of strings or a list of lists, not "
            f"{type(value).__name__}",
            field="camera",
        )
    brackets: list[list[CameraCommand]] = []
    for item in value:
        if isinstance(item, CameraCommand):
            brackets.append([item])
        elif isinstance(item, str):
            if not item.strip():
                continue
            text = item if "[" in item or "]" in item else f"[{item}]"
            brackets.extend(parse_camera_commands(text, field="camera"))
        elif isinstance(item, list | tuple):
            brackets.append(_bracket(",".join(str(c) for c in item), "camera"))
        else:
            raise InvalidRequestError(
                f"camera entry {item!r} is not a command name or a list of them", field="camera"
            )
    return brackets


def _clean(text: str | None) -> str:
    """Trim whitespace and trailing separators so comma-joining reads naturally."""
    return (text or "").strip().rstrip(",;.").strip()


class PromptElements(BaseModel):
    """The guide's six prompt elements; ``build()`` turns them into one prompt string.

    Why a model rather than an f-string: each element is validated on its own, so a bad
    camera command or an over-long scene is reported against the element that caused it.
    """

    model_config = ConfigDict(extra="forbid")

    camera: list[list[CameraCommand]] = Field(
        default_factory=list,
        title="Camera",
        description="Camera moves, one entry per bracket, run in sequence; each entry holds "
        "up to 3 commands run together. For example a first entry with Pan left and Pedestal "
        "up, then a second with Zoom in, gives \"[Pan left, Pedestal up] ... [Zoom in]\". "
        "In a storyboard file a text works too: \"Pan left, Pedestal up\" (one bracket) "
        "or \"[Pan left] [Zoom in]\".",
    )
    shot: str | None = Field(
        None, description="Shot type or framing in free text, e.g. 'wide-angle shot' or "
        "'close-up'."
    )
    subject: str = Field(
        ..., description="Who or what is filmed, with its description, e.g. 'a woman in a "
        "red coat'."
    )
    action: str | None = Field(
        None, description="What the subject does, e.g. 'walks briskly through the rain'."
    )
    scene: str | None = Field(
        None, description="Where it happens, e.g. 'a rain-soaked Manhattan street at dusk'."
    )
    lighting: str | None = Field(
        None, description="Light and atmosphere, e.g. 'neon signs reflecting on wet pavement'."
    )
    style: str | None = Field(
        None, description="Style or mood, e.g. 'cinematic noir style'."
    )

    @field_validator("camera", mode="before")
    @classmethod
    def _camera(cls, value: Any) -> list[list[CameraCommand]]:
        return _coerce_camera(value)

    @field_validator("subject")
    @classmethod
    def _subject(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("subject is required: say who or what is filmed")
        return value

    def build(self, style_suffix: str | None = None) -> str:
        """Compose the prompt: camera brackets, then shot, subject + action, scene, lighting,
        style, and ``style_suffix`` (a shared look appended to every clip of a sequence so
        consecutive clips stay consistent). Raises ``InvalidRequestError`` naming the
        element at fault."""
        texts: dict[str, str] = {}
        for name in ("shot", "subject", "action", "scene", "lighting", "style", "style_suffix"):
            raw = style_suffix if name == "style_suffix" else getattr(self, name)
            text = _clean(raw)
            if text:
                texts[name] = normalise_prompt(text, field=name)

        head = texts.get("subject", "")
        if "action" in texts:
            head = f"{head} {texts['action']}".strip()
        segments = [texts.get("shot"), head, texts.get("scene"), texts.get("lighting"),
                    texts.get("style"), texts.get("style_suffix")]
        body = ", ".join(s for s in segments if s)
        body = body[:1].upper() + body[1:]
        camera = " ".join(_render(b) for b in self.camera)
        prompt = f"{camera} {body}".strip()

        if len(prompt) > MAX_PROMPT_CHARS:
            longest = max(texts, key=lambda n: len(texts[n]))
            raise InvalidRequestError(
                f"built prompt is {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS} "
                f"(longest element: {longest}, {len(texts[longest])} characters)",
                field=longest,
            )
        return normalise_prompt(prompt)


def build_prompt(*, style_suffix: str | None = None, **elements: Any) -> str:
    """Shortcut for ``PromptElements(**elements).build(style_suffix)``.

    Pydantic's ``ValidationError`` is translated into ``InvalidRequestError`` naming the
    element, so callers handle one error type whatever went wrong.
    """
    try:
        model = PromptElements(**elements)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else None
        cause = err.get("ctx", {}).get("error")
        message = str(cause) if isinstance(cause, Exception) else err["msg"]
        if isinstance(cause, InvalidRequestError):
            message = cause.message
        raise InvalidRequestError(f"{field}: {message}", field=field) from exc
    return model.build(style_suffix)


# --------------------------------------------------------------------------- linting

_WORD = re.compile(r"[a-z0-9][a-z0-9'-]*")


def _vocab(words: str) -> frozenset[str]:
    """A keyword set from a space-separated string (easier to read and extend)."""
    return frozenset(words.split())


_LIGHTING = _vocab(
    "light lights lighting lit sunlight sunlit moonlight moonlit candlelight daylight "
    "lamplight backlit backlight glow glowing neon shadow shadows sunset sunrise dusk dawn "
    "twilight night golden overcast ambient spotlight silhouette haze hazy foggy "
    "bright dim dark illuminated rim"
)
_STYLE = _vocab(
    "cinematic style noir documentary anime cartoon realistic photorealistic film filmic "
    "vintage retro dreamy moody mood atmosphere atmospheric aesthetic 35mm 4k 8k hdr epic "
    "whimsical surreal minimalist quality dramatic painterly watercolor watercolour "
    "nostalgic gritty ethereal stylized stylised commercial"
)
_MOTION = _vocab(
    "walk run move turn rotate spin flow fly fall rise sway wave drift pour swirl jump "
    "dance blink smile open close glide slide ripple flicker blow shake nod look reach "
    "lift raise climb swim ride drive roll bounce float swing twist stretch bend grow melt "
    "burn splash chase race crawl step approach leave enter exit emerge fade unfold "
    "reveal wander stroll sprint gallop flutter tumble pulse breathe speak talk laugh "
    "cry sing wink gesture point sip eat drink"
)
_STATIC = _vocab(
    "red blue green yellow white black orange purple pink brown grey gray golden silver "
    "beige teal turquoise crimson violet wearing dressed beautiful detailed wooden shiny "
    "tall small large old young hair eyes texture background foreground portrait "
    "photo picture image colorful colourful pattern patterned striped sitting standing"
)
_DESCRIBE_PHRASES = (
    "a photo of", "a picture of", "an image of", "in the image", "in the photo",
    "in the picture", "the image shows", "this image", "this photo",
)


def _stems(word: str) -> set[str]:
    """Crude English stemming, enough to match 'walks', 'walking', 'rotating', 'poured'."""
    out = {word}
    for suffix, repl in (("ing", ""), ("ing", "e"), ("es", ""), ("s", ""), ("ed", ""),
                         ("ed", "e"), ("d", "")):
        if word.endswith(suffix) and len(word) > len(suffix) + 2:
            out.add(word[: -len(suffix)] + repl)
    if len(word) > 5 and word.endswith("ing") and word[-4] == word[-5]:
        out.add(word[:-4])  # running -> run
    return out


def _count(words: list[str], vocab: frozenset[str]) -> int:
    return sum(1 for w in words if _stems(w) & vocab)


def lint_prompt(prompt: str, *, image_to_video: bool = False) -> list[str]:
    """Human-readable warnings about a prompt; never raises.

    Checks: bracket errors, vagueness (too short, or no camera/lighting/style words), no
    camera command, an image-to-video prompt that re-describes the picture instead of
    the motion, length close to the limit, duplicate or conflicting commands in a bracket.
    """
    warnings: list[str] = []
    bracket_error = False
    try:
        brackets = parse_camera_commands(prompt)
    except InvalidRequestError as exc:
        warnings.append(f"camera commands: {exc.message}")
        brackets, bracket_error = [], True
    prose = re.sub(r"\[[^\[\]]*\]", " ", prompt).lower()
    words = _WORD.findall(prose)

    has_lighting = bool(_count(words, _LIGHTING)) or "golden hour" in prose
    has_style = bool(_count(words, _STYLE))
    motion = _count(words, _MOTION)

    if not image_to_video and len(words) < MIN_T2V_WORDS:
        warnings.append(
            f"prompt is vague: only {len(words)} words; describe camera, subject, action, "
            "scene, lighting and style (the guide's six elements)"
        )
    elif not image_to_video and not (brackets or has_lighting or has_style):
        warnings.append(
            "prompt is vague: no camera command, no lighting words and no style/mood words; "
            "the guide recommends camera, subject, action, scene, lighting and style"
        )
    if not brackets and not bracket_error:
        warnings.append(
            "no camera command: add one in brackets, e.g. [Push in], [Tracking shot] or "
            "[Static shot], to control the motion"
        )

    if image_to_video:
        static = _count(words, _STATIC)
        phrases = [p for p in _DESCRIBE_PHRASES if p in prose]
        if phrases or (static >= 4 and motion <= 1):
            found = f" ({', '.join(repr(p) for p in phrases)})" if phrases else ""
            warnings.append(
                "image-to-video prompt re-describes the picture" + found + "; the image "
                "already shows the scene, so describe the movement instead (what moves, how, "
                "and the camera motion)"
            )
        elif motion == 0 and not brackets:
            warnings.append(
                "image-to-video prompt describes no movement; say what moves and how"
            )

    if len(prompt) > MAX_PROMPT_CHARS:
        warnings.append(
            f"prompt is {len(prompt)} characters, over the {MAX_PROMPT_CHARS}-character limit"
        )
    elif len(prompt) > LONG_PROMPT_WARN_CHARS:
        warnings.append(
            f"prompt is {len(prompt)} characters, close to the {MAX_PROMPT_CHARS}-character "
            "limit; a shared style suffix may push it over"
        )

    for n, cmds in enumerate(brackets, 1):
        label = f"bracket {n} {_render(cmds)}"
        dupes = sorted({c.value for c in cmds if cmds.count(c) > 1})
        if dupes:
            warnings.append(f"{label} repeats {', '.join(dupes)}")
        for a, b in _OPPOSITES:
            if a in cmds and b in cmds:
                warnings.append(f"{label} combines {a.value} and {b.value}, which cancel out")
        if CameraCommand.STATIC_SHOT in cmds and any(
            c is not CameraCommand.STATIC_SHOT for c in cmds
        ):
            warnings.append(f"{label} combines Static shot with camera motion")
    return warnings
