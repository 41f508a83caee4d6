"""MiniMax Music (``POST /v1/music_generation``): request, client, verified result.

Checked locally against api-contract-v2.md 4: model, prompt (required for instrumentals,
10-300 characters for cover models), lyrics (1-3500 characters, only the documented bare
structure tags such as ``[Verse]`` / ``[Chorus]`` - a tag with a description inside the
brackets gets sung), the mutually exclusive ``is_instrumental`` / ``lyrics`` /
``lyrics_optimizer``, and the audio settings. The API takes no length: the model decides
(songs up to 5 minutes), and the answer's ``extra_info.music_duration`` (ms) says what it
made.

The call is synchronous and long (15-60 s and more), so the HTTP timeout is generous
(``read_timeout`` 600 s, at least the 300 s the contract asks for). MiniMax marks its Music
models "Discontinued" for new pay-as-you-go accounts: an answer saying the account cannot
use the model is a ``ModelUnavailableError`` (never retried), so a film can stop before it
pays for video and offer ``music: none`` or a file.
"""

from __future__ import annotations

import logging
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from hailuo import pricing
from hailuo.capabilities import Provider
from hailuo.errors import InvalidRequestError
from hailuo.mediacalls import audio_length, audio_parts, decoded_audio, optional_int, save
from hailuo.mediaclient import MediaHTTP, ModelUnavailableError, media_fingerprint, minimax_error
from hailuo.models import utcnow

log = logging.getLogger("hailuo.music")

MUSIC_PATH = "/v1/music_generation"
MUSIC_MODELS = ("music-3.0", "music-2.6", "music-cover", "music-3.0-free", "music-2.6-free",
                "music-cover-free", "music-2.5+", "music-2.5", "music-2.0")
DEFAULT_MUSIC_MODEL = "music-3.0"
#: Models that take ``is_instrumental`` and ``lyrics_optimizer`` (the 3.0 / 2.6 family).
MODERN = ("music-3.0", "music-2.6", "music-3.0-free", "music-2.6-free")
COVER = ("music-cover", "music-cover-free")
STRUCTURE_TAGS = ("Intro", "Verse", "Pre Chorus", "Chorus", "Interlude", "Bridge", "Outro",
                  "Post Chorus", "Transition", "Break", "Hook", "Build Up", "Inst", "Solo")
SAMPLE_RATES = (16000, 24000, 32000, 44100)
BITRATES = (32000, 64000, 128000, 256000)
FORMATS = ("mp3", "wav", "pcm")
_TAG = re.compile(r"\[([^\[\]]*)\]")
_KNOWN_TAGS = {t.lower() for t in STRUCTURE_TAGS}
#: Longest song the provider makes (the price unit is "up to 5 minutes").
MAX_SONG_MS = 5 * 60 * 1000


