"""Image inputs (first_frame_image, last_frame_image, subject_reference), checked locally.

Why: the provider rejects a bad image only after the job is queued (sometimes after it
is billed), with a terse message. Every rule it documents (JPEG/PNG/WebP, under 20 MB,
short edge over 300 px, aspect ratio between 2:5 and 5:2) is checked here first, and the
error names the field, what was wrong and what is allowed.

http(s) URLs pass through untouched: we do not fetch them (no network in the core), the
provider does. ``s3://`` and other schemes are refused: the Prefect layer downloads them
and hands us bytes.

Local images (paths, bytes, data URLs) become a :class:`CheckedImage` (bytes, real format,
sha256). MiniMax is sent a data URL of it; APIMart no longer accepts base64 in generation
calls, so ``HailuoClient`` uploads the bytes and sends the returned URL. Either way the
request's identity (``hailuo.fingerprint``) is the content hash, not the wire value.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from hailuo.errors import InvalidImageError

MAX_IMAGE_BYTES = 20 * 1024 * 1024
MIN_SHORT_EDGE = 300  # the short edge must be strictly greater than this
MAX_ASPECT = 2.5  # long edge / short edge, i.e. between 2:5 and 5:2
#: Pixels an image may have. Checking means decoding; 40 MP is about 120-160 MB of pixels
#: (an 8K frame is 33 MP). A 20 MB file can claim far more (a "pixel bomb"): its header
#: is read first and it is refused before anything is decoded.
MAX_IMAGE_PIXELS = 40_000_000
ALLOWED_FORMATS = ("jpeg", "png", "webp")

_ALLOWED_TEXT = "JPEG, PNG or WebP"
_ACCEPTED_INPUTS = "an http(s) URL, a data:image/...;base64 URL, a local file path or raw bytes"
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
_DATA_URL = re.compile(r"^data:([^,]*?),(.*)$", re.DOTALL)
_EXIF_ORIENTATION = 0x0112

ImageInput = str | bytes | bytearray | memoryview | os.PathLike[str]


def sniff_format(data: bytes) -> str | None:
    """The real format from the first bytes ("jpeg", "png", "webp"), or None.

    Why bytes and not the extension: a PNG saved as ``.jpg`` is common and fine, a GIF
    renamed to ``.png`` is not, and only the bytes tell them apart.
    """
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:4] == b"\x89PNG":
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def _describe_unknown(data: bytes) -> str:
    """A name for a rejected format, so the message says what the file actually is."""
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[:2] == b"BM":
        return "BMP"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if data[4:8] == b"ftyp":
        return "HEIC/AVIF or video"
    if data[:4] == b"%PDF":
        return "PDF"
    try:
        data[:512].decode("utf-8")
    except UnicodeDecodeError:
        return "an unrecognised binary format"
    return "text"


def _is_http(value: str) -> bool:
    return value[:8].lower().startswith(("http://", "https://"))


def _read_path(path: Path, field: str) -> bytes:
    """Read a local file after checking existence and size via stat (never read 2 GB)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise InvalidImageError(f"{field}: image file not found: {str(path)!r}",
                                field=field) from None
    except OSError as exc:
        raise InvalidImageError(f"{field}: cannot access image file {str(path)!r}: {exc}",
                                field=field) from None
    if not path.is_file():
        raise InvalidImageError(f"{field}: {str(path)!r} is not a regular file", field=field)
    _check_size(st.st_size, field, str(path))
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidImageError(f"{field}: cannot read image file {str(path)!r}: {exc}",
                                field=field) from None


