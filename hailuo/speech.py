"""MiniMax Speech (T2A v2, ``POST /v1/t2a_v2``): request, client, verified result.

The request is checked locally against api-contract-v2.md 3.1 (models, voice, speed,
volume, pitch, emotion per model family, sample rate, bitrate, format, channels, pause
markers, text length) and every refusal names its field. One paid call (``call``) returns
the provider's answer as it came - hex audio decoded to bytes, or the URL it lives at
(``data.audio`` starting with ``http``, or ``data.audio_url``), the subtitle file link and
``extra_info``. ``fetch`` then turns that answer into a verified local file: URLs fetched
without the key, the audio decoded to its last sample with PyAV (``hailuo.audio``), the
subtitle file read into entries in seconds. The two steps are separate so a caller that
persists the answer (the Prefect task does) never pays twice for one narration.

``SpeechResult.audio_length_ms`` is the provider's ``extra_info.audio_length`` when it
gave one (milliseconds, the documented unit), else the measured length; ``measured_ms`` is
always what the decoder counted.
"""

from __future__ import annotations

import logging
import os
import re
import unicodedata
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from hailuo import audio, netguard, pricing
from hailuo.capabilities import Provider
from hailuo.errors import InvalidRequestError
from hailuo.mediacalls import audio_length, audio_parts, decoded_audio, optional_int, save
from hailuo.mediaclient import MediaHTTP, media_fingerprint, minimax_error
from hailuo.models import utcnow

log = logging.getLogger("hailuo.speech")

SPEECH_PATH = "/v1/t2a_v2"
SPEECH_MODELS = ("speech-2.8-hd", "speech-2.8-turbo", "speech-2.6-hd", "speech-2.6-turbo",
                 "speech-02-hd", "speech-02-turbo", "speech-01-hd", "speech-01-turbo")
DEFAULT_SPEECH_MODEL = "speech-2.8-hd"
DEFAULT_VOICE = "English_expressive_narrator"
EMOTIONS = ("happy", "sad", "angry", "fearful", "disgusted", "surprised", "calm", "fluent",
            "whisper")
SAMPLE_RATES = (8000, 16000, 22050, 24000, 32000, 44100)
BITRATES = (32000, 64000, 128000, 256000)
FORMATS = ("mp3", "pcm", "flac", "wav", "pcmu_raw", "pcmu_wav", "opus")
MAX_TEXT_CHARS = 9999  # "< 10,000 chars"
_PAUSE = re.compile(r"<#([^#<>]*)#>")


def billable_characters(text: str) -> int:
    """An upper bound of the characters billed for ``text`` (the provider bills
    ``usage_characters``): every character counts, East Asian wide ones twice (assumed;
    never below the real count as far as the contract tells)."""
    return sum(2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in text)


