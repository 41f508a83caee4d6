"""Atomic file output: write beside the destination, rename into place only on success.

Why: a crash, a broken download or a failed encode must never leave a half-written file
under the final name (a later run would trust it). The temporary name keeps the real
extension last, so libraries that guess the format from the name (PyAV, Pillow) still work.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``, on any
    error delete it and re-raise."""
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.stem}.{uuid.uuid4().hex[:8]}.part{dest.suffix}")
    try:
        yield tmp
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
