"""Real media for the simulated speech, music and image APIs.

* **Speech**: every word becomes a voiced, vowel-like sound (a few harmonics of a pitch
  that depends on the voice, ``pitch`` and emotion, with syllable-rate loudness changes and
  a short noise burst for the first consonant), separated by silence. Its length follows
  the text: about ``ms_per_char`` per letter plus a fixed part per word at speed 1.0,
  divided by ``speed``; commas, sentence ends, paragraphs and ``<#x#>`` markers add pauses.
  The same timeline gives the subtitle entries, so subtitle times match the audio exactly
  (sentences of at most 50 characters, as MiniMax documents).
* **Music**: a stereo track of the decided length - pads on a I-V-vi-IV progression, a bass
  line and drums at a tempo taken from the prompt's hash, faded in and out.
* **Images**: a PNG of the exact size asked for: a gradient and shapes whose colours and
  places are seeded by the prompt (and seed and index), with the prompt written on it.

Pure functions of their inputs (same request, same bytes), so tests can compare.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

_PAUSE = re.compile(r"<#([0-9.]+)#>")
_WORD = re.compile(r"\S+")
_SENTENCE_END = ("。", "！", "？", ".", "!", "?")
_CLAUSE_END = (",", ";", ":", "，", "；", "：")
MAX_SENTENCE_CHARS = 50


def _seed(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("\0".join(map(str, parts)).encode()).digest()[:8],
                          "big")


# -- speech -----------------------------------------------------------------------------
@dataclass
class Word:
    text: str
    start_ms: float
    end_ms: float
    char_begin: int
    char_end: int


@dataclass
class SpeechPlan:
    words: list[Word] = field(default_factory=list)
    total_ms: float = 0.0
    sentences: list[tuple[float, float, str, int, int]] = field(default_factory=list)


def plan_speech(text: str, *, speed: float = 1.0, ms_per_char: float = 55.0,
                ms_per_word: float = 90.0) -> SpeechPlan:
    """The timeline of ``text`` spoken at ``speed``: words, sentences, total length.

    At speed 1.0 a word lasts ``ms_per_word + ms_per_char * letters``; a word is followed
    by 60 ms of silence, 180 ms after a clause mark, 350 ms after a sentence end and
    500 ms at a paragraph break; ``<#x#>`` adds x seconds (not scaled by speed). 100 ms of
    silence lead and 150 ms trail."""
    plan = SpeechPlan()
    t = 100.0
    pos = 0
    pending_pause = 0.0
    for number, piece in enumerate(_PAUSE.split(text)):
        if number % 2:  # the seconds captured from a <#x#> marker
            pending_pause += _seconds(piece) * 1000.0
            pos += len(piece) + 4
            continue
        for match in _WORD.finditer(piece):
            word = match.group(0)
            begin = pos + match.start()
            t += pending_pause
            pending_pause = 0.0
            letters = sum(1 for c in word if c.isalnum()) or 1
            wide = sum(1 for c in word if ord(c) > 0x2E80)
            length = (ms_per_word + ms_per_char * (letters + wide)) / speed
            plan.words.append(Word(word, t, t + length, begin, begin + len(word)))
            t += length
            following = piece[match.end():match.end() + 2]
            if word.endswith(_SENTENCE_END):
                gap = 500.0 if "\n" in following else 350.0
            elif word.endswith(_CLAUSE_END):
                gap = 180.0
            elif "\n" in following:
                gap = 500.0
            else:
                gap = 60.0
            t += gap / speed
        pos += len(piece)
    if plan.words:  # the last word's gap is not spoken
        last = plan.words[-1]
        t = last.end_ms
    t += pending_pause + 150.0
    plan.total_ms = t
    plan.sentences = _sentences(text, plan.words)
    return plan


def _seconds(piece: str) -> float:
    try:
        return float(piece)
    except ValueError:
        return 0.0


def _sentences(text: str, words: list[Word]) -> list[tuple[float, float, str, int, int]]:
    """Sentence entries (start ms, end ms, text, char begin, char end), each at most 50
    characters: a longer sentence is cut at word boundaries."""
    out: list[tuple[float, float, str, int, int]] = []
    group: list[Word] = []

    def flush() -> None:
        if group:
            out.append((group[0].start_ms, group[-1].end_ms,
                        " ".join(w.text for w in group), group[0].char_begin,
                        group[-1].char_end))
            group.clear()

    for index, word in enumerate(words):
        if group and len(" ".join(w.text for w in group + [word])) > MAX_SENTENCE_CHARS:
            flush()
        group.append(word)
        nxt = words[index + 1] if index + 1 < len(words) else None
        newline = nxt is not None and "\n" in text[word.char_end:nxt.char_begin]
        if word.text.endswith(_SENTENCE_END) or newline:
            flush()
    flush()
    return out


_EMOTION_SEMITONES = {"happy": 2.0, "surprised": 3.0, "sad": -2.0, "fearful": 1.0,
                      "angry": 1.0, "calm": -1.0, "disgusted": -1.0}


def render_speech(plan: SpeechPlan, *, sample_rate: int, voice: str, pitch: int = 0,
                  vol: float = 1.0, emotion: str | None = None, channels: int = 1
                  ) -> np.ndarray:
    """Float samples (channels, n) for a plan: voiced words, silence between them."""
    n = int(round(plan.total_ms * sample_rate / 1000.0))
    out = np.zeros(n, dtype=np.float32)
    rng = np.random.default_rng(_seed("speech", voice))
    base = 95.0 + (_seed("voice", voice) % 130)  # 95..225 Hz: a voice's own register
    base *= 2.0 ** ((pitch + _EMOTION_SEMITONES.get(emotion or "", 0.0)) / 12.0)
    amplitude = float(min(0.85, 0.32 * max(0.1, vol) ** 0.5))
    whisper = emotion == "whisper"
    for index, word in enumerate(plan.words):
        a = int(round(word.start_ms * sample_rate / 1000.0))
        b = min(n, int(round(word.end_ms * sample_rate / 1000.0)))
        if b <= a:
            continue
        t = np.arange(b - a, dtype=np.float32) / sample_rate
        span = (b - a) / sample_rate
        f0 = base * (1.06 - 0.12 * t / max(span, 1e-3)) * (1.0 + 0.03 * ((index % 5) - 2))
        phase = 2 * np.pi * np.cumsum(f0) / sample_rate
        if whisper:
            voiced = rng.standard_normal(len(t)).astype(np.float32) * 0.5
        else:
            voiced = sum((0.9 / k) * np.sin(k * phase) for k in range(1, 6))
            voiced = voiced.astype(np.float32) / 1.6
        syllables = 0.65 + 0.35 * np.abs(np.sin(np.pi * 4.5 * t))
        ramp = np.minimum(1.0, np.minimum(t, span - t) / 0.012).clip(0.0, 1.0)
        sound = voiced * syllables * ramp
        burst = min(len(t), int(0.025 * sample_rate))
        sound[:burst] += rng.standard_normal(burst).astype(np.float32) * 0.25 * np.linspace(
            1.0, 0.0, burst, dtype=np.float32)
        out[a:b] = amplitude * sound
    out = np.clip(out, -1.0, 1.0)
    return np.stack([out] * channels) if channels > 1 else out[None, :]


# -- music ------------------------------------------------------------------------------
_LENGTH = re.compile(r"(?i)\b(\d{1,3}(?:\.\d+)?)\s*(?:s|sec|secs|second|seconds)\b")
_MINUTES = re.compile(r"(?i)\b(\d(?:\.\d+)?)\s*(?:min|mins|minute|minutes)\b")
_CLOCK = re.compile(r"\b(\d):([0-5]\d)\b")
_TAG = re.compile(r"^\s*\[[^\]]*\]\s*$")


def music_seconds(prompt: str | None, lyrics: str | None, *, default: float = 30.0
                  ) -> float:
    """How long the simulated model makes a track: a length written in the prompt ("a
    45 second bed", "2 minutes", "1:30"), else ~3 s per sung line plus 2 s per section
    tag, else ``default``; always 5 s .. 5 min."""
    text = prompt or ""
    seconds: float | None = None
    if (match := _CLOCK.search(text)) is not None:
        seconds = int(match.group(1)) * 60 + int(match.group(2))
    elif (match := _MINUTES.search(text)) is not None:
        seconds = float(match.group(1)) * 60
    elif (match := _LENGTH.search(text)) is not None:
        seconds = float(match.group(1))
    elif lyrics:
        lines = [line for line in lyrics.splitlines() if line.strip()]
        tags = sum(1 for line in lines if _TAG.match(line))
        seconds = 3.0 * (len(lines) - tags) + 2.0 * tags
    return float(min(300.0, max(5.0, seconds if seconds is not None else default)))


def render_music(seconds: float, *, sample_rate: int, prompt: str, channels: int = 2,
                 vocals: bool = False) -> np.ndarray:
    """Float samples (channels, n): pads, bass and drums, tempo and key from the prompt."""
    seed = _seed("music", prompt)
    rng = np.random.default_rng(seed)
    bpm = 80 + seed % 49
    root = 110.0 * 2 ** ((seed // 49 % 12) / 12.0)
    n = int(round(seconds * sample_rate))
    t = np.arange(n, dtype=np.float64) / sample_rate
    beat = 60.0 / bpm
    bar = 4 * beat
    progression = (0, 7, 9, 5)  # I V vi IV, in semitones above the root
    chord_index = (t // bar).astype(int) % 4
    steps = np.array(progression)[chord_index]
    chord_root = root * 2.0 ** (steps / 12.0)
    minor = np.isin(chord_index, [2])
    third = np.where(minor, 2 ** (3 / 12), 2 ** (4 / 12))
    fifth = 2 ** (7 / 12)
    pad = (np.sin(2 * np.pi * 2 * chord_root * t) + 0.7 * np.sin(2 * np.pi * 2 * chord_root
                                                                  * third * t)
           + 0.6 * np.sin(2 * np.pi * 2 * chord_root * fifth * t)) / 2.3
    pad *= 0.5 + 0.5 * np.minimum(1.0, (t % bar) / 0.4)
    in_beat = t % beat
    bass = np.sin(2 * np.pi * chord_root * t) * np.exp(-in_beat * 3.0)
    kick = np.sin(2 * np.pi * (55.0 + 60.0 * np.exp(-in_beat * 25)) * in_beat) * np.exp(
        -in_beat * 9.0)
    offbeat = (t + beat / 2) % beat
    hat = rng.standard_normal(n) * np.exp(-offbeat * 60.0) * 0.25
    mix = 0.35 * pad + 0.35 * bass + 0.5 * kick + 0.15 * hat
    if vocals:
        note = root * 2 * 2.0 ** (np.array([0, 2, 4, 7, 9])[(t // beat).astype(int) % 5] / 12)
        mix += 0.2 * np.sin(2 * np.pi * np.cumsum(note) / sample_rate) * (
            0.5 + 0.5 * np.sin(np.pi * t / beat) ** 2)
    fade = np.minimum(1.0, np.minimum(t, seconds - t) / 1.0).clip(0.0, 1.0)
    mix *= fade
    peak = float(np.max(np.abs(mix))) or 1.0
    mono = (0.8 * mix / peak).astype(np.float32)
    if channels == 1:
        return mono[None, :]
    pan = 0.15 * np.sin(2 * np.pi * t / (2 * bar)).astype(np.float32)
    return np.stack([mono * (1 - pan), mono * (1 + pan)]).clip(-1, 1).astype(np.float32)


# -- images -----------------------------------------------------------------------------
def render_image(prompt: str, width: int, height: int, *, seed: int | None = None,
                 index: int = 0) -> bytes:
    """A PNG of exactly width x height whose picture depends on (prompt, seed, index)."""
    rng = np.random.default_rng(_seed("image", prompt, seed, index))
    top, bottom = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    ramp = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    pixels = (top * (1 - ramp) + bottom * ramp).astype(np.uint8)
    image = Image.fromarray(np.broadcast_to(pixels, (height, width, 3)).copy(), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(6, 14))):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        size = int(rng.integers(min(width, height) // 12, min(width, height) // 3))
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        shape = int(rng.integers(0, 3))
        box = (x0 - size, y0 - size, x0 + size, y0 + size)
        if shape == 0:
            draw.ellipse(box, fill=color)
        elif shape == 1:
            draw.rectangle(box, fill=color)
        else:
            draw.polygon([(x0, y0 - size), (x0 + size, y0 + size), (x0 - size, y0 + size)],
                         fill=color)
    caption = prompt[:80]
    band = max(24, height // 14)
    draw.rectangle((0, height - band, width, height), fill=(0, 0, 0))
    draw.text((10, height - band + band // 4), caption, fill=(255, 255, 255))
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


__all__ = ["SpeechPlan", "Word", "music_seconds", "plan_speech", "render_image",
           "render_music", "render_speech"]