class SpeechRequest(BaseModel):
    """One narration: text, voice and audio settings. ``validated()`` checks it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str = Field(description="What to say, under 10,000 characters; <#1.5#> pauses.")
    model: str = Field(DEFAULT_SPEECH_MODEL, description="speech-2.8-hd, speech-2.8-turbo, ...")
    voice_id: str | None = Field(DEFAULT_VOICE, description="System, cloned or designed voice.")
    speed: float = Field(1.0, description="0.5 .. 2.")
    vol: float = Field(1.0, description="(0, 10].")
    pitch: int = Field(0, description="-12 .. 12 semitones.")
    emotion: str | None = Field(None, description="None lets the model choose.")
    text_normalization: bool = False
    language_boost: str | None = None
    sample_rate: int = 32000
    bitrate: int = 128000
    format: str = "mp3"
    channel: int = 1
    subtitles: bool = Field(True, description="Ask for sentence timestamps (subtitle_enable).")
    subtitle_type: Literal["sentence", "word"] = "sentence"
    output_format: Literal["hex", "url"] = "hex"
    pronunciation: tuple[str, ...] = Field((), description='"original/replacement" pairs.')
    timbre_weights: tuple[tuple[str, int], ...] = Field(
        (), description="Up to 4 (voice_id, weight 1-100) pairs mixed instead of voice_id.")

    def validated(self) -> SpeechRequest:
        """The request checked against api-contract-v2.md 3.1; ``InvalidRequestError``
        names the field. Returns a copy with the text stripped."""
        text = (self.text or "").strip()
        if not text:
            raise InvalidRequestError("text is empty: nothing to say", field="text")
        if len(text) > MAX_TEXT_CHARS:
            raise InvalidRequestError(f"text is {len(text)} characters; the limit is under "
                                      "10,000 (split it)", field="text")
        _check_pauses(text)
        _one_of("model", self.model, SPEECH_MODELS)
        if self.timbre_weights:
            if len(self.timbre_weights) > 4:
                raise InvalidRequestError("at most 4 voices can be mixed",
                                          field="timbre_weights")
            for voice, weight in self.timbre_weights:
                if not voice or not 1 <= weight <= 100:
                    raise InvalidRequestError(f"({voice!r}, {weight}): each entry needs a "
                                              "voice id and a weight 1-100",
                                              field="timbre_weights")
        elif not (self.voice_id and self.voice_id.strip()):
            raise InvalidRequestError("a voice id is required (or timbre_weights)",
                                      field="voice_id")
        if not 0.5 <= self.speed <= 2.0:
            raise InvalidRequestError(f"{self.speed} is outside 0.5 .. 2", field="speed")
        if not 0 < self.vol <= 10:
            raise InvalidRequestError(f"{self.vol} is outside (0, 10]", field="vol")
        if not -12 <= self.pitch <= 12:
            raise InvalidRequestError(f"{self.pitch} is outside -12 .. 12", field="pitch")
        if self.emotion is not None:
            _one_of("emotion", self.emotion, EMOTIONS)
            if self.emotion in ("fluent", "whisper") and not self.model.startswith(
                    "speech-2.6"):
                raise InvalidRequestError(
                    f"{self.emotion!r} is only offered by the speech-2.6 models "
                    f"({self.model} refuses it); omit it to let the model choose",
                    field="emotion")
        _one_of("sample_rate", self.sample_rate, SAMPLE_RATES)
        _one_of("format", self.format, FORMATS)
        if self.format == "mp3":
            _one_of("bitrate", self.bitrate, BITRATES)
        if self.channel not in (1, 2):
            raise InvalidRequestError(f"{self.channel}: allowed 1 or 2", field="channel")
        for pair in self.pronunciation:
            if "/" not in pair:
                raise InvalidRequestError(f'{pair!r} is not "original/replacement"',
                                          field="pronunciation")
        return self.model_copy(update={"text": text})

    @property
    def characters(self) -> int:
        return billable_characters(self.text.strip())

    def quote(self) -> pricing.PriceQuote:
        return pricing.speech_quote(self.model, self.characters)

    def body(self) -> dict[str, Any]:
        """The wire body of ``POST /v1/t2a_v2`` (validate first)."""
        voice: dict[str, Any] = {"voice_id": "" if self.timbre_weights else self.voice_id,
                                 "speed": self.speed, "vol": self.vol, "pitch": self.pitch}
        if self.emotion:
            voice["emotion"] = self.emotion
        if self.text_normalization:
            voice["text_normalization"] = True
        setting: dict[str, Any] = {"sample_rate": self.sample_rate, "format": self.format,
                                   "channel": self.channel}
        if self.format == "mp3":
            setting["bitrate"] = self.bitrate
        body: dict[str, Any] = {"model": self.model, "text": self.text, "stream": False,
                                "voice_setting": voice, "audio_setting": setting,
                                "output_format": self.output_format}
        if self.subtitles:
            body["subtitle_enable"] = True
            body["subtitle_type"] = self.subtitle_type
        if self.language_boost:
            body["language_boost"] = self.language_boost
        if self.pronunciation:
            body["pronunciation_dict"] = {"tone": list(self.pronunciation)}
        if self.timbre_weights:
            body["timbre_weights"] = [{"voice_id": v, "weight": w}
                                      for v, w in self.timbre_weights]
        return body

    def fingerprint(self, take: int = 1) -> str:
        return media_fingerprint("speech", self.validated(), Provider.MINIMAX, take)


def _one_of(field: str, value: Any, allowed: tuple[Any, ...]) -> None:
    if value not in allowed:
        raise InvalidRequestError(f"{value!r} is not allowed; allowed: "
                                  f"{', '.join(map(str, allowed))}", field=field)


def _check_pauses(text: str) -> None:
    previous_end = None
    for match in _PAUSE.finditer(text):
        try:
            seconds = float(match.group(1))
        except ValueError:
            seconds = -1.0
        if not 0.01 <= seconds <= 99.99:
            raise InvalidRequestError(f"pause marker {match.group(0)!r}: the pause must be "
                                      "0.01 .. 99.99 seconds", field="text")
        if previous_end is not None and not text[previous_end:match.start()].strip():
            raise InvalidRequestError(f"two pause markers in a row near {match.group(0)!r}; "
                                      "merge them into one", field="text")
        previous_end = match.end()


class SpeechAnswer(BaseModel):
    """One paid answer as it came: what ``fetch`` needs to make the file, nothing more.
    Safe to persist (no key); ``audio`` holds the hex-decoded bytes when the answer did."""

    model_config = ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")

    fingerprint: str
    request: SpeechRequest
    audio: bytes | None = None
    audio_url: str | None = None
    subtitle_url: str | None = None
    subtitle_inline: Any = None
    extra_info: dict[str, Any] = Field(default_factory=dict)
    trace_id: str | None = None
    simulated: bool = False
    received_at: datetime = Field(default_factory=utcnow)


class SpeechResult(BaseModel):
    """A narration on disk, decoded to its last sample."""

    fingerprint: str
    model: str
    voice_id: str | None
    text: str
    path: Path
    format: str
    codec: str
    sample_rate: int
    channels: int
    sha256: str
    size: int
    audio_length_ms: int = Field(description="Provider's extra_info.audio_length, else the "
                                 "measured length (ms).")
    measured_ms: int
    subtitles: list[audio.SubtitleEntry] = Field(default_factory=list)
    usage_characters: int | None = None
    cost_usd: float
    cost_basis: str
    trace_id: str | None = None
    simulated: bool = False

    @property
    def duration(self) -> float:
        """Seconds (from ``audio_length_ms``)."""
        return self.audio_length_ms / 1000.0


def parse_speech_answer(body: Any, request: SpeechRequest, fingerprint: str, *,
                        simulated: bool = False) -> SpeechAnswer:
    """A successful ``/v1/t2a_v2`` answer (base_resp already checked) as a SpeechAnswer."""
    parts = audio_parts(body, "speech", no_data=" (data is null)",
                        no_audio=" (neither data.audio nor data.audio_url)")
    data = parts.data
    if data.get("status") not in (None, 2, "2"):
        log.warning("speech answer has data.status %r (2 means done)", data.get("status"))
    subtitle = data.get("subtitle_file")
    return SpeechAnswer(
        fingerprint=fingerprint, request=request, audio=parts.audio, audio_url=parts.audio_url,
        subtitle_url=subtitle if isinstance(subtitle, str) and subtitle else None,
        subtitle_inline=subtitle if isinstance(subtitle, list | dict) else None,
        extra_info=parts.extra_info, trace_id=parts.trace_id, simulated=simulated)


class SpeechClient(MediaHTTP):
    """MiniMax T2A v2 (sync). ``synthesize(request, path)`` is call + fetch."""

    call_deadline = 180.0
    read_timeout = 150.0

    def __init__(self, api_key: Any = None, base_url: str | None = None, **kw: Any) -> None:
        kw.pop("provider", None)  # speech is MiniMax's own API whoever hosts the video
        super().__init__(Provider.MINIMAX, api_key, base_url, **kw)

    def call(self, request: SpeechRequest, *, take: int = 1) -> SpeechAnswer:
        """One paid synthesis; returns the answer (bytes or URL) without verifying it."""
        checked = request.validated()
        fingerprint = media_fingerprint("speech", checked, self.provider, take)
        quote = checked.quote()
        return self.paid_answer(
            SPEECH_PATH, checked.body(), what="speech synthesis (t2a_v2)",
            fingerprint=fingerprint,
            parse_error=lambda s, b, r: minimax_error(s, b, r, what="speech"),
            cost_note=f" (about ${quote.usd})",
            parse=lambda answer, simulated: parse_speech_answer(
                answer, checked, fingerprint, simulated=simulated))

    def fetch(self, answer: SpeechAnswer, path: str | os.PathLike[str]) -> SpeechResult:
        """Make ``path`` from an answer: fetch, decode to the last sample, read subtitles,
        rename into place only when everything checked out."""
        request = answer.request
        data, info = decoded_audio(self, answer, what="speech audio", fmt=request.format,
                                   sample_rate=request.sample_rate, channels=request.channel)
        extra = answer.extra_info
        length = audio_length(optional_int(extra.get("audio_length")), info.duration_ms,
                              slack_ms=300, label="speech audio_length", log=log)
        subtitles = self._subtitles(answer) if request.subtitles else []
        limit = max(length, info.duration_ms) / 1000.0 + 0.25
        late = [s for s in subtitles if s.end > limit]
        if late:
            log.warning("%d subtitle entries end after the audio (%.2fs > %.2fs)", len(late),
                        late[0].end, limit)
        usage = optional_int(extra.get("usage_characters"))
        quote = pricing.speech_quote(request.model, usage if usage is not None
                                     else request.characters)
        dest = save(path, data)
        return SpeechResult(
            fingerprint=answer.fingerprint, model=request.model, voice_id=request.voice_id,
            text=request.text, path=dest, format=request.format, codec=info.codec,
            sample_rate=info.sample_rate, channels=info.channels, sha256=info.sha256,
            size=info.size, audio_length_ms=int(length), measured_ms=info.duration_ms,
            subtitles=subtitles, usage_characters=usage, cost_usd=float(quote.usd),
            cost_basis=quote.basis, trace_id=answer.trace_id, simulated=answer.simulated)

    def _subtitles(self, answer: SpeechAnswer) -> list[audio.SubtitleEntry]:
        body: Any = answer.subtitle_inline
        if body is None and answer.subtitle_url:
            raw = self.fetch_url(answer.subtitle_url, what="speech subtitle file")
            body = netguard.decode_json(raw, what="speech subtitle file")
        if body is None:
            log.warning("subtitles were asked for but the answer has no subtitle_file")
            return []
        return audio.parse_subtitles(body)

    def synthesize(self, request: SpeechRequest, path: str | os.PathLike[str], *,
                   take: int = 1) -> SpeechResult:
        """One paid call, then the verified file at ``path``."""
        return self.fetch(self.call(request, take=take), path)


__all__ = ["DEFAULT_SPEECH_MODEL", "DEFAULT_VOICE", "SPEECH_MODELS", "SpeechAnswer",
           "SpeechClient", "SpeechRequest", "SpeechResult", "billable_characters",
           "parse_speech_answer"]
