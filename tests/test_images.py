"""Local image checks: format by bytes, size, decodability, short edge, aspect ratio."""

from __future__ import annotations

import base64
import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hailuo.errors import InvalidImageError, InvalidRequestError
from hailuo.images import (
    MAX_IMAGE_BYTES,
    image_bytes,
    image_fingerprint,
    image_size,
    prepare_image,
    sniff_format,
)


def encode(width: int = 640, height: int = 360, fmt: str = "PNG", **save: object) -> bytes:
    """A small noisy image (noise so that truncation really cuts pixel data)."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt, **save)
    return buf.getvalue()


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def decoded(data_url: str) -> bytes:
    return base64.b64decode(data_url.split(",", 1)[1])


def rejects(value: object, field: str = "first_frame_image") -> InvalidImageError:
    with pytest.raises(InvalidImageError) as exc:
        prepare_image(value, field=field)  # type: ignore[arg-type]
    assert exc.value.field == field
    assert isinstance(exc.value, InvalidRequestError)
    return exc.value


# --------------------------------------------------------------------------- formats


@pytest.mark.parametrize(("fmt", "name"), [("PNG", "png"), ("JPEG", "jpeg"), ("WEBP", "webp")])
def test_allowed_formats_become_data_urls(tmp_path: Path, fmt: str, name: str) -> None:
    data = encode(fmt=fmt)
    assert sniff_format(data) == name
    url = prepare_image(write(tmp_path, f"a.{name}", data), field="first_frame_image")
    assert url.startswith(f"data:image/{name};base64,")
    assert decoded(url) == data


def test_str_path_and_bytes_both_work(tmp_path: Path) -> None:
    data = encode()
    path = write(tmp_path, "a.png", data)
    assert prepare_image(str(path), field="f") == prepare_image(data, field="f")


def test_lying_extension_judged_by_bytes(tmp_path: Path) -> None:
    url = prepare_image(write(tmp_path, "really_png.jpg", encode(fmt="PNG")), field="f")
    assert url.startswith("data:image/png;base64,")


def test_gif_saved_as_png_rejected(tmp_path: Path) -> None:
    err = rejects(write(tmp_path, "fake.png", encode(fmt="GIF")), field="last_frame_image")
    assert "GIF" in err.message
    assert "JPEG, PNG or WebP" in err.message


@pytest.mark.parametrize(
    ("data", "what"),
    [(encode(fmt="BMP"), "BMP"), (b"hello, I am a text file\n" * 10, "text")],
)
def test_other_formats_rejected(tmp_path: Path, data: bytes, what: str) -> None:
    assert sniff_format(data) is None
    err = rejects(write(tmp_path, "x.jpg", data))
    assert what in err.message


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_image_rejected(tmp_path: Path, fmt: str) -> None:
    data = encode(fmt=fmt)
    err = rejects(write(tmp_path, "cut.img", data[: len(data) // 2]))
    assert "could not be decoded" in err.message


def test_corrupt_png_body_rejected() -> None:
    data = bytearray(encode())
    data[200:260] = b"\x00" * 60  # inside IDAT: CRC no longer matches
    rejects(bytes(data))


def test_zero_byte_file_rejected(tmp_path: Path) -> None:
    err = rejects(write(tmp_path, "empty.png", b""))
    assert "0 bytes" in err.message
    rejects(b"")


# --------------------------------------------------------------------------- size


def test_huge_file_rejected_without_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    with path.open("wb") as fh:
        fh.write(encode(fmt="PNG"))
        fh.truncate(MAX_IMAGE_BYTES + 1024)  # sparse: cheap on disk
    err = rejects(path, field="subject_reference")
    assert "under 20 MB" in err.message


def test_huge_bytes_rejected() -> None:
    data = encode() + bytes(MAX_IMAGE_BYTES)
    assert "under 20 MB" in rejects(data).message


# --------------------------------------------------------------------------- geometry


@pytest.mark.parametrize(("w", "h"), [(300, 400), (600, 300), (120, 120)])
def test_short_edge_300_or_less_rejected(w: int, h: int) -> None:
    err = rejects(encode(w, h))
    assert "short edge" in err.message
    assert "over 300 px" in err.message


@pytest.mark.parametrize(("w", "h"), [(301, 400), (400, 301)])
def test_short_edge_301_accepted(w: int, h: int) -> None:
    assert prepare_image(encode(w, h), field="f").startswith("data:image/png")


@pytest.mark.parametrize(("w", "h"), [(1000, 400), (400, 1000)])
def test_aspect_2_5_accepted(w: int, h: int) -> None:
    assert prepare_image(encode(w, h), field="f").startswith("data:image/png")


@pytest.mark.parametrize(("w", "h"), [(1040, 400), (400, 1040)])
def test_aspect_2_6_rejected(w: int, h: int) -> None:
    err = rejects(encode(w, h))
    assert "2:5 and 5:2" in err.message


# --------------------------------------------------------------------------- inputs


@pytest.mark.parametrize("url", ["https://example.com/a.jpg", "HTTP://example.com/x?sig=1"])
def test_http_urls_pass_through(url: str) -> None:
    assert prepare_image(url, field="f") == url
    assert image_bytes(url) is None
    assert image_fingerprint(url, field="f") == f"url:{url}"


@pytest.mark.parametrize("url", ["s3://bucket/key.png", "ftp://host/a.png", "file:///tmp/a.png"])
def test_other_schemes_rejected(url: str) -> None:
    err = rejects(url)
    assert "http(s)" in err.message and "data" in err.message


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.png"
    err = rejects(str(missing))
    assert str(missing) in err.message


def test_directory_rejected(tmp_path: Path) -> None:
    rejects(tmp_path)


def test_data_url_is_checked_and_canonicalised() -> None:
    data = encode(fmt="JPEG")
    lying = "data:image/png;base64," + base64.b64encode(data).decode()
    url = prepare_image(lying, field="f")
    assert url.startswith("data:image/jpeg;base64,")
    assert decoded(url) == data


def test_data_url_errors() -> None:
    small = base64.b64encode(encode(100, 100)).decode()
    assert "short edge" in rejects(f"data:image/png;base64,{small}").message
    assert "base64" in rejects("data:image/png;base64,@@not base64@@").message
    assert "base64" in rejects("data:image/png,rawbytes").message


def test_image_bytes_for_each_kind(tmp_path: Path) -> None:
    data = encode()
    path = write(tmp_path, "a.png", data)
    url = "data:image/png;base64," + base64.b64encode(data).decode()
    assert image_bytes(path) == image_bytes(str(path)) == image_bytes(url) == data
    assert image_bytes(bytearray(data)) == data


def test_fingerprint_same_for_path_data_url_and_bytes(tmp_path: Path) -> None:
    data = encode()
    path = write(tmp_path, "a.png", data)
    url = prepare_image(path, field="f")
    expected = "sha256:" + hashlib.sha256(data).hexdigest()
    assert image_fingerprint(path, field="f") == expected
    assert image_fingerprint(url, field="f") == expected
    assert image_fingerprint(data, field="f") == expected
    assert image_fingerprint(encode(fmt="JPEG"), field="f") != expected


def test_image_size(tmp_path: Path) -> None:
    assert image_size(write(tmp_path, "a.png", encode(640, 360))) == (640, 360)
    assert image_size(encode(360, 640, fmt="WEBP")) == (360, 640)


def test_image_size_follows_exif_rotation() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    assert image_size(encode(640, 360, fmt="JPEG", exif=exif)) == (360, 640)


def test_image_size_of_url_is_an_error() -> None:
    with pytest.raises(InvalidImageError):
        image_size("https://example.com/a.png", field="first_frame_image")
