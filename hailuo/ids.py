"""Provider ids (task ids, file ids) are untrusted text: check them before they become a
URL path segment, a file name, an S3 key or a log line.

Why one conservative pattern instead of escaping at each use: an id is used in many
places (``/v1/tasks/{id}``, ``<output>/<id>.mp4``, ``<prefix>/<provider>/<id>/``, Prefect
task-run names, CLI output). An id that matches ``ID_PATTERN`` is safe in all of them
unchanged: no path separator, no ``..`` name, no URL metacharacter, no control character,
nothing a shell or a terminal interprets, and short. Real ids (APIMart
``task_01K8SGYNNNVBQTXNR4MM964S7K``, MiniMax 15-digit numbers) all match; anything else is
refused with :class:`hailuo.errors.UnsafeIdError`, which carries the raw id truncated and
printable (never the whole, possibly megabyte-long or terminal-escaping value).
"""

from __future__ import annotations

import re
from typing import Any

from hailuo import errors

#: Letters, digits, ``_``, ``-`` and ``.``; starting with a letter or digit (so never
#: ``.`` / ``..`` / a hidden file / an option-like ``-x``); at most 128 characters.
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
MAX_SHOWN = 48


def shown(raw: Any, limit: int = MAX_SHOWN) -> str:
    """A printable, truncated rendering of an untrusted value for messages and logs."""
    text = raw if isinstance(raw, str) else repr(raw)
    return ascii(text[:limit]) + ("..." if len(text) > limit else "")


def is_safe_id(raw: Any) -> bool:
    return isinstance(raw, str) and ID_PATTERN.fullmatch(raw) is not None


def check_id(raw: Any, *, what: str = "task id", task_id: str | None = None) -> str:
    """``raw`` as a string when it is a safe id, else ``UnsafeIdError``.

    Numbers (MiniMax sends JSON numbers for some ids) are accepted as their decimal text.
    """
    if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0:
        raw = str(raw)
    if is_safe_id(raw):
        return raw
    raise errors.UnsafeIdError(
        f"the provider sent a {what} that is not safe to use in a URL or a file name: "
        f"{shown(raw)} (expected 1-128 letters, digits, '_', '-' or '.')",
        raw_id=shown(raw), what=what, task_id=task_id if is_safe_id(task_id) else None)


__all__ = ["ID_PATTERN", "check_id", "is_safe_id", "shown"]
