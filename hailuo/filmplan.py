"""A narrated film's paid requests, validated and priced before anything is sent.

``plan_film`` reads a storyboard (``hailuo.storyboard``) and returns every request the
film will pay for - the clips, the keyframe images (``first_image_prompt``,
``keyframe_prompt``), the narration (``narration``, ``voice``) and the music
(``music: {prompt: ...}``) - each validated locally (an error names the segment and the
field) and priced from ``hailuo.pricing``. Keyframes still to be generated stand in as
placeholders, so a clip that ends on one is checked for first+last frame support now, not
after the images were paid for. ``check_film_cost`` is the film's cost guard over all of
it.

Used by the ``film`` flow and by ``hailuo film`` (before Prefect is imported). No Prefect
imports.
"""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel

from hailuo import pricing
from hailuo.capabilities import Mode, Provider, lookup
from hailuo.errors import CostLimitExceededError, InvalidRequestError
from hailuo.imagegen import ImageRequest
from hailuo.models import DEFAULT_MODEL, VideoRequest
from hailuo.music import MusicRequest
from hailuo.speech import DEFAULT_VOICE, SpeechRequest
from hailuo.storyboard import Storyboard

__all__ = ["GENERATED", "KEYFRAME_RATIO", "FilmPlan", "check_film_cost", "plan_film"]

#: What a keyframe still to be generated stands for while the film is planned and priced.
GENERATED = "generated:keyframe-{index}"
#: The keyframes' aspect ratio (the providers' landscape clips are 16:9).
KEYFRAME_RATIO = "16:9"


class FilmPlan(BaseModel):
    """The film's paid requests, validated and priced."""

    board: Storyboard
    video_provider: Provider
    image_provider: Provider
    video_requests: list[VideoRequest]
    image_requests: dict[int, ImageRequest]  # keyframe index (0 = K0) -> request
    speech_requests: dict[int, SpeechRequest]  # segment number (1-based) -> request
    music_request: MusicRequest | None
    music_file: str | None
    clip_seconds: list[int]  # each clip's duration as the provider renders it
    video_usd: Decimal
    images_usd: Decimal
    speech_usd: Decimal
    music_usd: Decimal

    @property
    def costs(self) -> dict[str, Decimal]:
        return {"video": self.video_usd, "images": self.images_usd,
                "speech": self.speech_usd, "music": self.music_usd}

    @property
    def total_usd(self) -> Decimal:
        return sum(self.costs.values(), Decimal(0))


def image_prompt(prompt: str, board: Storyboard) -> str:
    """A keyframe's prompt with the film's shared look (``style_suffix``) appended."""
    return f"{prompt}, {board.style_suffix}" if board.style_suffix else prompt


def plan_film(board: Storyboard, video_provider: Provider | str,
              image_provider: Provider | str = Provider.MINIMAX, *, model: str | None = None,
              resolution: str | None = None, duration: int | None = None,
              ratio: str | None = None, **flags: bool) -> FilmPlan:
    """Every paid request of the film, validated and priced; raises
    ``InvalidRequestError`` naming the segment and field before anything is paid.

    ``model``/``resolution``/``duration``/``ratio`` are the caller's defaults (the
    storyboard's and each segment's own win, as in every film flow); ``flags`` are the
    clips' ``prompt_optimizer``, ``fast_pretreatment``, ``watermark``."""
    video_provider, image_provider = Provider(video_provider), Provider(image_provider)
    placeholders = [GENERATED.format(index=i) if p else None
                    for i, p in enumerate(board.keyframe_prompts)]
    planned = board.with_keyframes(placeholders)
    settings = planned.film_settings(model=model or DEFAULT_MODEL, resolution=resolution,
                                     duration=duration, ratio=ratio)
    requests, seconds = [], []
    for shot in planned.shots(chain_all=False):
        request = shot.request(**settings, **flags)
        if request.last_frame_image and lookup(video_provider, request.model,
                                               Mode.FIRST_LAST_FRAME) is None:
            raise InvalidRequestError(
                f"segment {shot.index} ends on a keyframe, which needs first+last frame "
                f"clips: {request.model} on {video_provider} does not make them (use "
                "MiniMax-Hailuo-02, or drop the keyframe / keyframe_prompt)",
                field="keyframe_prompt")
        try:
            validated = request.validate_for(video_provider)
            seconds.append(request.output_duration(video_provider))
        except InvalidRequestError as exc:
            raise InvalidRequestError(f"segment {shot.index}: {exc}", field=exc.field
                                      ) from None
        requests.append(validated)
    video_usd = pricing.check_budget(requests, video_provider, None)

    images: dict[int, ImageRequest] = {}
    for index, prompt in enumerate(board.keyframe_prompts):
        if not prompt:
            continue
        request = ImageRequest(prompt=image_prompt(prompt, board), aspect_ratio=KEYFRAME_RATIO)
        try:
            images[index] = request.validated_for(image_provider)
        except InvalidRequestError as exc:
            where = "first_image_prompt" if index == 0 else f"segment {index} keyframe_prompt"
            raise InvalidRequestError(f"{where}: {exc}", field=exc.field) from None

    speech: dict[int, SpeechRequest] = {}
    for number, segment in enumerate(board.segments, start=1):
        if not segment.narration:
            continue
        try:
            speech[number] = SpeechRequest(text=segment.narration,
                                           voice_id=board.voice or DEFAULT_VOICE).validated()
        except InvalidRequestError as exc:
            raise InvalidRequestError(f"segment {number} narration: {exc}", field=exc.field
                                      ) from None

    music_request, music_file = None, None
    if board.music is not None and board.music.prompt:
        try:
            music_request = MusicRequest(prompt=board.music.prompt, instrumental=True
                                         ).validated()
        except InvalidRequestError as exc:
            raise InvalidRequestError(f"music: {exc}", field=exc.field) from None
    elif board.music is not None:
        music_file = board.music.file
    elif board.audio:
        music_file = board.audio  # an older storyboard's track becomes the (ducked) bed

    return FilmPlan(
        board=board, video_provider=video_provider, image_provider=image_provider,
        video_requests=requests, image_requests=images, speech_requests=speech,
        music_request=music_request, music_file=music_file, clip_seconds=seconds,
        video_usd=video_usd,
        images_usd=sum((r.quote(image_provider).usd for r in images.values()), Decimal(0)),
        speech_usd=sum((r.quote().usd for r in speech.values()), Decimal(0)),
        music_usd=music_request.quote().usd if music_request else Decimal(0))


def check_film_cost(parts: dict[str, Decimal], limit: float | Decimal | None, when: str, *,
                    limit_name: str = "max_cost_usd") -> Decimal:
    """The film's cost guard: refuses when the parts (video, images, speech, music) add
    up to more than ``limit`` (None: no limit). ``when`` says what was not paid yet."""
    total = sum(parts.values(), Decimal(0))
    if limit is not None and total > Decimal(str(limit)):
        listed = ", ".join(f"{k} ${v}" for k, v in parts.items() if v)
        raise CostLimitExceededError(
            f"estimated cost ${total} for the whole film ({listed}) exceeds {limit_name} "
            f"${limit}; {when}", field=limit_name)
    return total
