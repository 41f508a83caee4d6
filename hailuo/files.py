"""Atomic file output: write beside the destination, rename into place only on success.

Why: a crash, a broken download or a failed encode must never leave a half-written file
under the final name (a later run would trust it). The temporary name keeps the real
extension last, so libraries that guess the format from the name (PyAV, Pillow) still work.

A process killed mid-write (SIGKILL, power loss) cannot delete its temporary file, so
each writer holds an exclusive ``flock`` on its temporary file while it writes, and the
next ``atomic_output`` of the same target removes the temporary files of that target
nobody holds any more (where ``flock`` is missing, ones untouched for an hour).

``output_path`` is the one way to turn a provider id into a file name: it checks the id
(``hailuo.ids``) and that the result resolves inside the output folder.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
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