class MusicRequest(BaseModel):
    """One song or instrumental bed. ``validated()`` checks it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt: str | None = Field(None, description="Style, mood, scene (up to 2000 characters).")
    lyrics: str | None = Field(None, description="Lines separated by \\n, with bare tags such "
                               "as [Verse] and [Chorus].")
    instrumental: bool = Field(False, description="No vocals (is_instrumental).")
    lyrics_optimizer: bool = Field(False, description="Write lyrics from the prompt.")
    model: str = DEFAULT_MUSIC_MODEL
    sample_rate: int = 44100
    bitrate: int = 256000
    format: str = "mp3"
    output_format: Literal["hex", "url"] = "hex"
    watermark: bool = False
    audio_url: str | None = Field(None, description="Cover models: the reference song URL.")
    cover_feature_id: str | None = Field(None, description="Cover models: a preprocessed "
                                         "reference (valid 24 h).")

    def validated(self) -> MusicRequest:
        if self.model not in MUSIC_MODELS:
            raise InvalidRequestError(f"{self.model!r} is not allowed; allowed: "
                                      f"{', '.join(MUSIC_MODELS)}", field="model")
        prompt = (self.prompt or "").strip() or None
        lyrics = (self.lyrics or "").strip() or None
        modern = self.model in MODERN
        if (self.instrumental or self.lyrics_optimizer) and not modern:
            name = "instrumental" if self.instrumental else "lyrics_optimizer"
            raise InvalidRequestError(f"{name} needs a music-3.0 or music-2.6 model, not "
                                      f"{self.model}", field=name)
        if self.instrumental and lyrics:
            raise InvalidRequestError("an instrumental takes no lyrics: drop one of them",
                                      field="lyrics")
        if self.lyrics_optimizer and (lyrics or self.instrumental):
            raise InvalidRequestError("lyrics_optimizer writes the lyrics itself: give no "
                                      "lyrics and no instrumental with it",
                                      field="lyrics_optimizer")
        if prompt is not None and len(prompt) > 2000:
            raise InvalidRequestError(f"prompt is {len(prompt)} characters; the limit is "
                                      "2000", field="prompt")
        if self.model in COVER:
            if prompt is None or not 10 <= len(prompt) <= 300:
                raise InvalidRequestError("cover models need a prompt of 10-300 characters",
                                          field="prompt")
            if not (self.audio_url or self.cover_feature_id):
                raise InvalidRequestError("cover models need the reference song: audio_url "
                                          "or cover_feature_id", field="audio_url")
        elif self.audio_url or self.cover_feature_id:
            raise InvalidRequestError(f"{self.model} takes no reference song (only "
                                      f"{' and '.join(COVER)} do)", field="audio_url")
        if self.instrumental and prompt is None:
            raise InvalidRequestError("an instrumental needs a prompt (style, mood, scene)",
                                      field="prompt")
        if not (self.instrumental or self.lyrics_optimizer or lyrics
                or self.model in COVER):
            raise InvalidRequestError("lyrics are required unless instrumental or "
                                      "lyrics_optimizer is set", field="lyrics")
        if lyrics is not None:
            if len(lyrics) > 3500:
                raise InvalidRequestError(f"lyrics are {len(lyrics)} characters; the limit "
                                          "is 3500", field="lyrics")
            for match in _TAG.finditer(lyrics):
                if match.group(1).strip().lower() not in _KNOWN_TAGS:
                    raise InvalidRequestError(
                        f"{match.group(0)!r} is not a structure tag (a description inside "
                        f"brackets gets sung); allowed: "
                        f"{', '.join(f'[{t}]' for t in STRUCTURE_TAGS)}", field="lyrics")
        for name, value, allowed in (("sample_rate", self.sample_rate, SAMPLE_RATES),
                                     ("bitrate", self.bitrate, BITRATES),
                                     ("format", self.format, FORMATS)):
            if value not in allowed:
                raise InvalidRequestError(f"{value!r} is not allowed; allowed: "
                                          f"{', '.join(map(str, allowed))}", field=name)
        return self.model_copy(update={"prompt": prompt, "lyrics": lyrics})

    def quote(self) -> pricing.PriceQuote:
        return pricing.music_quote(self.model)

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "output_format": self.output_format,
                                "audio_setting": {"sample_rate": self.sample_rate,
                                                  "bitrate": self.bitrate,
                                                  "format": self.format}}
        if self.prompt:
            body["prompt"] = self.prompt
        if self.lyrics:
            body["lyrics"] = self.lyrics
        if self.instrumental:
            body["is_instrumental"] = True
        if self.lyrics_optimizer:
            body["lyrics_optimizer"] = True
        if self.watermark:
            body["aigc_watermark"] = True
        if self.audio_url:
            body["audio_url"] = self.audio_url
        if self.cover_feature_id:
            body["cover_feature_id"] = self.cover_feature_id
        return body

    def fingerprint(self, take: int = 1) -> str:
        return media_fingerprint("music", self.validated(), Provider.MINIMAX, take)


class MusicAnswer(BaseModel):
    """One paid answer as it came (bytes or URL, ``extra_info``); safe to persist."""

    model_config = ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")

    fingerprint: str
    request: MusicRequest
    audio: bytes | None = None
    audio_url: str | None = None
    extra_info: dict[str, Any] = Field(default_factory=dict)
    trace_id: str | None = None
    simulated: bool = False
    received_at: datetime = Field(default_factory=utcnow)


class MusicResult(BaseModel):
    """A track on disk, decoded to its last sample."""

    fingerprint: str
    model: str
    path: Path
    format: str
    codec: str
    sample_rate: int
    channels: int
    sha256: str
    size: int
    audio_length_ms: int = Field(description="extra_info.music_duration, else measured (ms).")
    measured_ms: int
    instrumental: bool
    cost_usd: float
    cost_basis: str
    trace_id: str | None = None
    simulated: bool = False

    @property
    def duration(self) -> float:
        return self.audio_length_ms / 1000.0


def parse_music_answer(body: Any, request: MusicRequest, fingerprint: str, *,
                       simulated: bool = False) -> MusicAnswer:
    parts = audio_parts(body, "music")
    return MusicAnswer(fingerprint=fingerprint, request=request, audio=parts.audio,
                       audio_url=parts.audio_url, extra_info=parts.extra_info,
                       trace_id=parts.trace_id, simulated=simulated)


class MusicClient(MediaHTTP):
    """MiniMax music generation (sync, long). ``compose(request, path)`` is call + fetch."""

    call_deadline = 900.0
    read_timeout = 600.0

    def __init__(self, api_key: Any = None, base_url: str | None = None, **kw: Any) -> None:
        kw.pop("provider", None)
        super().__init__(Provider.MINIMAX, api_key, base_url, **kw)

    def call(self, request: MusicRequest, *, take: int = 1) -> MusicAnswer:
        checked = request.validated()
        fingerprint = media_fingerprint("music", checked, self.provider, take)

        def problem(status: int, body: Any, retry_after: float | None):  # noqa: ANN202
            found = minimax_error(status, body, retry_after, what="music")
            if isinstance(found, ModelUnavailableError):
                found.message = (f"{found.message}. This account cannot use {checked.model} "
                                 "(MiniMax marks its Music models Discontinued for new "
                                 "accounts): use `music: none`, or `music: {file: path}` "
                                 "with a track of your own")
                found.args = (found.message,)
            return found

        return self.paid_answer(
            MUSIC_PATH, checked.body(), what="music generation", fingerprint=fingerprint,
            parse_error=problem, cost_note=f" (about ${checked.quote().usd})",
            parse=lambda answer, simulated: parse_music_answer(
                answer, checked, fingerprint, simulated=simulated))

    def fetch(self, answer: MusicAnswer, path: str | os.PathLike[str]) -> MusicResult:
        request = answer.request
        channels = optional_int(answer.extra_info.get("music_channel")) or 2
        data, info = decoded_audio(self, answer, what="music audio", fmt=request.format,
                                   sample_rate=request.sample_rate, channels=channels)
        length = audio_length(optional_int(answer.extra_info.get("music_duration")),
                              info.duration_ms, slack_ms=500, label="music_duration", log=log)
        quote = request.quote()
        dest = save(path, data)
        return MusicResult(
            fingerprint=answer.fingerprint, model=request.model, path=dest,
            format=request.format, codec=info.codec, sample_rate=info.sample_rate,
            channels=info.channels, sha256=info.sha256, size=info.size,
            audio_length_ms=int(length), measured_ms=info.duration_ms,
            instrumental=request.instrumental, cost_usd=float(quote.usd),
            cost_basis=quote.basis, trace_id=answer.trace_id, simulated=answer.simulated)

    def compose(self, request: MusicRequest, path: str | os.PathLike[str], *,
                take: int = 1) -> MusicResult:
        return self.fetch(self.call(request, take=take), path)


__all__ = ["DEFAULT_MUSIC_MODEL", "MUSIC_MODELS", "STRUCTURE_TAGS", "ModelUnavailableError",
           "MusicAnswer", "MusicClient", "MusicRequest", "MusicResult", "parse_music_answer"]
