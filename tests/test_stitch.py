"""Stitching against simulator-rendered clips: packet copy, re-encode, crossfade, audio,
poster and contact sheet. No Prefect, no HTTP: clips are rendered with the simulator's
renderer and chained exactly as the continuity flow chains them (last frame -> PNG ->
first frame of the next clip)."""

from __future__ import annotations

import hashlib
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from av.video.frame import PictureType
from PIL import Image

from hailuo import media, stitch
from hailuo.simulator import render
from tests.conftest import encode_mp4

FPS = 24
SECONDS = 2  # short clips keep the re-encode tests quick; the joins are what matter
CAMERA = [("Pan left",), ("Zoom in",), ("Tilt up",)]


def _render_chain(folder: Path, resolutions: list[str], prefix: str) -> list[Path]:
    clips: list[Path] = []
    for i, resolution in enumerate(resolutions):
        first = None
        if clips:
            first = media.extract_last_frame(clips[-1], folder / f"{prefix}{i}.last.png")
            first = first.read_bytes()
        width, height = render.output_size(resolution, first)
        spec = render.RenderSpec(width=width, height=height, duration=SECONDS,
                                 prompt=f"stitch test scene {prefix}{i}",
                                 camera=(CAMERA[i % len(CAMERA)],), first_frame=first)
        clips.append(render.render_video(spec, folder / f"{prefix}{i}.mp4"))
    return clips


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("stitch")


@pytest.fixture(scope="module")
def chained(folder) -> list[Path]:
    """Three chained 512p clips, as the continuity flow makes them."""
    return _render_chain(folder, ["512p"] * 3, "c")


def _packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [bytes(p) for p in container.demux(stream) if p.size]


def _frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def _params(path: Path) -> tuple:
    with av.open(str(path)) as container:
        cc = container.streams.video[0].codec_context
        return cc.name, cc.width, cc.height, cc.format.name, bytes(cc.extradata)


