"""H3 input media (frames and references), checked locally against MiniMax v2's limits.

Why separate from ``hailuo.images``: v2 takes other formats (HEIC/HEIF too), other
limits (30 MB, each side 256..5760 px, w/h 0.4..2.5) and two more kinds of input,
reference videos (MP4/MOV, H.264/H.265, 2..15 s, 23.976..60 fps) and reference audios
(WAV/MP3, 2..15 s). Every limit comes from ``hailuo.capabilities.H3_MEDIA_LIMITS``
(api-contract-v2.md 1.3); every failure is an ``InvalidRequestError`` naming the field
(``InvalidImageError`` for images) and the item's position in a list.

Accepted values: an http(s) URL or an ``mm_file://<file_id>`` (passed unfetched: the
provider fetches them, so their limits cannot be checked here), a ``data:`` URI, a local
path or raw bytes. Local media are read, sniffed by their bytes (not their name),
measured with PyAV / Pillow and hashed; the request's identity uses that hash.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import re
import struct
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from hailuo.capabilities import H3_MEDIA_LIMITS, MediaLimit
from hailuo.errors import InvalidImageError, InvalidRequestError

MediaInput = str | bytes | bytearray | memoryview | os.PathLike[str]

#: field -> kind of medium
FIELD_KINDS: dict[str, str] = {
    "first_frame_image": "image",
    "last_frame_image": "image",
    "reference_images": "image",
    "reference_videos": "video",
    "reference_audios": "audio",
}
MM_FILE_PREFIX = "mm_file://"
_DATA_URI = re.compile(r"^data:([^,]*?),(.*)$", re.DOTALL)
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
_HEIF_BRANDS = {b"heic": "heic", b"heix": "heic", b"hevc": "heic", b"heim": "heic",
                b"heis": "heic", b"mif1": "heif", b"msf1": "heif", b"heif": "heif"}
#: MIME type of each format in a data URI (``data:<mime>;base64,...``).
MIME: dict[str, str] = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp",
                        "heic": "image/heic", "heif": "image/heif", "mp4": "video/mp4",
                        "mov": "video/quicktime", "wav": "audio/wav", "mp3": "audio/mp3"}
#: Formats never sent as data URIs (the docs give ``data:video/mp4`` only): uploaded.
UPLOAD_ONLY = frozenset({"mov"})


@dataclass(frozen=True, repr=False)
class CheckedMedia:
    """One input after every local check: a URL as given, or local bytes measured."""

    field: str  # the request field, e.g. "reference_videos"
    label: str  # what messages call it, e.g. "reference_videos[2]"
    kind: str  # image / video / audio
    url: str | None = None  # http(s) or mm_file://
    data: bytes | None = None
    format: str | None = None
    sha256: str | None = None
    width: int | None = None
    height: int | None = None
    seconds: float | None = None

    @property
    def local(self) -> bool:
        return self.data is not None

    @property
    def mime(self) -> str:
        return MIME.get(self.format or "", "application/octet-stream")

    def data_uri(self) -> str:
        if self.data is None:
            raise ValueError(f"{self.label}: a URL has no data URI")
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"

    @property
    def data_uri_size(self) -> int:
        """Bytes the data URI takes in a JSON body."""
        if self.data is None:
            return len(self.url or "")
        return len("data:;base64,") + len(self.mime) + 4 * _ceil_div(len(self.data), 3)

    @property
    def filename(self) -> str:
        ext = {"jpeg": "jpg"}.get(self.format or "", self.format or "bin")
        return f"{self.field}.{ext}"

    def __repr__(self) -> str:
        what = self.url if self.url else f"{self.format}, {len(self.data or b'')} bytes"
        return f"CheckedMedia({self.label}: {what})"


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _error(kind: str, message: str, field: str) -> InvalidRequestError:
    cls = InvalidImageError if kind == "image" else InvalidRequestError
    return cls(message, field=field)


def is_remote(value: MediaInput) -> bool:
    return isinstance(value, str) and value.strip()[:10].lower().startswith(
        ("http://", "https://", MM_FILE_PREFIX))


def _raw(value: MediaInput, kind: str, field: str, label: str, limit: int) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, os.PathLike):
        return _read(Path(value).expanduser(), kind, field, label, limit)
    if not isinstance(value, str):
        raise _error(kind, f"{label}: unsupported value of type {type(value).__name__}; give "
                     "an http(s) URL, mm_file://<id>, a data: URI, a local path or bytes", field)
    text = value.strip()
    if not text:
        raise _error(kind, f"{label}: empty value", field)
    if text[:5].lower() == "data:":
        match = _DATA_URI.match(text)
        if not match or ";base64" not in match.group(1).lower():
            raise _error(kind, f"{label}: malformed data URI; expected "
                         f"data:<{kind} type>;base64,<data>", field)
        payload = "".join(match.group(2).split())
        if len(payload) * 3 // 4 > limit:
            raise _error(kind, f"{label}: {len(payload) * 3 / 4 / 2**20:.1f} MB; "
                         f"{kind}s may be at most {limit // 2**20} MB", field)
        try:
            return base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise _error(kind, f"{label}: data URI holds invalid base64", field) from None
    scheme = _SCHEME.match(text)
    if scheme:
        raise _error(kind, f"{label}: {scheme.group(1)}:// is not accepted; give an http(s) "
                     "URL, mm_file://<id>, a data: URI or a local path", field)
    return _read(Path(text).expanduser(), kind, field, label, limit)


def _read(path: Path, kind: str, field: str, label: str, limit: int) -> bytes:
    try:
        size = path.stat().st_size
    except OSError:
        raise _error(kind, f"{label}: file not found or unreadable: {str(path)!r}",
                     field) from None
    if not path.is_file():
        raise _error(kind, f"{label}: {str(path)!r} is not a regular file", field)
    if size > limit:
        raise _error(kind, f"{label}: {size / 2**20:.1f} MB; {kind}s may be at most "
                     f"{limit // 2**20} MB", field)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise _error(kind, f"{label}: cannot read {str(path)!r}: {exc}", field) from None


# -- sniffing ------------------------------------------------------------------------------
def sniff(data: bytes) -> str | None:
    """The real format from the bytes: jpeg png webp heic heif mp4 mov wav mp3 (gif), or
    None."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:4] == b"\x89PNG":
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "wav"
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in _HEIF_BRANDS:
            return _HEIF_BRANDS[brand]
        return "mov" if brand == b"qt  " else "mp4"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"  # named in refusals; not accepted
    if data[:3] == b"ID3" or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0):
        return "mp3"
    return None


