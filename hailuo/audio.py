"""Audio files with PyAV: prove bytes are real audio, measure them, encode samples; subtitles.

Why decode everything: speech and music are paid for and then placed on a film's
timeline by their length, so a file is only accepted once every packet decodes and the
samples are counted (``probe_audio``): a truncated MP3 or an HTML error page saved as
``.mp3`` fails here, not in the mix. Counting decoded samples is also the honest length
(container headers of MP3s without a Xing frame only estimate it).

``encode_audio`` turns float samples into any container the MiniMax speech and music APIs
deliver (mp3, wav, flac, raw pcm, opus, mu-law): the simulator renders with it, and the
mixing step can write its result with it.

Subtitles: MiniMax's subtitle file holds sentences with times in milliseconds;
``parse_subtitles`` accepts the spellings seen (``time_begin``/``time_end``, ``start``/
``end``, ``begin_time``/``end_time`` ...) and returns entries in **seconds**.

No Prefect imports.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import av
import numpy as np
from pydantic import BaseModel, Field

from hailuo import errors

__all__ = [
    "AUDIO_SUFFIX",
    "AudioInfo",
    "InvalidAudioError",
    "SubtitleEntry",
    "decode_audio",
    "encode_audio",
    "parse_subtitles",
    "probe_audio",
]

#: File suffix for each ``audio_setting.format`` MiniMax delivers.
AUDIO_SUFFIX: dict[str, str] = {
    "mp3": ".mp3", "wav": ".wav", "flac": ".flac", "pcm": ".pcm", "opus": ".opus",
    "pcmu_raw": ".ulaw", "pcmu_wav": ".wav",
}
#: Formats without a header: PyAV is told what they are.
_RAW = {"pcm": "s16le", "pcmu_raw": "mulaw"}
#: Sample rates libopus encodes at; others are resampled to 48 kHz.
_OPUS_RATES = (8000, 12000, 16000, 24000, 48000)


class InvalidAudioError(errors.InvalidVideoError):
    """Bytes that are not decodable audio (empty, truncated, another format). A subclass
    of ``InvalidVideoError`` so code handling "a paid file that does not decode" handles
    both; retryable in the same sense (fetching the file again may help)."""


class AudioInfo(BaseModel):
    """What ``probe_audio`` learnt by decoding every packet."""

    codec: str
    container: str
    sample_rate: int
    channels: int
    samples: int = Field(description="Decoded samples per channel.")
    duration_ms: int = Field(description="samples / sample_rate, in milliseconds.")
    peak: float = Field(description="Largest absolute sample, 0..1 (0: digital silence).")
    size: int
    sha256: str

    @property
    def duration(self) -> float:
        return self.duration_ms / 1000.0


class SubtitleEntry(BaseModel):
    """One subtitle line: ``start``/``end`` in seconds from the start of its audio."""

    start: float
    end: float
    text: str

    @property
    def duration(self) -> float:
        return self.end - self.start


def _source(data: bytes | os.PathLike[str] | str) -> tuple[bytes, str]:
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data), "audio"
    path = Path(data)
    try:
        return path.read_bytes(), path.name
    except OSError as exc:
        raise InvalidAudioError(f"{path.name}: cannot be read ({exc})", path=str(path)) from None


def decode_audio(data: bytes | os.PathLike[str] | str, *, fmt: str | None = None,
                 sample_rate: int | None = None, channels: int | None = None
                 ) -> tuple[np.ndarray, int]:
    """All samples as float32 ``(channels, n)`` in [-1, 1] and the sample rate.

    ``fmt`` is the MiniMax format name; raw formats (``pcm``, ``pcmu_raw``) need
    ``sample_rate`` and ``channels``."""
    raw, name = _source(data)
    samples, rate, _ = _decode(raw, name, fmt, sample_rate, channels, keep=True)
    assert samples is not None
    return samples, rate


def probe_audio(data: bytes | os.PathLike[str] | str, *, fmt: str | None = None,
                sample_rate: int | None = None, channels: int | None = None) -> AudioInfo:
    """Decode every packet; raise ``InvalidAudioError`` unless this is real audio.

    Real means: at least one audio stream, every packet decodes, and more than 10 ms of
    samples come out."""
    raw, name = _source(data)
    _, rate, info = _decode(raw, name, fmt, sample_rate, channels, keep=False)
    return info


def _decode(raw: bytes, name: str, fmt: str | None, sample_rate: int | None,
            channels: int | None, *, keep: bool) -> tuple[np.ndarray | None, int, AudioInfo]:
    if not raw:
        raise InvalidAudioError(f"{name}: audio is empty (0 bytes)")
    options: dict[str, str] = {}
    container_format = None
    if fmt in _RAW:
        if not sample_rate or not channels:
            raise InvalidAudioError(f"{name}: raw {fmt} audio needs its sample rate and "
                                    "channel count to be decoded")
        container_format = _RAW[fmt]
        options = {"sample_rate": str(sample_rate), "ch_layout": "stereo" if channels == 2
                   else "mono"}
    try:
        container = av.open(io.BytesIO(raw), "r", format=container_format, options=options)
    except (av.error.FFmpegError, ValueError, OSError) as exc:
        raise InvalidAudioError(f"{name}: not a readable audio file ({exc})") from None
    chunks: list[np.ndarray] = []
    count = 0
    peak = 0.0
    try:
        with container:
            if not container.streams.audio:
                raise InvalidAudioError(f"{name}: has no audio stream")
            stream = container.streams.audio[0]
            codec = stream.codec_context.name
            rate = stream.codec_context.sample_rate or sample_rate or 0
            layout_channels = stream.codec_context.channels or channels or 1
            try:
                for frame in container.decode(stream):
                    array = frame.to_ndarray()
                    array = _as_float(array, frame.format.name, layout_channels)
                    count += array.shape[1]
                    if array.size:
                        peak = max(peak, float(np.max(np.abs(array))))
                    if keep:
                        chunks.append(array)
                    rate = frame.sample_rate or rate
            except (av.error.FFmpegError, ValueError) as exc:
                raise InvalidAudioError(f"{name}: audio does not decode to the end "
                                        f"({exc})") from None
            container_name = container.format.name
    except av.error.FFmpegError as exc:  # pragma: no cover - closing a broken container
        raise InvalidAudioError(f"{name}: not a readable audio file ({exc})") from None
    if not rate or count < rate / 100:
        raise InvalidAudioError(f"{name}: decodes to {count} samples: not real audio")
    info = AudioInfo(codec=codec, container=container_name, sample_rate=int(rate),
                     channels=int(layout_channels), samples=count,
                     duration_ms=round(1000 * count / rate), peak=round(min(peak, 1.0), 6),
                     size=len(raw), sha256=hashlib.sha256(raw).hexdigest())
    samples = np.concatenate(chunks, axis=1) if keep and chunks else None
    return samples, int(rate), info


def _as_float(array: np.ndarray, sample_format: str, channels: int) -> np.ndarray:
    """A decoded frame as float32 (channels, n), whatever PyAV's layout."""
    planar = sample_format.endswith("p")
    if not planar:  # packed: (1, n * channels) interleaved
        array = array.reshape(-1, channels).T
    if array.dtype == np.int16:
        array = array.astype(np.float32) / 32768.0
    elif array.dtype == np.int32:
        array = array.astype(np.float32) / 2147483648.0
    elif array.dtype == np.uint8:
        array = (array.astype(np.float32) - 128.0) / 128.0
    return array.astype(np.float32, copy=False)


