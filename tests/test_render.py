"""The simulator's renderer: real, well-formed H.264 files whose content follows the request.

Motion is checked by phase correlation between decoded frames, so camera commands are
tested by what a viewer would see, not by inspecting the renderer's internals.
"""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image, ImageDraw

from hailuo.capabilities import FRAME_SIZES
from hailuo.media import psnr
from hailuo.simulator.render import RenderSpec, fit_cover, output_size, render_video, restamp

W512, H512 = FRAME_SIZES["512p"]


# ----------------------------------------------------------------------------- helpers


def decode(path: Path) -> tuple[list[np.ndarray], list[bool]]:
    """All frames as RGB arrays, and which were keyframes."""
    frames, keys = [], []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            keys.append(frame.key_frame)
    return frames, keys


def gray(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def shift(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(dx, dy) by which the content of frame ``a`` moved to reach frame ``b`` (pixels)."""
    ga, gb = gray(a), gray(b)
    window = np.outer(np.hanning(ga.shape[0]), np.hanning(ga.shape[1]))
    fa, fb = np.fft.fft2((ga - ga.mean()) * window), np.fft.fft2((gb - gb.mean()) * window)
    cross = fb * np.conj(fa)
    corr = np.fft.ifft2(cross / (np.abs(cross) + 1e-9)).real
    dy, dx = np.unravel_index(np.argmax(corr), corr.shape)
    h, w = corr.shape
    dy = dy - h if dy > h // 2 else dy
    dx = dx - w if dx > w // 2 else dx
    return float(dx), float(dy)


def best_scale(a: np.ndarray, b: np.ndarray) -> float:
    """The magnification s for which ``b`` best matches the centre of ``a`` enlarged by s."""
    h, w = a.shape[:2]
    img = Image.fromarray(a)
    target = gray(b)[h // 8 : -h // 8, w // 8 : -w // 8]
    errors = {}
    for s in np.arange(1.0, 1.61, 0.05):
        cw, ch = w / s, h / s
        box = ((w - cw) / 2, (h - ch) / 2, (w + cw) / 2, (h + ch) / 2)
        cand = gray(np.asarray(img.resize((w, h), Image.Resampling.BILINEAR, box=box)))
        errors[round(float(s), 2)] = float(np.mean((cand[h // 8 : -h // 8, w // 8 : -w // 8]
                                                    - target) ** 2))
    return min(errors, key=errors.get)


def picture(size: tuple[int, int], seed: int, fmt: str = "PNG") -> bytes:
    """A photo-like test image (gradients, smooth noise, antialiased shapes) as bytes."""
    w, h = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (w + h) + 60], axis=-1)
    coarse = rng.uniform(0, 255, (h // 24 + 2, w // 24 + 2, 3)).astype(np.uint8)
    noise = np.asarray(Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC))
    base = base * 0.7 + noise * 0.3
    big = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).resize((2 * w, 2 * h))
    draw = ImageDraw.Draw(big)
    for _ in range(25):
        x, y, r = rng.uniform(0, 2 * w), rng.uniform(0, 2 * h), rng.uniform(20, 120)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(rng.integers(0, 256, 3).tolist()))
    img = big.resize((w, h), Image.Resampling.LANCZOS)  # downsampling antialiases the edges
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def load(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("render")


def render(out: Path, name: str, **kw) -> Path:
    kw.setdefault("width", W512)
    kw.setdefault("height", H512)
    kw.setdefault("duration", 2)
    return render_video(RenderSpec(**kw), out / f"{name}.mp4")


@pytest.fixture(scope="module")
def t2v(out) -> Path:
    return render(out, "t2v", prompt="a lighthouse at dusk", duration=3)


# ----------------------------------------------------------------------------- sizes


def test_output_size_text_to_video_uses_frame_sizes():
    for label, size in FRAME_SIZES.items():
        assert output_size(label) == size
    assert output_size("768P") == (1366, 768)
    with pytest.raises(ValueError):
        output_size("999p")


def test_output_size_follows_first_frame_aspect():
    assert output_size("768p", picture((800, 600), 1)) == (1024, 768)
    assert output_size("512p", picture((600, 900), 1)) == (512, 768)  # portrait stays portrait
    w, h = output_size("768p", picture((1001, 563), 1))  # odd aspect -> even dimensions
    assert h == 768 and w % 2 == 0 and abs(w - 768 * 1001 / 563) <= 1


# ----------------------------------------------------------------------------- container


def test_file_is_well_formed_h264(t2v):
    with av.open(str(t2v)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.format.name == "yuv420p"
        assert (stream.width, stream.height) == (W512, H512)
        assert stream.average_rate == 24
        assert float(stream.duration * stream.time_base) == pytest.approx(3.0)
        assert container.metadata.get("comment", "").startswith("prefect-hailuo simulator")
    frames, keys = decode(t2v)
    assert len(frames) == 3 * 24
    assert [i for i, k in enumerate(keys) if k] == [0, 24, 48]
    assert not list(t2v.parent.glob(".*.part"))  # temp file renamed away


def test_768p_6s_default_render(out):
    path = render_video(RenderSpec(1366, 768, 6, prompt="city at night"), out / "hd.mp4")
    frames, keys = decode(path)
    assert len(frames) == 144 and frames[0].shape == (768, 1366, 3)
    assert sum(keys) == 6
    dx, _ = shift(frames[0], frames[-1])
    assert dx < -10  # no camera command still drifts gently (content moves left)


def test_same_prompt_same_frames_different_prompt_different(out, t2v):
    again = render(out, "again", prompt="a lighthouse at dusk", duration=3)
    other = render(out, "other", prompt="a forest in fog", duration=3)
    a, _ = decode(t2v)
    b, _ = decode(again)
    c, _ = decode(other)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert psnr(a[0], c[0]) < 20


def test_simulated_mark_in_bottom_right(t2v):
    frames, _ = decode(t2v)
    for frame in (frames[0], frames[-1]):
        corner = frame[-40:, -120:].astype(int).sum(axis=2)
        assert (corner > 600).sum() > 20  # white text
        assert (corner < 150).sum() > 50  # dark box


def test_restamp_copies_packets_with_distinct_bytes(out, t2v):
    dst = restamp(t2v, out / "stamped.mp4", "task_abc")
    assert dst.read_bytes() != t2v.read_bytes()
    with av.open(str(dst)) as container:
        assert container.metadata["title"] == "task_abc"
        assert container.metadata["comment"] == "task_abc"
    with av.open(str(t2v)) as a, av.open(str(dst)) as b:
        pa = [bytes(p) for p in a.demux(video=0) if p.size]
        pb = [bytes(p) for p in b.demux(video=0) if p.size]
    assert pa == pb  # no re-encode


# ----------------------------------------------------------------------------- motion


@pytest.mark.parametrize(
    ("command", "sign_x", "sign_y"),
    [
        ("Pan left", 1, 0),
        ("Truck right", -1, 0),
        ("Tilt up", 0, 1),
        ("Pedestal down", 0, -1),
    ],
)
def test_translation_direction(out, command, sign_x, sign_y):
    frames, _ = decode(render(out, command.replace(" ", "_"), prompt="p", camera=((command,),)))
    dx, dy = shift(frames[0], frames[-1])
    for value, sign, extent in ((dx, sign_x, W512), (dy, sign_y, H512)):
        if sign:
            assert value * sign > 0.12 * extent, (command, dx, dy)
        else:
            assert abs(value) <= 2, (command, dx, dy)


def test_zoom_in_magnifies_and_zoom_out_shrinks(out):
    zin, _ = decode(render(out, "zin", prompt="p", camera=(("Zoom in",),)))
    assert 1.2 <= best_scale(zin[0], zin[-1]) <= 1.4
    zout, _ = decode(render(out, "zout", prompt="p", camera=(("Pull out",),)))
    assert 1.2 <= best_scale(zout[-1], zout[0]) <= 1.4  # reversed: the start is the close-up


def test_static_shot_does_not_move(out):
    frames, _ = decode(render(out, "static", prompt="p", camera=(("Static shot",),)))
    assert shift(frames[0], frames[-1]) == (0.0, 0.0)
    assert psnr(frames[0], frames[-1]) > 40


def test_brackets_run_in_order_and_commands_in_a_bracket_together(out):
    frames, _ = decode(render(out, "seq", prompt="p", camera=(("Pan left",), ("Tilt up",))))
    half = len(frames) // 2
    dx1, dy1 = shift(frames[0], frames[half - 1])
    dx2, dy2 = shift(frames[half], frames[-1])
    assert dx1 > 0.12 * W512 and abs(dy1) <= 2
    assert dy2 > 0.12 * H512 and abs(dx2) <= 3
    both, _ = decode(render(out, "both", prompt="p", camera=(("Pan right", "Pedestal up"),)))
    dx, dy = shift(both[0], both[-1])
    assert dx < -0.12 * W512 and dy > 0.12 * H512


def test_shake_jitters_but_returns(out):
    frames, _ = decode(render(out, "shake", prompt="p", camera=(("Shake",),)))
    moves = [shift(frames[i], frames[i + 1]) for i in range(0, len(frames) - 1, 4)]
    assert any(abs(dx) + abs(dy) >= 2 for dx, dy in moves)
    assert psnr(frames[0], frames[-1]) > 40


# ----------------------------------------------------------------------------- image modes


def test_image_to_video_starts_on_the_image(out):
    image = picture((600, 900), 7, fmt="JPEG")  # portrait
    w, h = output_size("512p", image)
    assert (w, h) == (512, 768)
    path = render(out, "i2v", width=w, height=h, first_frame=image, camera=(("Pan left",),))
    frames, _ = decode(path)
    assert frames[0].shape == (768, 512, 3)
    assert psnr(frames[0], fit_cover(load(image), (w, h))) >= 30  # whole frame, mark included
    dx, _ = shift(frames[0], frames[-1])
    assert dx > 0.12 * w  # and the camera command animates it


def test_first_and_last_frame_start_and_end_exactly(out):
    first = picture((800, 600), 11)
    last = picture((700, 700), 12)  # a different aspect: cropped to the first's size
    w, h = output_size("512p", first)
    path = render(out, "fl", width=w, height=h, first_frame=first, last_frame=last,
                  camera=(("Zoom in",),))
    frames, _ = decode(path)
    assert psnr(frames[0], fit_cover(load(first), (w, h))) >= 30
    assert psnr(frames[-1], fit_cover(load(last), (w, h))) >= 30
    middle = frames[len(frames) // 2]
    assert psnr(middle, frames[0]) < 25 and psnr(middle, frames[-1]) < 25  # it transitions


def test_subject_reference_is_composited(out):
    magenta = Image.new("RGB", (300, 400), (255, 0, 255))
    buf = io.BytesIO()
    magenta.save(buf, format="PNG")
    plain, _ = decode(render(out, "plain", prompt="a hero walks"))
    with_subject, _ = decode(render(out, "subject", prompt="a hero walks", subject=buf.getvalue()))

    def magenta_share(frame: np.ndarray) -> float:
        r, g, b = (frame[..., i].astype(int) for i in range(3))
        return float(((r > 200) & (g < 60) & (b > 200)).mean())

    for i in (0, len(with_subject) // 2, -1):
        assert magenta_share(with_subject[i]) > 0.05
        assert magenta_share(plain[i]) < 0.01
