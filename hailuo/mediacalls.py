"""What the speech and music clients do alike with one MiniMax audio answer.

Both APIs answer a paid call with ``data.audio`` (hex bytes, or a URL) or
``data.audio_url``, plus ``extra_info`` and ``trace_id``; both then make a local file the
same way: fetch the URL without the key (when the answer held no bytes), decode the audio
to its last sample (``hailuo.audio``), compare the provider's reported length with the
decoded one, and rename the file into place only when everything checked out. The
per-API parts (subtitles, usage, which ``extra_info`` field holds the length) stay in
``hailuo.speech`` and ``hailuo.music``.

No Prefect imports.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from hailuo import audio, errors
from hailuo.files import atomic_output
from hailuo.mediaclient import MediaHTTP


def optional_int(value: Any) -> int | None:
    """``value`` as an int, or None when it is missing, a bool or not a number."""
    try:
        return int(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class AudioParts:
    """The parts of a successful audio answer both APIs carry."""

    data: dict[str, Any]
    audio: bytes | None
    audio_url: str | None
    extra_info: dict[str, Any]
    trace_id: str | None


def audio_parts(body: Any, kind: str, *, no_data: str = "", no_audio: str = ""
                ) -> AudioParts:
    """Read a successful MiniMax ``kind`` answer (base_resp already checked): the audio as
    bytes (hex decoded) or its URL. An answer without data or without audio is a
    ``ProviderAnswerError`` (``no_data`` / ``no_audio``: what its message adds)."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict):
        raise errors.ProviderAnswerError(
            f"MiniMax {kind} answered success without data{no_data}")
    value = data.get("audio")
    url = data.get("audio_url") if isinstance(data.get("audio_url"), str) else None
    raw: bytes | None = None
    if isinstance(value, str) and value.strip().lower().startswith(("http://", "https://")):
        url = url or value.strip()
    elif isinstance(value, str) and value:
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raise errors.ProviderAnswerError(
                f"MiniMax {kind} answer: data.audio is neither hex nor a URL") from None
    if raw is None and not url:
        raise errors.ProviderAnswerError(f"MiniMax {kind} answer carried no audio{no_audio}")
    extra = body.get("extra_info") if isinstance(body.get("extra_info"), dict) else {}
    return AudioParts(data=data, audio=raw, audio_url=url, extra_info=extra,
                      trace_id=str(body.get("trace_id") or "") or None)


class _AudioAnswer(Protocol):
    audio: bytes | None
    audio_url: str | None


def decoded_audio(client: MediaHTTP, answer: _AudioAnswer, *, what: str, fmt: str,
                  sample_rate: int, channels: int) -> tuple[bytes, audio.AudioInfo]:
    """The answer's audio (fetched without the key when it came as a URL), decoded to its
    last sample."""
    data = answer.audio if answer.audio is not None else client.fetch_url(
        answer.audio_url or "", what=what)
    return data, audio.probe_audio(data, fmt=fmt, sample_rate=sample_rate, channels=channels)


def audio_length(reported: int | None, measured_ms: int, *, slack_ms: int,
                 label: str, log: logging.Logger) -> int:
    """The provider's reported length (ms) when it gave one, else the decoded length; a
    report further than ``max(slack_ms, 5 %)`` from what was decoded is logged."""
    if reported and abs(reported - measured_ms) > max(slack_ms, 0.05 * reported):
        log.warning("%s %d ms but %d ms decoded", label, reported, measured_ms)
    return reported if reported and reported > 0 else measured_ms


def save(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    dest = Path(path)
    with atomic_output(dest) as tmp:
        tmp.write_bytes(data)
    return dest


__all__ = ["AudioParts", "audio_length", "audio_parts", "decoded_audio", "optional_int",
           "save"]