# -- encoding ---------------------------------------------------------------------------
_CODECS: dict[str, tuple[str | None, str, str]] = {
    # MiniMax format -> (container, codec, sample format)
    "mp3": ("mp3", "libmp3lame", "fltp"),
    "wav": ("wav", "pcm_s16le", "s16"),
    "flac": ("flac", "flac", "s16"),
    "opus": ("ogg", "libopus", "s16"),
    "pcmu_wav": ("wav", "pcm_mulaw", "s16"),
}


def encode_audio(samples: np.ndarray, sample_rate: int, fmt: str = "mp3", *,
                 bitrate: int | None = None) -> bytes:
    """Float samples ``(channels, n)`` (or ``(n,)`` for mono) in [-1, 1] as a file of
    MiniMax format ``fmt`` (mp3, wav, flac, pcm, opus, pcmu_raw, pcmu_wav)."""
    data = np.asarray(samples, dtype=np.float32)
    if data.ndim == 1:
        data = data[None, :]
    data = np.clip(data, -1.0, 1.0)
    channels = data.shape[0]
    if fmt == "pcm":
        pcm = (data.T * 32767.0).round().astype("<i2")
        return pcm.tobytes()
    if fmt == "pcmu_raw":
        return _mulaw(data)
    if fmt not in _CODECS:
        raise ValueError(f"unknown audio format {fmt!r}")
    container_name, codec, sample_format = _CODECS[fmt]
    rate = sample_rate
    if fmt == "opus" and rate not in _OPUS_RATES:
        data, rate = _resample(data, rate, 48000), 48000
    layout = "stereo" if channels == 2 else "mono"
    buf = io.BytesIO()
    with av.open(buf, "w", format=container_name) as container:
        stream = container.add_stream(codec, rate=rate, layout=layout)
        if bitrate and fmt in ("mp3", "opus"):
            stream.bit_rate = bitrate
        frame_size = stream.codec_context.frame_size or 1024
        pts = 0
        for start in range(0, data.shape[1], frame_size):
            block = data[:, start:start + frame_size]
            frame = _frame(block, sample_format, layout, rate)
            frame.pts = pts
            pts += block.shape[1]
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buf.getvalue()