def _heif_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the first ``ispe`` box of a HEIF/HEIC (no decoder needed)."""
    at = data.find(b"ispe")
    if at < 4 or at + 16 > len(data):
        return None
    width, height = struct.unpack(">II", data[at + 8:at + 16])
    return (width, height) if width and height else None


# -- measuring -----------------------------------------------------------------------------
def _image_size(data: bytes, fmt: str, label: str, field: str) -> tuple[int, int]:
    if fmt in ("heic", "heif"):
        size = _heif_size(data)
        if size is None:
            raise _error("image", f"{label}: {fmt.upper()} without a readable size", field)
        return size
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[fmt.upper()]) as img:
                size = img.size
            with Image.open(io.BytesIO(data)) as img:
                img.verify()
    except Exception as exc:  # noqa: BLE001 - PIL raises a zoo of types
        raise _error("image", f"{label}: {fmt.upper()} could not be read ({exc}); give a "
                     "complete image", field) from None
    return size


def _av_measure(data: bytes, kind: str, label: str, field: str
                ) -> tuple[float, int | None, int | None, float | None, str | None, str | None]:
    """(seconds, width, height, fps, video codec, audio codec) of a video or audio file."""
    import av

    try:
        with av.open(io.BytesIO(data), "r") as container:
            video = next(iter(container.streams.video), None)
            audio = next(iter(container.streams.audio), None)
            seconds = None
            if container.duration:
                seconds = container.duration / 1_000_000
            for stream in (video, audio):
                if seconds is None and stream is not None and stream.duration is not None \
                        and stream.time_base is not None:
                    seconds = float(stream.duration * stream.time_base)
            width = height = None
            fps = vcodec = acodec = None
            if video is not None:
                width, height = video.codec_context.width, video.codec_context.height
                rate = video.average_rate or video.guessed_rate
                fps = float(rate) if rate else None
                vcodec = video.codec_context.name
            if audio is not None:
                acodec = audio.codec_context.name
    except Exception as exc:  # noqa: BLE001 - FFmpeg errors vary
        raise _error(kind, f"{label}: not a readable {kind} file ({type(exc).__name__}: "
                     f"{exc})", field) from None
    if seconds is None or seconds <= 0:
        raise _error(kind, f"{label}: {kind} duration could not be read", field)
    return seconds, width, height, fps, vcodec, acodec


def _check_geometry(limit: MediaLimit, width: int, height: int, label: str,
                    field: str) -> None:
    if limit.min_side is not None and min(width, height) < limit.min_side:
        raise _error(limit.kind, f"{label}: {width}x{height}; each side must be at least "
                     f"{limit.min_side} px", field)
    if limit.max_side is not None and max(width, height) > limit.max_side:
        raise _error(limit.kind, f"{label}: {width}x{height}; each side must be at most "
                     f"{limit.max_side} px", field)
    aspect = width / height
    if ((limit.min_aspect is not None and aspect < limit.min_aspect)
            or (limit.max_aspect is not None and aspect > limit.max_aspect)):
        raise _error(limit.kind, f"{label}: {width}x{height}, width/height {aspect:.2f}; it "
                     f"must be within {limit.min_aspect}..{limit.max_aspect}", field)


def check_media(value: MediaInput, *, field: str, index: int | None = None) -> CheckedMedia:
    """Every local check on one input of ``field``; URLs and ``mm_file://`` pass unfetched."""
    kind = FIELD_KINDS[field]
    label = field if index is None else f"{field}[{index}]"
    limit = H3_MEDIA_LIMITS[kind]
    if is_remote(value):
        return CheckedMedia(field=field, label=label, kind=kind, url=str(value).strip())
    data = _raw(value, kind, field, label, limit.max_bytes)
    if not data:
        raise _error(kind, f"{label}: empty (0 bytes)", field)
    if len(data) > limit.max_bytes:
        raise _error(kind, f"{label}: {len(data) / 2**20:.1f} MB; {kind}s may be at most "
                     f"{limit.max_bytes // 2**20} MB", field)
    fmt = sniff(data)
    if fmt not in limit.formats:
        shown = fmt.upper() if fmt else "an unrecognised format"
        raise _error(kind, f"{label}: the {kind} is {shown}, judged by its content; allowed: "
                     f"{', '.join(f.upper() for f in limit.formats)}", field)
    sha = hashlib.sha256(data).hexdigest()
    if kind == "image":
        width, height = _image_size(data, fmt, label, field)
        _check_geometry(limit, width, height, label, field)
        return CheckedMedia(field=field, label=label, kind=kind, data=data, format=fmt,
                            sha256=sha, width=width, height=height)
    seconds, width, height, fps, vcodec, acodec = _av_measure(data, kind, label, field)
    if limit.min_seconds is not None and seconds < limit.min_seconds - 0.05:
        raise _error(kind, f"{label}: {seconds:.2f} s; each {kind} must be at least "
                     f"{limit.min_seconds:g} s", field)
    if limit.max_seconds is not None and seconds > limit.max_seconds + 0.05:
        raise _error(kind, f"{label}: {seconds:.2f} s; each {kind} may be at most "
                     f"{limit.max_seconds:g} s", field)
    if kind == "video":
        if width is None or height is None or vcodec is None:
            raise _error(kind, f"{label}: has no video stream", field)
        if vcodec not in limit.codecs:
            raise _error(kind, f"{label}: video codec {vcodec}; allowed: H.264, H.265", field)
        if acodec is not None and acodec not in limit.audio_codecs:
            raise _error(kind, f"{label}: audio codec {acodec}; allowed: AAC, MP3", field)
        if fps is not None and not (limit.min_fps - 0.01 <= fps <= limit.max_fps + 0.01):
            raise _error(kind, f"{label}: {fps:.3f} fps; allowed: {limit.min_fps}.."
                         f"{limit.max_fps:g} fps", field)
        _check_geometry(limit, width, height, label, field)
    elif acodec is None:
        raise _error(kind, f"{label}: has no audio stream", field)
    return CheckedMedia(field=field, label=label, kind=kind, data=data, format=fmt,
                        sha256=sha, width=width, height=height, seconds=seconds)


def check_total_seconds(items: Iterable[CheckedMedia], field: str) -> float:
    """The summed duration of the local items of ``field``, within the kind's total."""
    items = list(items)
    kind = FIELD_KINDS[field]
    limit = H3_MEDIA_LIMITS[kind]
    total = sum(m.seconds or 0.0 for m in items)
    if limit.max_total_seconds is not None and total > limit.max_total_seconds + 0.05:
        raise _error(kind, f"{field}: {total:.2f} s in total; {kind} references may last at "
                     f"most {limit.max_total_seconds:g} s together", field)
    return total


def media_fingerprint(value: MediaInput, *, field: str) -> str:
    """Identity of one input: ``url:<url>`` for URLs and ``mm_file://`` ids, else
    ``sha256:<hex>`` of the bytes (a path and a data URI of one file are the same)."""
    if is_remote(value):
        return f"url:{str(value).strip()}"
    kind = FIELD_KINDS.get(field, "image")
    limit = max(m.max_bytes for m in H3_MEDIA_LIMITS.values())
    return f"sha256:{hashlib.sha256(_raw(value, kind, field, field, limit)).hexdigest()}"
