"""Keeping the API key out of everything we print, raise, log or store.

Why more than ``text.replace(key, "***")``: a hostile or careless provider echoes the key
back in many spellings - URL-encoded (``sk%2Dabc``), inside ``Bearer <key>`` or an
``Authorization:`` header dump, or only part of it (``sk-abc123def4...``). Each of these
is scrubbed:

* the whole key and its URL-encoded forms;
* whatever follows ``Bearer`` / ``Authorization:`` (a credential whoever it belongs to);
* any word that contains a long enough piece of the key (half of it, at least 8
  characters), also after URL-decoding the word.

``Scrubber(key)`` is what a client uses for the provider text it quotes (failure
messages, error bodies). The module keeps a small registry of the keys clients of this
process use (``remember``), so text built far from any client - an exception's message
(``HailuoError`` scrubs itself), a log record (``LogScrubber``) - is scrubbed too. Short
keys (under 8 characters) are only matched whole: pieces of them would hit ordinary words.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from urllib.parse import quote, quote_plus, unquote_plus

MASK = "***"
MIN_PIECE = 8
#: Provider text quoted in an error or a Job is cut to this many characters.
MAX_QUOTED = 2000

_CREDENTIAL = re.compile(
    r"(?i)(\bbearer(?:\s+|%20|\+|:|=)+"
    r"|\bauthorization[\"']?\s*[:=]\s*[\"']?(?:(?:bearer|basic|token)(?:\s+|%20|\+))?)"
    r"[^\s\"'<>,;)}\]]+")
_WORD = re.compile(r"[^\s\"'<>,;(){}\[\]]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


class Scrubber:
    """Scrubs one key (and ``Bearer`` credentials) from text."""

    def __init__(self, key: str) -> None:
        self.key = key
        self._forms = sorted({f for f in (key, quote(key, safe=""), quote_plus(key, safe=""))
                              if f}, key=len, reverse=True)
        self._piece = max(MIN_PIECE, len(key) // 2)
        self._pieces = ({key[i:i + self._piece] for i in range(len(key) - self._piece + 1)}
                        if len(key) >= MIN_PIECE else set())

    def _has_piece(self, word: str) -> bool:
        if len(word) < self._piece:
            return False
        candidates = (word, unquote_plus(word)) if "%" in word or "+" in word else (word,)
        return any(piece in text for text in candidates for piece in self._pieces)

    def __call__(self, text: str) -> str:
        if not text:
            return text
        for form in self._forms:
            if form in text:
                text = text.replace(form, MASK)
        if self._pieces:
            text = _WORD.sub(lambda m: MASK if self._has_piece(m.group(0)) else m.group(0),
                             text)
        return text


def scrub_credentials(text: str) -> str:
    """``Bearer <anything>`` and ``Authorization: <anything>`` with the value masked."""
    return _CREDENTIAL.sub(lambda m: m.group(1) + MASK, text) if text else text


def quoted(text: object, scrubber: Scrubber | None = None, limit: int = MAX_QUOTED) -> str:
    """Provider text made fit to quote: key and credentials scrubbed, control characters
    (terminal escapes, bidi overrides, newlines that forge log lines) replaced, cut."""
    value = "" if text is None else str(text)
    if len(value) > 4 * limit:
        value = value[: 4 * limit]  # bound the work on megabyte-long "messages"
    value = scrub_credentials(value)
    if scrubber is not None:
        value = scrubber(value)
    value = scrub_known(value)
    value = _CONTROL.sub(" ", value)
    return value if len(value) <= limit else value[:limit] + "...[cut]"


# -- the process's keys ---------------------------------------------------------------
_lock = threading.Lock()
_known: OrderedDict[str, Scrubber] = OrderedDict()
_MAX_KNOWN = 32


#: Keys shorter than this are not remembered process-wide: scrubbing a one- or
#: two-character "key" from every message would mangle ordinary text (real provider keys
#: are dozens of characters; the client's own scrubber still masks a short key exactly).
MIN_REMEMBERED = 8


def remember(key: str) -> Scrubber:
    """Register a key this process uses; returns its scrubber."""
    if len(key) < MIN_REMEMBERED:
        return Scrubber(key)
    with _lock:
        scrubber = _known.get(key)
        if scrubber is None:
            scrubber = _known[key] = Scrubber(key)
            while len(_known) > _MAX_KNOWN:
                _known.popitem(last=False)
        else:
            _known.move_to_end(key)
        return scrubber


def scrub(text: str) -> str:
    """``text`` with every remembered key and any ``Bearer`` credential scrubbed."""
    return scrub_credentials(scrub_known(text)) if isinstance(text, str) else text


def scrub_known(text: str) -> str:
    """``text`` with every remembered key scrubbed."""
    if not text or not isinstance(text, str):
        return text
    with _lock:
        scrubbers = list(_known.values())
    for scrubber in scrubbers:
        text = scrubber(text)
    return text


class LogScrubber(logging.Filter):
    """A logging filter that scrubs remembered keys from a record's rendered message."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is logging's problem, not ours
            return True
        clean = scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


__all__ = ["MASK", "LogScrubber", "Scrubber", "quoted", "remember", "scrub",
           "scrub_credentials", "scrub_known"]
