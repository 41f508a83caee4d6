"""A narrated film's subtitles: the speech timestamps put on the film's timeline, written as
``.srt`` and ``.vtt`` sidecars (pysubs2) next to the video, with the video's stem.

MiniMax's speech answer carries sentence timestamps relative to its own audio
(``hailuo.audio.SubtitleEntry``, seconds). ``film_cues`` moves each narration's entries by
where that narration starts in the film, drops what would start after the film ends and
cuts what would run past it, and keeps cues from overlapping (a cue ends no later than the
next one starts). The same cues go into the MP4 as a ``mov_text`` track
(``hailuo.mix.write_film``).

No Prefect imports.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import pysubs2

from hailuo.audio import SubtitleEntry
from hailuo.files import atomic_output
from hailuo.mix import Cue

__all__ = ["film_cues", "read_cues", "write_sidecars"]


def film_cues(narrations: Iterable[tuple[float, Sequence[SubtitleEntry]]],
              film_duration: float | None = None) -> list[Cue]:
    """Cues on the film's timeline from (narration start in the film, its entries)."""
    cues: list[Cue] = []
    for offset, entries in narrations:
        for entry in entries:
            text = " ".join(entry.text.split())
            if not text:
                continue
            start, end = offset + entry.start, offset + max(entry.end, entry.start)
            if film_duration is not None:
                if start >= film_duration:
                    continue
                end = min(end, film_duration)
            cues.append(Cue(round(start, 3), round(end, 3), text))
    cues.sort(key=lambda c: (c.start, c.end))
    for i in range(len(cues) - 1):
        if cues[i].end > cues[i + 1].start:
            cues[i] = Cue(cues[i].start, max(cues[i].start, cues[i + 1].start), cues[i].text)
    return [c for c in cues if c.end > c.start]


def _subs(cues: Sequence[Cue]) -> pysubs2.SSAFile:
    subs = pysubs2.SSAFile()
    for cue in cues:
        subs.append(pysubs2.SSAEvent(start=int(round(cue.start * 1000)),
                                     end=int(round(cue.end * 1000)), text=cue.text))
    return subs


def write_sidecars(cues: Sequence[Cue], video: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``<video stem>.srt`` and ``<video stem>.vtt`` beside ``video`` (written atomically);
    returns their paths."""
    video = Path(video)
    subs = _subs(cues)
    paths = []
    for suffix, fmt in ((".srt", "srt"), (".vtt", "vtt")):
        path = video.with_suffix(suffix)
        with atomic_output(path) as tmp:
            tmp.write_text(subs.to_string(fmt), encoding="utf-8")
        paths.append(path)
    return paths[0], paths[1]


def read_cues(path: str | os.PathLike[str]) -> list[Cue]:
    """Cues from an ``.srt`` or ``.vtt`` file (pysubs2), in seconds."""
    subs = pysubs2.load(str(path), encoding="utf-8")
    return [Cue(e.start / 1000, e.end / 1000, e.plaintext) for e in subs if not e.is_comment]
