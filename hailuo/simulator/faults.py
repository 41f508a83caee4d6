"""Seeded dice for fault injection, and the provider-shaped bodies faults produce.

Why one random stream *per fault*: with a ``seed``, turning on a second fault must not
change which requests the first one hits, or a failing test could not be replayed by
adding a knob. Each stream is derived from (seed, fault name).
"""

from __future__ import annotations

import hashlib
import random
import threading
from typing import Any

from hailuo.capabilities import Provider

# MiniMax base_resp messages, as the real service words them (api-contract.md section 2).
MINIMAX_MESSAGES: dict[int, str] = {
    0: "success",
    1000: "unknown error",
    1001: "request timeout",
    1002: "rate limit exceeded",
    1004: "login fail: please carry the API secret key in the Authorization header",
    1008: "insufficient balance",
    1013: "internal service error, please retry",
    1024: "internal error",
    1026: "input new_sensitive: the prompt or image was judged sensitive",
    1027: "output new_sensitive: the generated video was judged sensitive",
    1033: "system error",
    2013: "invalid params",
    2049: "invalid api key",
}

# A random 5xx for each provider: MiniMax pairs the HTTP status with a base_resp code.
SERVER_ERRORS: dict[int, tuple[str, int]] = {
    500: ("Internal server error", 1024),
    502: ("Bad gateway", 1000),
    503: ("Service temporarily unavailable", 1033),
}


class Dice:
    """Independent, optionally seeded random streams, one per fault name."""

    def __init__(self, seed: int | None) -> None:
        self._lock = threading.Lock()
        self.reseed(seed)

    def reseed(self, seed: int | None) -> None:
        with self._lock:
            self.seed = seed
            self._streams: dict[str, random.Random] = {}

    def _stream(self, name: str) -> random.Random:
        stream = self._streams.get(name)
        if stream is None:
            if self.seed is None:
                stream = random.Random()
            else:
                digest = hashlib.sha256(f"{self.seed}:{name}".encode()).digest()
                stream = random.Random(int.from_bytes(digest[:8], "big"))
            self._streams[name] = stream
        return stream

    def roll(self, name: str, rate: float) -> bool:
        """True with probability ``rate`` (no draw at all when rate is 0 or 1)."""
        if rate <= 0:
            return False
        if rate >= 1:
            return True
        with self._lock:
            return self._stream(name).random() < rate

    def choice(self, name: str, options: list[Any]) -> Any:
        with self._lock:
            return self._stream(name).choice(options)

    def token(self, name: str) -> str:
        with self._lock:
            return f"{self._stream(name).getrandbits(64):016x}"


def apimart_error(code: int, message: str, type_: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "type": type_}}


#: APIMart's idempotency answers (api-contract-v2.md 2.3): HTTP status and a human message.
IDEMPOTENCY_ERRORS: dict[str, tuple[int, str]] = {
    "idempotency_in_progress": (409, "A request with this Idempotency-Key is still in "
                                     "progress; retry after the Retry-After delay"),
    "idempotency_key_reused": (409, "This Idempotency-Key was already used with a different "
                                    "request body"),
    "idempotency_result_indeterminate": (409, "The result of the earlier request with this "
                                              "Idempotency-Key is indeterminate"),
    "idempotency_unavailable": (503, "The idempotency service is unavailable; the request "
                                     "was not executed"),
}


def apimart_word_error(word: str, message: str, status: int, type_: str,
                       style: str) -> dict[str, Any]:
    """An APIMart error carrying a word (``idempotency_*``, ``build_request_failed``),
    in ``error.code`` (style "code") or in ``error.message`` (style "message")."""
    if style == "message":
        return apimart_error(status, f"{word}: {message}", type_)  # type: ignore[arg-type]
    return {"error": {"code": word, "message": message, "type": type_}}


def minimax_base(code: int, message: str | None = None) -> dict[str, Any]:
    return {"status_code": code, "status_msg": message or MINIMAX_MESSAGES.get(code, "error")}


def minimax_error(code: int, message: str | None = None, **extra: Any) -> dict[str, Any]:
    return {**extra, "base_resp": minimax_base(code, message)}


def failure_type(code: int) -> str:
    """APIMart's ``error.type`` for a failed task."""
    if code in (1026, 1027):
        return "content_policy_violation"
    if code in (1000, 1001, 1024, 1033):
        return "server_error"
    return "generation_failed"


def server_error_body(provider: Provider, status: int) -> dict[str, Any]:
    message, code = SERVER_ERRORS[status]
    if provider is Provider.APIMART:
        return apimart_error(status, message, "server_error")
    return minimax_error(code, message.lower())
