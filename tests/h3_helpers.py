"""Media makers and readers shared by the H3 tests (not a test module)."""

from __future__ import annotations

import io
import math
import wave
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw


def textured_png(path: Path, size: tuple[int, int] = (800, 450), seed: int = 1) -> Path:
    """A PNG with gradients and shapes, so frame comparisons mean something."""
    rng = np.random.default_rng(seed)
    w, h = size
    x = np.linspace(0, 1, w)[None, :, None]
    y = np.linspace(0, 1, h)[:, None, None]
    base = rng.uniform(40, 200, 3)[None, None, :]
    arr = np.clip(base + 60 * x * rng.uniform(-1, 1, 3) + 60 * y * rng.uniform(-1, 1, 3),
                  0, 255).astype(np.uint8)
    arr = np.broadcast_to(arr, (h, w, 3)).copy()
    img = Image.fromarray(arr)
    draw = ImageDraw.Draw(img)
    for _ in range(12):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(20, 80)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r],
                     fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    img.save(path, format="PNG")
    return path


def mp4(path: Path, size: tuple[int, int] = (320, 256), seconds: float = 2.5, fps: int = 24,
        codec: str = "libx264") -> Path:
    w, h = size
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(round(seconds * fps)):
            arr = np.full((h, w, 3), (i * 7) % 255, dtype=np.uint8)
            arr[:, : w // 2, 0] = 200
            frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def wav(path: Path, seconds: float = 2.5, rate: int = 16000, freq: float = 330.0) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.3 * np.sin(2 * math.pi * freq * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return path


def audio_track(path: Path | bytes) -> tuple[str, int, int, np.ndarray]:
    """(codec, sample rate, channels, samples as float (channels, n)) of the first audio
    stream, decoded with PyAV."""
    source = io.BytesIO(path) if isinstance(path, bytes) else str(path)
    with av.open(source) as container:
        stream = container.streams.audio[0]
        cc = stream.codec_context
        chunks = [frame.to_ndarray() for frame in container.decode(stream)]
        codec, rate, channels = cc.name, cc.sample_rate, cc.channels
    data = np.concatenate(chunks, axis=1) if chunks else np.zeros((channels, 0))
    return codec, rate, channels, data.astype(np.float64)


def peak_frequencies(samples: np.ndarray, rate: int, count: int = 2) -> list[float]:
    """The ``count`` strongest frequencies (Hz) of one channel, at least 20 Hz apart."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    freqs = np.fft.rfftfreq(len(samples), 1 / rate)
    found: list[float] = []
    for index in np.argsort(spectrum)[::-1]:
        f = float(freqs[index])
        if f > 20 and all(abs(f - g) > 20 for g in found):
            found.append(f)
        if len(found) == count:
            break
    return sorted(found)