def _tone(path: Path, seconds: float, rate: int = 44100, codec: str = "aac") -> Path:
    """A 440 Hz sine wave (AAC in .m4a, or PCM in .wav)."""
    n = int(seconds * rate)
    wave = (0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / rate)).astype(np.float32)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate, layout="stereo")
        fmt = "fltp" if codec == "aac" else "s16p"
        data = np.stack([wave, wave])
        if fmt == "s16p":
            data = (data * 32767).astype(np.int16)
        for start in range(0, n, 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data[:, start:start + 1024]),
                                               format=fmt, layout="stereo")
            frame.sample_rate, frame.pts = rate, start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def _audio(path: Path) -> tuple[np.ndarray, int, float]:
    """Decoded samples (channels, n), sample rate and the stream's duration in seconds."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        duration = float(stream.duration * stream.time_base)
        chunks = [f.to_ndarray() for f in container.decode(stream)]
        return np.concatenate(chunks, axis=1), stream.rate, duration


def test_remux_copies_every_packet_and_drops_only_the_boundary_frames(chained, folder):
    result = stitch.stitch(chained, folder / "remux.mp4")
    assert result.method == "remux" and result.dropped_frames == 2
    # Same codec parameters as the inputs, so nothing was re-encoded ...
    assert {_params(c) for c in chained} == {_params(result.path)}
    # ... and the packets are the inputs' packets, byte for byte, minus the last packet of
    # every clip but the final one (the frame the next clip starts on).
    inputs = [_packets(c) for c in chained]
    expected = inputs[0][:-1] + inputs[1][:-1] + inputs[2]
    out = _packets(result.path)
    assert len(out) == sum(len(p) for p in inputs) - 2 == 3 * SECONDS * FPS - 2
    assert [hashlib.sha256(p).digest() for p in out] == [hashlib.sha256(p).digest()
                                                          for p in expected]
    # It decodes end to end; each join shows clip k+1's first frame right after clip k's
    # second-to-last one (no frozen duplicate).
    frames = _frames(result.path)
    assert len(frames) == result.frames == len(out)
    assert result.duration == pytest.approx(len(out) / FPS, abs=1e-3)
    n = SECONDS * FPS
    second = _frames(chained[1])
    assert np.array_equal(frames[n - 1], second[0])
    assert np.array_equal(frames[n - 2], _frames(chained[0])[n - 2])
    assert np.array_equal(frames[2 * n - 2], _frames(chained[2])[0])
    assert stitch.remux_blocker(chained) is None


def test_without_drop_every_frame_is_kept(chained, folder):
    result = stitch.stitch(chained[:2], folder / "keep.mp4", drop_boundary=False)
    assert result.method == "remux" and result.dropped_frames == 0
    assert len(_frames(result.path)) == 2 * SECONDS * FPS


def test_differing_parameters_are_reencoded_to_the_first_clip(folder, chained):
    bigger = _render_chain(folder, ["512p", "768p"], "r")  # second clip is 1366x768
    reason = stitch.remux_blocker(bigger)
    assert reason is not None and "width" in reason
    with pytest.raises(ValueError, match="width"):
        stitch.concat_copy(bigger, folder / "refused.mp4")
    assert not (folder / "refused.mp4").exists()
    result = stitch.stitch(bigger, folder / "mixed.mp4")
    assert result.method == "reencode" and "width" in result.reason
    info = media.probe(result.path)
    assert (info.width, info.height) == (912, 512)
    assert len(_frames(result.path)) == info.frames == 2 * SECONDS * FPS - 1


def test_trailing_b_frames_force_a_reencode(chained, folder):
    """Real services encode with B-frames: the last displayed frame is then referenced by
    frames after it in decode order and cannot be dropped by copying packets."""
    b_clips = []
    for i, clip in enumerate(chained[:2]):
        out = folder / f"b{i}.mp4"
        with av.open(str(clip)) as src, av.open(str(out), "w") as dst:
            stream = dst.add_stream("libx264", rate=FPS)
            stream.width, stream.height, stream.pix_fmt = 912, 512, "yuv420p"
            stream.options = {"preset": "ultrafast", "x264-params": "bframes=2:b-adapt=0"}
            for n, frame in enumerate(src.decode(video=0)):
                frame.pts, frame.time_base = n, Fraction(1, FPS)
                frame.pict_type = PictureType.NONE  # decoded types would force I/P only
                dst.mux(stream.encode(frame))
            dst.mux(stream.encode(None))
        b_clips.append(out)
    with av.open(str(b_clips[0])) as container:
        pts = [p.pts for p in container.demux(video=0) if p.size]
    assert pts != sorted(pts), "the test clip should have B-frames"
    reason = stitch.remux_blocker(b_clips)
    assert reason is not None and "B-frames" in reason
    result = stitch.stitch(b_clips, folder / "bframes.mp4")
    assert result.method == "reencode"
    assert len(_frames(result.path)) == 2 * SECONDS * FPS - 1


def test_crossfade_overlaps_each_join(chained, folder):
    result = stitch.stitch(chained, folder / "xfade.mp4", transition="crossfade",
                           crossfade_seconds=0.5)
    fade = 12  # 0.5 s at 24 fps
    expected = 3 * SECONDS * FPS - 2 * (1 + fade)
    assert result.method == "reencode" and result.transition == "crossfade"
    frames = _frames(result.path)
    assert len(frames) == result.frames == expected
    assert result.duration == pytest.approx(expected / FPS, abs=1e-3)
    # Half-way through the first fade the picture is a mix of both clips: unlike either.
    n = SECONDS * FPS
    a, b = _frames(chained[0]), _frames(chained[1])
    middle = frames[n - 1 - fade + fade // 2]
    mix = (a[n - 1 - fade + fade // 2].astype(np.float32) + b[fade // 2]) / 2
    assert media.psnr(middle, mix.astype(np.uint8)) > media.psnr(middle, b[fade // 2])
    with pytest.raises(ValueError, match="crossfade"):
        stitch.stitch(chained, folder / "too-long.mp4", transition="crossfade",
                      crossfade_seconds=2.5)


def test_other_frame_rates_are_resampled(tmp_path):
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    a.write_bytes(encode_mp4(frames=24, fps=24))
    b.write_bytes(encode_mp4(frames=25, fps=25))  # one second either way
    result = stitch.stitch([a, b], tmp_path / "ab.mp4", drop_boundary=False)
    assert result.method == "reencode" and "frame rate" in result.reason
    assert result.fps == 24 and len(_frames(result.path)) == 48


@pytest.mark.parametrize("seconds,suffix,codec", [(9.0, "m4a", "aac"), (1.5, "wav", "pcm_s16le")])
def test_audio_is_trimmed_or_padded_to_the_video(chained, folder, seconds, suffix, codec):
    track = _tone(folder / f"tone-{seconds}.{suffix}", seconds, codec=codec)
    result = stitch.stitch(chained, folder / f"audio-{suffix}.mp4", audio=track)
    assert result.method == "remux" and result.has_audio  # the picture is still copied
    length = (3 * SECONDS * FPS - 2) / FPS
    with av.open(str(result.path)) as container:
        kinds = sorted((s.type, s.codec_context.name) for s in container.streams)
    assert kinds == [("audio", "aac"), ("video", "h264")]
    assert len(_packets(result.path)) == 3 * SECONDS * FPS - 2
    samples, rate, duration = _audio(result.path)
    assert duration == pytest.approx(length, abs=0.05)
    assert samples.shape[1] / rate == pytest.approx(length, abs=0.05)
    def rms(start: float, end: float) -> float:
        return float(np.sqrt(np.mean(samples[:, int(start * rate):int(end * rate)] ** 2)))

    assert rms(0.5, 1.0) > 0.1  # the tone is there
    if seconds < length:
        assert rms(seconds + 0.1, length) < 0.01  # padded with silence
    else:
        assert rms(2.0, length - 1.0) > 0.1 and rms(length - 0.03, length) < 0.02  # faded


def test_poster_and_contact_sheet(chained, folder):
    film = stitch.stitch(chained, folder / "film.mp4").path
    poster = stitch.poster_frame(film, folder / "poster.jpg")
    with Image.open(poster) as img:
        assert img.size == (912, 512) and img.format == "JPEG"
    sheet = stitch.contact_sheet(chained, folder / "sheet.png", thumb_width=200,
                                 labels=["one", "two", "three"])
    with Image.open(sheet) as img:
        assert img.format == "PNG"
        assert img.width == 3 * (200 + 8) + 8  # one row of three
        thumbs = np.asarray(img.convert("RGB"))
    # each cell shows its own clip: the middle frames differ, so the cells do
    cells = [thumbs[8:100, 8 + i * 208: 208 + i * 208] for i in range(3)]
    assert not np.array_equal(cells[0], cells[1]) and not np.array_equal(cells[1], cells[2])
    with pytest.raises(ValueError, match="one label per video"):
        stitch.contact_sheet(chained, folder / "bad.png", labels=["x"])


def test_nothing_to_stitch_and_bad_transition(tmp_path, chained):
    with pytest.raises(ValueError, match="no clips"):
        stitch.stitch([], tmp_path / "x.mp4")
    with pytest.raises(ValueError, match="transition"):
        stitch.stitch(chained, tmp_path / "x.mp4", transition="wipe")  # type: ignore[arg-type]


def test_frame_rate_fraction_is_kept(chained):
    assert stitch._scan(chained[0]).rate == Fraction(FPS)
