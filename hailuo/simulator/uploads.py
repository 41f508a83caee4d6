"""APIMart's image store: ``POST /v1/uploads/images`` (multipart field ``file``), the
public URLs it hands out (valid 72 h), and the model-schema document.

Why parse multipart here with the standard library: the simulator should not need
``python-multipart`` for one form field. The rules are APIMart's (api-contract-v2.md
2.2): JPEG, PNG, WebP or GIF judged by content, at most 20 MB, no JSON envelope in the
answer, 400 for a missing field or an unsupported format, 413 for a file too large.
"""

from __future__ import annotations

import re
import secrets
import time
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import urlsplit

from hailuo.capabilities import Provider, lookup, models_for, modes_for
from hailuo.images import MAX_IMAGE_BYTES
from hailuo.simulator.state import Upload

UPLOAD_ROUTE = "/f/image"
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
_FORMATS = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp", "gif": "image/gif"}


class UploadRefused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def sniff(data: bytes) -> str | None:
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    return None


def file_field(content_type: str, body: bytes) -> tuple[bytes, str]:
    """(bytes, client filename) of the multipart field ``file``, or ``UploadRefused``."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise UploadRefused(400, "file is required (multipart/form-data field \"file\")")
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode("latin-1") + body)
    if not message.is_multipart():
        raise UploadRefused(400, "malformed multipart body")
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "file":
            data = part.get_payload(decode=True) or b""
            return data, part.get_filename() or "image"
    raise UploadRefused(400, "file is required (multipart/form-data field \"file\")")


def store(data: bytes, filename: str, *, who: str, ttl: float) -> Upload:
    """Check an uploaded image like APIMart does and keep it."""
    if len(data) > MAX_IMAGE_BYTES:
        raise UploadRefused(413, f"file too large: {len(data)} bytes; the maximum is 20 MB")
    fmt = sniff(data)
    if fmt is None:
        raise UploadRefused(400, "unsupported image format; allowed: JPEG, PNG, WebP, GIF")
    now = time.time()
    safe = _SAFE_NAME.sub("_", filename.rsplit("/", 1)[-1])[:64] or "image"
    name = f"{int(now * 1000)}-{secrets.token_hex(4)}-{safe}"
    return Upload(name=name, data=data, content_type=_FORMATS[fmt], filename=safe,
                  created_at=now, expires_at=now + ttl, who=who)


def answer(upload: Upload, base_url: str) -> dict[str, Any]:
    """APIMart's upload answer: no code/data envelope."""
    return {"url": f"{base_url.rstrip('/')}{UPLOAD_ROUTE}/{upload.name}",
            "filename": upload.filename, "content_type": upload.content_type,
            "bytes": len(upload.data), "created_at": int(upload.created_at)}


def name_of(url: str) -> str | None:
    """The stored name when ``url`` points into the upload route, else None."""
    path = urlsplit(url).path
    prefix = f"{UPLOAD_ROUTE}/"
    return path[len(prefix):] if path.startswith(prefix) else None


def model_schema(model: str, operation: str, idempotency: str, shape: str) -> dict[str, Any]:
    """``GET /v1/model-schema`` (APIMart's own client reads model, operation,
    input_schema; ``idempotency`` says whether Idempotency-Key is honoured)."""
    modes = modes_for(Provider.APIMART, model)
    resolutions = sorted({r for m in modes for r in (lookup(Provider.APIMART, model, m)
                                                     or _NONE).options})
    body: dict[str, Any] = {
        "model": model, "operation": operation, "endpoint": "/v1/videos/generations",
        "schema_version": "2026-07-27",
        "input_schema": {
            "type": "object",
            "required": ["prompt"],
            "properties": {
                "prompt": {"type": "string", "maxLength": 2000},
                "duration": {"type": "integer"},
                "resolution": {"type": "string", "enum": resolutions},
                "first_frame_image": {"type": "string", "format": "uri"},
                "last_frame_image": {"type": "string", "format": "uri"},
                "prompt_optimizer": {"type": "boolean"},
                "fast_pretreatment": {"type": "boolean"},
                "watermark": {"type": "boolean"},
                "webhook": {"type": "string", "format": "uri"},
            },
        },
        "response_contract": {"version": "2026-07-27", "kind": "task",
                              "poll": "/v1/tasks/{task_id}"},
    }
    if idempotency != "absent":
        supported = idempotency == "true"
        body["idempotency"] = supported if shape == "bool" else {
            "supported": supported, "header": "Idempotency-Key",
            "key_pattern": "^[!-~]{1,191}$"}
    return body


class _NoOptions:
    options: dict[str, tuple[int, ...]] = {}


_NONE = _NoOptions()


def known_model(model: str) -> bool:
    return model in models_for(Provider.APIMART)