def _decode_data_url(value: str, field: str) -> bytes:
    match = _DATA_URL.match(value.strip())
    if not match:
        raise InvalidImageError(f"{field}: malformed data URL; expected "
                                "data:image/<jpeg|png|webp>;base64,<data>", field=field)
    meta, payload = match.groups()
    if ";base64" not in meta.lower():
        raise InvalidImageError(f"{field}: data URL is not base64-encoded; expected "
                                "data:image/<jpeg|png|webp>;base64,<data>", field=field)
    payload = "".join(payload.split())
    if len(payload) * 3 // 4 > MAX_IMAGE_BYTES:  # refuse before decoding a huge string
        _check_size(len(payload) * 3 // 4, field, "data URL")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidImageError(f"{field}: data URL holds invalid base64", field=field) from None


def _raw(value: ImageInput, field: str) -> bytes | None:
    """Bytes for a local path / data URL / bytes; None for an http(s) URL."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise InvalidImageError(f"{field}: empty image value; give {_ACCEPTED_INPUTS}",
                                    field=field)
        if _is_http(text):
            return None
        if text[:5].lower() == "data:":
            return _decode_data_url(text, field)
        scheme = _SCHEME.match(text)
        if scheme:
            raise InvalidImageError(
                f"{field}: {scheme.group(1)}:// URLs are not accepted here; give "
                f"{_ACCEPTED_INPUTS} (S3 inputs are fetched by the Prefect layer first)",
                field=field,
            )
        return _read_path(Path(text).expanduser(), field)
    if isinstance(value, os.PathLike):
        return _read_path(Path(value).expanduser(), field)
    raise InvalidImageError(f"{field}: unsupported image value of type "
                            f"{type(value).__name__}; give {_ACCEPTED_INPUTS}", field=field)


def _check_size(size: int, field: str, source: str) -> None:
    if size == 0:
        raise InvalidImageError(f"{field}: {source} is empty (0 bytes); give a "
                                f"{_ALLOWED_TEXT} image", field=field)
    if size >= MAX_IMAGE_BYTES:
        raise InvalidImageError(
            f"{field}: {source} is {size / 1024 / 1024:.1f} MB; images must be under "
            f"{MAX_IMAGE_BYTES // 1024 // 1024} MB",
            field=field,
        )


def _check(data: bytes, field: str) -> tuple[str, int, int]:
    """Run every provider rule on the bytes; return (format, width, height)."""
    _check_size(len(data), field, "image")
    fmt = sniff_format(data)
    if fmt is None:
        raise InvalidImageError(
            f"{field}: image is {_describe_unknown(data)}, judged by its content; "
            f"allowed formats: {_ALLOWED_TEXT}",
            field=field,
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[fmt.upper()]) as header:
                width, height = header.size  # from the header: nothing decoded yet
        _check_pixels(width, height, field)
        with Image.open(io.BytesIO(data)) as probe:
            probe.verify()  # PNG: chunk CRCs and IEND; cheap structural check
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            _check_geometry(width, height, field)
            img.load()  # a full decode: catches truncated pixel data that open() misses
    except InvalidImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidImageError(
            f"{field}: image claims more pixels than can be checked safely (over "
            f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels); give a smaller image",
            field=field) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidImageError(
            f"{field}: {fmt.upper()} image could not be decoded (truncated or corrupt: "
            f"{exc}); give a complete {_ALLOWED_TEXT} file",
            field=field,
        ) from None
    return fmt, width, height


def _check_pixels(width: int, height: int, field: str) -> None:
    if width * height > MAX_IMAGE_PIXELS:
        raise InvalidImageError(
            f"{field}: image is {width}x{height} ({width * height / 1e6:.0f} megapixels); "
            f"at most {MAX_IMAGE_PIXELS // 1_000_000} megapixels are accepted (checking "
            "one means decoding every pixel)", field=field)


def _check_geometry(width: int, height: int, field: str) -> None:
    short, long = min(width, height), max(width, height)
    if short <= MIN_SHORT_EDGE:
        raise InvalidImageError(
            f"{field}: image is {width}x{height}; its short edge ({short} px) must be over "
            f"{MIN_SHORT_EDGE} px",
            field=field,
        )
    if long * 2 > short * 5:  # long/short > 2.5 without float rounding
        raise InvalidImageError(
            f"{field}: image is {width}x{height}, aspect ratio {long / short:.2f}:1; it must "
            f"be between 2:5 and 5:2 (at most {MAX_ASPECT}:1)",
            field=field,
        )


@dataclass(frozen=True, repr=False)
class CheckedImage:
    """An image input after every local check: an http(s) URL as given, or local bytes
    with their real format and sha256."""

    field: str
    url: str | None = None
    data: bytes | None = None
    format: str | None = None
    sha256: str | None = None

    @property
    def local(self) -> bool:
        return self.data is not None

    def data_url(self) -> str:
        if self.data is None:
            raise ValueError(f"{self.field}: a remote URL has no data URL")
        return f"data:image/{self.format};base64,{base64.b64encode(self.data).decode('ascii')}"

    @property
    def filename(self) -> str:
        """A name for uploads that says nothing about the local path."""
        ext = {"jpeg": "jpg"}.get(self.format or "", self.format or "bin")
        return f"{self.field}.{ext}"

    @property
    def content_type(self) -> str:
        return f"image/{self.format}"

    def __repr__(self) -> str:  # never dump megabytes into a log line
        what = self.url if self.url else f"{self.format}, {len(self.data or b'')} bytes"
        return f"CheckedImage({self.field}: {what})"


def check_image(value: ImageInput, *, field: str) -> CheckedImage:
    """Run every local check on ``value``; http(s) URLs pass through unfetched.

    Every failure is ``InvalidImageError(field=field)``.
    """
    if isinstance(value, str) and _is_http(value.strip()):
        return CheckedImage(field=field, url=value)
    data = _raw(value, field)
    if data is None:  # only http(s) URLs give None; handled above
        raise InvalidImageError(f"{field}: unsupported image value", field=field)
    fmt, _, _ = _check(data, field)
    return CheckedImage(field=field, data=data, format=fmt,
                        sha256=hashlib.sha256(data).hexdigest())


def prepare_image(value: ImageInput, *, field: str) -> str:
    """What to send as ``field`` to a provider that takes data URLs (MiniMax): an http(s)
    URL unchanged, otherwise a checked data URL.

    Local paths, raw bytes and data URLs become ``data:image/<fmt>;base64,...`` with the
    format judged by the bytes. Every failure is ``InvalidImageError(field=field)``.
    """
    checked = check_image(value, field=field)
    return checked.url if checked.url is not None else checked.data_url()


def image_bytes(value: ImageInput, *, field: str | None = None) -> bytes | None:
    """Raw bytes of a local path / data URL / bytes (unchecked); None for http(s) URLs."""
    return _raw(value, field or "image")


def image_fingerprint(value: ImageInput, *, field: str) -> str:
    """A stable identity for cache keys: ``url:<url>`` or ``sha256:<hex of the bytes>``.

    Hashing the decoded bytes means a path and a data URL of the same file give the same
    key, so switching how an image is passed does not pay for the same clip twice.
    """
    data = _raw(value, field)
    if data is None:
        return f"url:{str(value).strip()}"
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def image_size(value: ImageInput, *, field: str | None = None) -> tuple[int, int]:
    """(width, height) of a local/data image as displayed (EXIF rotation applied).

    The simulator uses it to give the output the first frame's aspect ratio, as the
    provider does. http(s) URLs are not fetched and raise ``InvalidImageError``.
    """
    name = field or "image"
    data = _raw(value, name)
    if data is None:
        raise InvalidImageError(f"{name}: the size of a remote URL is unknown without "
                                "fetching it", field=name)
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            orientation = img.getexif().get(_EXIF_ORIENTATION, 1)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidImageError(f"{name}: image could not be read: {exc}", field=name) from None
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)
