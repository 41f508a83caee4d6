"""Atomic file output: write beside the destination, rename into place only on success.

Why: a crash, a broken download or a failed encode must never leave a half-written file
under the final name (a later run would trust it). The temporary name keeps the real
extension last, so libraries that guess the format from the name (PyAV, Pillow) still work.

A process killed mid-write (SIGKILL, power loss) cannot delete its temporary file, so
each writer holds an exclusive ``flock`` on its temporary file while it writes, and the
next ``atomic_output`` of the same target removes the temporary files of that target
nobody holds any more (where ``flock`` is missing, ones untouched for an hour).

``output_path`` is the one way to turn a provider id into a file name: it checks the id
(``hailuo.ids``) and that the result resolves inside the output folder. ``clip_path``
names a clip's files after the clip (``<group>/<name or prompt slug>-<task id short>``)
through the same checks.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import unicodedata
import uuid
from collections.abc import Iterator
from pathlib import Path

from hailuo import errors
from hailuo.ids import check_id

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows: stale temp files are judged by age
    fcntl = None  # type: ignore[assignment]

#: Without ``flock``, a temporary file untouched this long is taken for a crashed writer's.
STALE_SECONDS = 3600.0


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``, on any
    error delete it and re-raise."""
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(dest)
    tmp = dest.with_name(f".{dest.stem}.{uuid.uuid4().hex[:8]}.part{dest.suffix}")
    held = _hold(tmp)
    try:
        yield tmp
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if held is not None:
            os.close(held)


def _temp_pattern(dest: Path) -> re.Pattern[str]:
    return re.compile(rf"\.{re.escape(dest.stem)}\.[0-9a-f]{{8}}\.part{re.escape(dest.suffix)}")


def _hold(tmp: Path) -> int | None:
    """Create ``tmp`` and hold an exclusive lock on it for as long as it is written."""
    if fcntl is None:
        return None
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _abandoned(path: Path) -> bool:
    if fcntl is None:
        try:
            return time.time() - path.stat().st_mtime > STALE_SECONDS
        except OSError:
            return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # a live writer holds it
    else:
        return True
    finally:
        os.close(fd)  # closing drops our lock too


def remove_stale_temps(path: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files of ``path`` left by writers that died; returns them."""
    dest = Path(path)
    pattern = _temp_pattern(dest)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(dest.parent))
    except OSError:
        return removed
    for entry in entries:
        if not pattern.fullmatch(entry.name):
            continue
        candidate = Path(entry.path)
        with contextlib.suppress(OSError):
            if entry.is_file(follow_symlinks=False) and _abandoned(candidate):
                candidate.unlink()
                removed.append(candidate)
    return removed


def output_path(folder: str | os.PathLike[str], name: str, suffix: str = "") -> Path:
    """``<folder>/<name><suffix>`` for a provider id ``name``, after checking that the id
    is safe (``UnsafeIdError``) and that the path resolves inside ``folder``."""
    check_id(name, what="id used as a file name")
    return ensure_inside(Path(folder) / f"{name}{suffix}", folder)


#: The folder single clips go to when no batch or film names one.
DEFAULT_GROUP = "clips"
_NOT_SLUG = re.compile(r"[^a-z0-9]+")
_BRACKETS = re.compile(r"\[[^\]]*\]")


def slug(text: str | None, *, max_chars: int = 40, fallback: str = "clip") -> str:
    """``text`` as lowercase letters, digits and single dashes, at most ``max_chars`` and
    cut at a word boundary when possible: no path separator, dot, space or anything a
    shell, a URL or a Prefect artifact key minds. Camera brackets (``[Pan left]``) are
    left out: a prompt slug names what is filmed. Empty -> ``fallback``."""
    raw = unicodedata.normalize("NFKD", _BRACKETS.sub(" ", text or ""))
    raw = raw.encode("ascii", "ignore").decode().lower()
    words = _NOT_SLUG.sub("-", raw).strip("-")
    if len(words) > max_chars:
        cut = words[:max_chars + 1]
        words = cut.rsplit("-", 1)[0] if "-" in cut else cut[:max_chars]
    return words.strip("-")[:max_chars] or fallback


def short_task_id(task_id: str, length: int = 8) -> str:
    """The last ``length`` letters and digits of a (checked) provider task id, lowercased:
    the random tail of an APIMart ULID or a MiniMax number, enough to tell tasks apart in
    one folder (``task_01K8SGYNNNVBQTXNR4MM964S7K`` -> ``mm964s7k``)."""
    check_id(task_id, what="task id used in a file name")
    return "".join(ch for ch in task_id if ch.isalnum())[-length:].lower()


def clip_path(output_dir: str | os.PathLike[str], group: str | None, label: str | None,
              task_id: str, suffix: str = ".mp4") -> Path:
    """Where a clip's video lives: ``<output_dir>/<group>/<label>-<task id short><suffix>``,
    every part sanitised (``slug``, ``short_task_id``) and the result proven inside
    ``output_dir``.

    Deterministic from run-independent inputs (the batch or film name, the clip's name or
    prompt, the provider task id), never the flow run: a re-run computes the same path and
    finds the verified download there instead of fetching it again."""
    folder = Path(output_dir) / slug(group, max_chars=60, fallback=DEFAULT_GROUP)
    name = f"{slug(label)}-{short_task_id(task_id)}{suffix}"
    return ensure_inside(folder / name, output_dir)


def ensure_inside(path: str | os.PathLike[str], folder: str | os.PathLike[str]) -> Path:
    """``path`` if it resolves (symlinks included) inside ``folder``, else
    ``UnsafeIdError``. Neither needs to exist yet."""
    base = Path(folder).resolve()
    target = Path(path)
    if not target.resolve().is_relative_to(base) or target.resolve() == base:
        raise errors.UnsafeIdError(
            f"output path {str(path)[:200]!r} does not resolve inside the output folder "
            f"{str(folder)[:200]!r}", raw_id=str(path)[:200])
    return target