def _frame(block: np.ndarray, sample_format: str, layout: str, rate: int) -> av.AudioFrame:
    if sample_format == "fltp":
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block), format="fltp",
                                           layout=layout)
    else:  # packed s16: (1, n * channels)
        packed = (block.T * 32767.0).round().astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(packed, format="s16", layout=layout)
    frame.sample_rate = rate
    return frame


def _resample(data: np.ndarray, rate: int, target: int) -> np.ndarray:
    n = int(round(data.shape[1] * target / rate))
    old = np.linspace(0.0, 1.0, data.shape[1], endpoint=False)
    new = np.linspace(0.0, 1.0, n, endpoint=False)
    return np.stack([np.interp(new, old, channel) for channel in data]).astype(np.float32)


def _mulaw(data: np.ndarray) -> bytes:
    """G.711 mu-law bytes, interleaved."""
    return _linear_to_ulaw(data.T.reshape(-1)).tobytes()


def _linear_to_ulaw(x: np.ndarray) -> np.ndarray:
    pcm = np.clip((x * 32767.0).round(), -32768, 32767).astype(np.int32)
    bias, clip = 0x84, 32635
    sign = np.where(pcm < 0, 0x80, 0)
    magnitude = np.minimum(np.abs(pcm), clip) + bias
    exponent = np.floor(np.log2(np.maximum(magnitude, 1))).astype(np.int32) - 7
    exponent = np.clip(exponent, 0, 7)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8)


# -- subtitles --------------------------------------------------------------------------
_START_KEYS = ("time_begin", "begin_time", "start_time", "start", "begin", "startMs",
               "start_ms", "time_start")
_END_KEYS = ("time_end", "end_time", "end", "endMs", "end_ms", "time_stop")
_TEXT_KEYS = ("text", "content", "sentence", "word")


def _first(entry: dict[str, Any], keys: Iterable[str]) -> Any:
    for key in keys:
        if key in entry and entry[key] is not None:
            return entry[key]
    return None


def parse_subtitles(body: Any, *, unit: str = "ms") -> list[SubtitleEntry]:
    """Subtitle entries (seconds) from MiniMax's subtitle JSON.

    Accepts a list of entries or an object holding one under ``subtitles``, ``data``,
    ``sentences`` or ``words``; times in ``unit`` ("ms", the documented unit, or "s").
    Raises ``UnreadableAnswerError`` for anything else."""
    entries = body
    if isinstance(body, dict):
        for key in ("subtitles", "subtitle", "data", "sentences", "words", "list"):
            if isinstance(body.get(key), list):
                entries = body[key]
                break
    if not isinstance(entries, list):
        raise errors.UnreadableAnswerError("subtitle file is not a list of entries")
    scale = 1000.0 if unit == "ms" else 1.0
    out: list[SubtitleEntry] = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise errors.UnreadableAnswerError("subtitle entry is not an object")
        start, end, text = (_first(entry, _START_KEYS), _first(entry, _END_KEYS),
                            _first(entry, _TEXT_KEYS))
        try:
            start_s, end_s = float(start) / scale, float(end) / scale
        except (TypeError, ValueError):
            raise errors.UnreadableAnswerError(
                "subtitle entry without numeric start and end times") from None
        if end_s < start_s or start_s < 0:
            raise errors.UnreadableAnswerError(
                f"subtitle entry ends before it starts ({start_s:.3f}s > {end_s:.3f}s)")
        out.append(SubtitleEntry(start=round(start_s, 4), end=round(end_s, 4),
                                 text=str(text or "").strip()))
    return out
