"""The storyboard file: a film as segments, and how each segment's clip gets its frames.

Why a file format: a film of many clips is a document people edit, diff and hand to the
CLI or a deployment, not a long list of flow parameters. YAML or JSON, e.g.::

    title: Lighthouse at dusk
    style_suffix: warm golden-hour light, cinematic, 35mm film grain
    first_image: keyframes/k0.png        # optional: the film's first frame (K0)
    resolution: 512p                     # optional film-wide defaults
    duration: 6
    transition: cut                      # or crossfade (crossfade_seconds: 0.5)
    audio: music/theme.m4a               # optional, trimmed or padded to the film
    segments:
      - prompt: the camera rises over the cliff towards the lighthouse
        camera: Pedestal up
        keyframe: keyframes/k1.png       # optional: the image this segment ends on (K1)
      - prompt: the lamp turns on and sweeps the sea
        duration: 10

A narrated film (the ``film`` flow, ``flows/film.py``) adds, with exactly these keys::

    voice: English_expressive_narrator   # MiniMax speech voice id (empty: the default)
    music: {prompt: "calm piano, slow"}  # or {file: music/theme.mp3}, or none
    first_image_prompt: a lighthouse at dusk, wide shot   # K0 from the image model
    segments:
      - prompt: the camera rises along the tower
        narration: The lighthouse has stood here for two hundred years.
        keyframe_prompt: the lantern room at dusk, close up  # this segment's Ki, generated

``first_image_prompt`` and ``keyframe_prompt`` stand for ``first_image`` and ``keyframe``
(one or the other); a generated keyframe makes the film a keyframed storyboard (first+last
frame clips). ``music`` replaces ``audio`` in a narrated film (give one of them).

Relative paths are read relative to the file. Two ways to shoot it (``shots``):

* continuity (``chain_all=True``): every clip after the first starts on the exact last
  frame of the clip before, so the film is generated one clip after another;
* storyboard: a segment that follows a keyframe starts on that keyframe, so clips
  between keyframes K0..Kn are independent and can all be generated at once; a segment
  with no keyframe before it chains onto the previous clip (keyframes and prompts mix).

No Prefect imports.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hailuo.choices import Duration, ModelName, Ratio, Resolution, canonical_resolution
from hailuo.models import DEFAULT_MODEL, VideoRequest
from hailuo.prompts import CameraCommand, PromptElements, _coerce_camera

__all__ = ["CHAINED_PLACEHOLDER", "MusicSpec", "Segment", "Shot", "Storyboard",
           "load_storyboard"]

#: Stands in for a chained clip's first frame while the whole film is validated and
#: priced up front: the real image exists only once the previous clip does.
CHAINED_PLACEHOLDER = "chained:last-frame-of-previous-clip"

_REMOTE = re.compile(r"^(https?|s3|data):", re.IGNORECASE)


def _blank_to_none(value: Any) -> Any:
    """An empty text field means "not set" (a cleared form field, ``audio: ""``), never
    a file named "" that is looked for after the clips were paid for."""
    return None if isinstance(value, str) and not value.strip() else value


class Segment(BaseModel):
    """One clip of the film."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, description="Label for files and artifacts.")
    prompt: str = Field(..., min_length=1, description="What happens; for a clip that starts "
                        "on an image, describe the movement rather than the picture.")
    camera: list[list[CameraCommand]] = Field(
        default_factory=list, description="Camera commands put in front of the prompt, e.g. "
        "'Pan left' or ['Pan left', 'Zoom in'] (see hailuo.prompts).")
    duration: Duration | None = Field(  # type: ignore[valid-type]
        None, description="Seconds; overrides the film's duration.")
    resolution: Resolution | None = Field(  # type: ignore[valid-type]
        None, description="Overrides the film's resolution (differing sizes force a "
        "re-encode when stitching).")
    keyframe: str | None = Field(None, description="Image this segment ends on (first+last "
                                 "frame mode); the next segment starts on it.")
    narration: str | None = Field(None, description="Text spoken over this segment (film "
                                  "flow); it must fit the segment's clip.")
    keyframe_prompt: str | None = Field(None, description="The keyframe made by the image "
                                        "model instead of a file (film flow).")

    @field_validator("camera", mode="before")
    @classmethod
    def _camera(cls, value: Any) -> list[list[CameraCommand]]:
        return _coerce_camera(value)

    @field_validator("name", "duration", "resolution", "keyframe", "narration",
                     "keyframe_prompt", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return _blank_to_none(value)

    @field_validator("resolution", mode="before")
    @classmethod
    def _canonical_resolution(cls, value: Any) -> Any:
        return canonical_resolution(value)  # "2K" -> "2k", "768P" -> "768p"

    @model_validator(mode="after")
    def _one_keyframe(self) -> Segment:
        if self.keyframe and self.keyframe_prompt:
            raise ValueError("give keyframe (a file) or keyframe_prompt (generated), not both")
        return self


class MusicSpec(BaseModel):
    """A narrated film's music bed: composed from a prompt, or a file (``music: none`` in
    the file means no music)."""

    model_config = ConfigDict(extra="forbid")

    prompt: str | None = Field(None, description="Style, mood, instruments: composed as an "
                               "instrumental by MiniMax Music.")
    file: str | None = Field(None, description="An audio file of your own (relative to the "
                             "storyboard file).")

    @field_validator("prompt", "file", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return _blank_to_none(value)

    @model_validator(mode="after")
    def _exactly_one(self) -> MusicSpec:
        if (self.prompt is None) == (self.file is None):
            raise ValueError("music takes exactly one of prompt or file (or write "
                             "music: none)")
        return self


class Shot(BaseModel):
    """How one segment is generated: its prompt and where its first and last frames come
    from. ``chained`` means the first frame is the previous clip's last frame, known only
    once that clip exists."""

    index: int  # 1-based
    name: str
    prompt: str
    first_frame_image: str | None = None
    chained: bool = False
    last_frame_image: str | None = None
    duration: int | None = None
    resolution: str | None = None

    def request(self, *, model: str, resolution: str | None, duration: int | None,
                first_frame_image: str | None = None, ratio: str | None = None,
                **flags: Any) -> VideoRequest:
        """This clip's request under the film's settings (``Storyboard.film_settings``):
        the segment's own duration and resolution win. A chained clip's first frame is
        ``CHAINED_PLACEHOLDER`` until the previous clip exists; ``first_frame_image``
        replaces the planned one (a local copy of an s3:// keyframe, a checked path).
        The film's ``ratio`` (H3) applies only to a clip made from text: one that starts
        or ends on an image follows the image (H3 frame modes are always adaptive)."""
        first = CHAINED_PLACEHOLDER if self.chained else (
            first_frame_image or self.first_frame_image)
        framed = bool(first or self.last_frame_image)
        return VideoRequest(
            model=model, prompt=self.prompt, first_frame_image=first,
            last_frame_image=self.last_frame_image,
            duration=self.duration if self.duration is not None else duration,
            resolution=self.resolution or resolution, ratio=None if framed else ratio,
            **flags)

    @property
    def first_frame_source(self) -> str | None:
        if self.chained:
            return f"last frame of clip {self.index - 1}"
        if self.first_frame_image is None:
            return None
        return "first_image" if self.index == 1 else f"keyframe of segment {self.index - 1}"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:48] or "film"


class Storyboard(BaseModel):
    """A film: shared look, optional first image and keyframes, segments, stitching."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field("film", description="Names the output files.")
    style_suffix: str | None = Field(
        None, description="Appended to every prompt (lighting, style) so clips match.")
    first_image: str | None = Field(None, description="The film's first frame (K0); empty "
                                    "makes the first clip text-to-video.")
    model: ModelName | None = Field(  # type: ignore[valid-type]
        None, description="Overrides the run's model.")
    resolution: Resolution | None = Field(  # type: ignore[valid-type]
        None, description="Film-wide resolution; keep one for a join without re-encoding.")
    ratio: Ratio | None = Field(  # type: ignore[valid-type]
        None, description="MiniMax-H3 only: the aspect ratio of clips made from text (the "
        "first clip of a film without a first image); clips that start or end on an image "
        "follow it (adaptive).")
    duration: Duration | None = Field(  # type: ignore[valid-type]
        None, description="Film-wide clip duration in seconds.")
    transition: Literal["cut", "crossfade"] = Field(
        "cut", description="cut: packets copied when possible; crossfade: re-encoded.")
    crossfade_seconds: float = Field(0.5, gt=0, le=3, description="Overlap per join.")
    audio: str | None = Field(None, description="Voice-over or music, trimmed or padded to "
                              "the film's length.")
    voice: str | None = Field(None, description="Narration voice id (film flow); empty: "
                              "MiniMax's default narrator.")
    music: MusicSpec | None = Field(None, description="Music bed (film flow): {prompt: ...}, "
                                    "{file: path} or none.")
    first_image_prompt: str | None = Field(None, description="K0 made by the image model "
                                           "instead of a file (film flow).")
    segments: list[Segment] = Field(..., min_length=1)

    @field_validator("style_suffix", "first_image", "model", "resolution", "duration", "audio",
                     "voice", "first_image_prompt", "ratio", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return _blank_to_none(value)

    @field_validator("resolution", mode="before")
    @classmethod
    def _canonical_resolution(cls, value: Any) -> Any:
        return canonical_resolution(value)

    @field_validator("ratio", mode="before")
    @classmethod
    def _canonical_ratio(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("music", mode="before")
    @classmethod
    def _music_none(cls, value: Any) -> Any:
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
            return None
        if isinstance(value, str):
            raise ValueError("music is {prompt: ...}, {file: path} or none")
        return value

    @model_validator(mode="after")
    def _one_source_each(self) -> Storyboard:
        if self.first_image and self.first_image_prompt:
            raise ValueError("give first_image (a file) or first_image_prompt (generated), "
                             "not both")
        if self.audio and self.music is not None:
            raise ValueError("give audio or music, not both (a narrated film takes "
                             "music: {file: path})")
        return self

    @property
    def narrated(self) -> bool:
        """Whether any segment has narration."""
        return any(s.narration for s in self.segments)

    @property
    def keyframe_prompts(self) -> list[str | None]:
        """K0..Kn to be generated: ``first_image_prompt``, then each ``keyframe_prompt``."""
        return [self.first_image_prompt, *(s.keyframe_prompt for s in self.segments)]

    def with_keyframes(self, images: list[str | None]) -> Storyboard:
        """A copy whose K0..Kn are ``images`` where given (generated keyframes put in
        place of their prompts); the prompts are dropped, so the copy is a plain
        storyboard ``make_film`` shoots."""
        if len(images) != len(self.segments) + 1:
            raise ValueError(f"{len(images)} images for {len(self.segments) + 1} keyframes")
        return self.model_copy(update={
            "first_image": images[0] or self.first_image, "first_image_prompt": None,
            "segments": [s.model_copy(update={"keyframe": image or s.keyframe,
                                              "keyframe_prompt": None})
                         for s, image in zip(self.segments, images[1:], strict=True)]})

    @property
    def slug(self) -> str:
        return _slug(self.title)

    def film_settings(self, *, model: str | None = None, resolution: str | None = None,
                      duration: int | None = None, ratio: str | None = None
                      ) -> dict[str, Any]:
        """The film-wide model, resolution, duration and (H3) ratio, in the one precedence
        every entry point uses: a segment's own values (``Shot.request``), then the
        storyboard's, then the caller's (the command line, or the run's options)."""
        return {"model": self.model or model or DEFAULT_MODEL,
                "resolution": self.resolution or resolution,
                "duration": self.duration if self.duration is not None else duration,
                "ratio": self.ratio or ratio}

    @property
    def keyframes(self) -> list[str | None]:
        """K0..Kn: the first image, then each segment's end keyframe (None where absent)."""
        return [self.first_image, *(s.keyframe for s in self.segments)]

    def prompt_for(self, segment: Segment) -> str:
        """Camera brackets + prompt + the shared style suffix, validated."""
        return PromptElements(subject=segment.prompt, camera=segment.camera).build(
            style_suffix=self.style_suffix)

    def shots(self, *, chain_all: bool) -> list[Shot]:
        """The segments as shots (see the module docstring for the two ways)."""
        shots = []
        for i, segment in enumerate(self.segments):
            previous_key = self.first_image if i == 0 else self.segments[i - 1].keyframe
            chained = i > 0 and (chain_all or previous_key is None)
            shots.append(Shot(
                index=i + 1, name=segment.name or f"{self.slug}-{i + 1:02d}",
                prompt=self.prompt_for(segment),
                first_frame_image=None if chained else previous_key, chained=chained,
                last_frame_image=segment.keyframe, duration=segment.duration,
                resolution=segment.resolution))
        return shots

    def resolved(self, base: str | os.PathLike[str]) -> Storyboard:
        """A copy with relative local paths (images, audio) made absolute against ``base``."""
        root = Path(base)

        def fix(value: str | None) -> str | None:
            if not value or _REMOTE.match(value) or Path(value).is_absolute():
                return value
            return str((root / value).resolve())

        music = self.music
        if music is not None and music.file:
            music = music.model_copy(update={"file": fix(music.file)})
        return self.model_copy(update={
            "first_image": fix(self.first_image), "audio": fix(self.audio), "music": music,
            "segments": [s.model_copy(update={"keyframe": fix(s.keyframe)})
                         for s in self.segments]})


def load_storyboard(source: Storyboard | dict[str, Any] | str | os.PathLike[str]
                    ) -> Storyboard:
    """A storyboard from a model, a dict, or a ``.yaml``/``.yml``/``.json`` file (whose
    relative paths are resolved against the file's folder)."""
    if isinstance(source, Storyboard):
        return source
    if isinstance(source, dict):
        return Storyboard.model_validate(source)
    path = Path(source)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        data = json.loads(text)
    elif path.suffix.lower() in (".yaml", ".yml"):
        data = yaml.safe_load(text)
    else:
        raise ValueError(f"storyboard must be .yaml, .yml or .json: {path.name}")
    if not isinstance(data, dict):
        raise ValueError(f"{path.name}: a storyboard is a mapping with 'segments'")
    return Storyboard.model_validate(data).resolved(path.parent)
