"""Probing and reading videos: broken downloads are refused, frames come out exact."""

from __future__ import annotations

import hashlib
import wave
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from hailuo import media
from hailuo.errors import InvalidVideoError
from hailuo.simulator.render import RenderSpec, render_video


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """A 3 s 512p simulator render (912x512, 72 frames, keyframe each second)."""
    out = tmp_path_factory.mktemp("media") / "clip.mp4"
    return render_video(RenderSpec(912, 512, 3, prompt="media tests",
                                   camera=(("Pan left",), ("Zoom in",))), out)


@pytest.fixture(scope="module")
def bframes_video(tmp_path_factory) -> Path:
    """Encoded with B-frames (veryfast), so decode order differs from display order."""
    out = tmp_path_factory.mktemp("media") / "bframes.mp4"
    return render_video(RenderSpec(640, 360, 2, prompt="b frames", camera=(("Pan right",),)),
                        out, preset="veryfast")


def all_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def test_probe_describes_a_good_file(video):
    info = media.probe(video)
    assert (info.width, info.height) == (912, 512)
    assert info.frames == 72
    assert info.fps == pytest.approx(24.0)
    assert info.duration == pytest.approx(3.0)
    assert info.codec == "h264"
    assert info.pix_fmt == "yuv420p"
    assert info.has_audio is False
    assert info.size == video.stat().st_size
    assert info.bit_rate and info.bit_rate > 0


def test_probe_accepts_bframes(bframes_video):
    assert media.probe(bframes_video).frames == 48


@pytest.mark.parametrize("cut", [0.5, 0.97])
def test_probe_refuses_truncated_file(video, tmp_path, cut):
    data = video.read_bytes()
    broken = tmp_path / "cut.mp4"
    broken.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(InvalidVideoError, match="cut.mp4"):
        media.probe(broken)


def test_probe_refuses_truncated_file_without_index(tmp_path):
    """moov at the end (no faststart) cut in half: there is no index at all."""
    path = tmp_path / "plain.mp4"
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        for i in range(24):
            arr = np.random.default_rng(i).integers(0, 255, (120, 160, 3), dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")))
        container.mux(stream.encode(None))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidVideoError, match="plain.mp4"):
        media.probe(path)


def test_probe_refuses_empty_text_missing_and_audio_only(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(InvalidVideoError, match=r"empty\.mp4.*0 bytes"):
        media.probe(empty)
    text = tmp_path / "notes.mp4"
    text.write_text("<html>Access denied</html>\n" * 50)
    with pytest.raises(InvalidVideoError, match="notes.mp4"):
        media.probe(text)
    with pytest.raises(InvalidVideoError, match="missing.mp4"):
        media.probe(tmp_path / "missing.mp4")
    sound = tmp_path / "sound.wav"
    with wave.open(str(sound), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(b"\x00\x00" * 8000)
    with pytest.raises(InvalidVideoError, match="no video stream"):
        media.probe(sound)


@pytest.mark.parametrize("fixture", ["video", "bframes_video"])
def test_last_and_first_frame_are_exact(request, fixture):
    path = request.getfixturevalue(fixture)
    frames = all_frames(path)
    assert np.array_equal(np.asarray(media.last_frame(path)), frames[-1])
    assert np.array_equal(np.asarray(media.first_frame(path)), frames[0])
    assert not np.array_equal(frames[-1], frames[0])


def test_last_frame_refuses_broken_file(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(InvalidVideoError, match="bad.mp4"):
        media.last_frame(bad)


def test_extract_last_frame_is_lossless(video, tmp_path):
    out = media.extract_last_frame(video, tmp_path / "sub" / "last.png")
    assert out == tmp_path / "sub" / "last.png"
    assert np.array_equal(np.asarray(Image.open(out).convert("RGB")), all_frames(video)[-1])
    assert not list(out.parent.glob(".*.part"))


def test_save_png_accepts_arrays(tmp_path):
    arr = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    path = media.save_png(arr, tmp_path / "a.png")
    assert np.array_equal(np.asarray(Image.open(path)), arr)


def test_thumbnail_size_format_and_time(video, tmp_path):
    jpg = media.thumbnail(video, tmp_path / "t.jpg")
    with Image.open(jpg) as img:
        assert img.format == "JPEG" and img.size == (480, 269)
    png = media.thumbnail(video, tmp_path / "t.png", width=200, at_seconds=0)
    with Image.open(png) as img:
        assert img.format == "PNG" and img.size == (200, 112)
        first = Image.fromarray(all_frames(video)[0]).resize((200, 112), Image.Resampling.LANCZOS)
        assert media.psnr(img, first) > 40
    with pytest.raises(ValueError):
        media.thumbnail(video, tmp_path / "t.gif")


def test_sha256_file_matches_hashlib(video):
    expected = hashlib.sha256(video.read_bytes()).hexdigest()
    assert media.sha256_file(video) == expected
    assert media.sha256_file(video, chunk=1000) == expected


def test_psnr():
    a = np.full((10, 10, 3), 100, np.uint8)
    assert media.psnr(a, a.copy()) == float("inf")
    b = a.copy()
    b[0, 0, 0] = 110  # MSE = 100 / 300
    assert media.psnr(a, b) == pytest.approx(10 * np.log10(255**2 * 3), rel=1e-9)
    assert media.psnr(Image.fromarray(a), Image.fromarray(b)) == pytest.approx(media.psnr(a, b))
    with pytest.raises(ValueError):
        media.psnr(a, np.zeros((5, 5, 3), np.uint8))
