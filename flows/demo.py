"""The demo (``make demo``): text-to-video and image-to-video through the real Prefect flows,
and one MiniMax-H3 clip with its own sound, against the embedded simulator — no key, no
network, nothing paid.

Writes the MP4s, thumbnails and manifests to ``./out/`` and prints what they would cost.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

OUT = Path(os.environ.get("HAILUO_DEMO_OUT", "out"))


def sample_image(path: Path) -> Path:
    """A synthetic 'product shot' to animate (no downloads needed)."""
    w, h = 1280, 720
    y = np.linspace(0, 1, h)[:, None, None]
    sky = (np.array([40, 70, 140]) * (1 - y) + np.array([240, 170, 110]) * y).astype(np.uint8)
    img = Image.fromarray(np.broadcast_to(sky, (h, w, 3)).copy())
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, int(h * 0.7), w, h], fill=(40, 50, 45))
    draw.ellipse([w // 2 - 140, h // 2 - 200, w // 2 + 140, h // 2 + 80], fill=(230, 60, 50))
    draw.rectangle([w // 2 - 20, h // 2 + 80, w // 2 + 20, int(h * 0.72)], fill=(90, 60, 40))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def _sound(path: str) -> str:
    """What the clip's sound track is, measured from the file."""
    from hailuo import media

    info = media.probe(path)
    channels = {1: "mono", 2: "stereo"}.get(info.audio_channels or 0, "?")
    return (f"with sound: {info.audio_codec} {channels} {info.audio_sample_rate} Hz, "
            f"{info.audio_duration or 0:.2f} s over {info.duration:.2f} s of picture")


def main() -> int:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("HAILUO_SIM_RENDER_SECONDS", "2")
    started = time.monotonic()
    print("prefect-hailuo demo: embedded simulator, no API key, nothing is paid.", flush=True)
    from prefect_hailuo.defaults import SIMULATOR
    from prefect_hailuo.flows import (
        Destination,
        GenerationOptions,
        image_to_video,
        text_to_video,
    )

    destination = Destination(output_dir=str(OUT))
    # the simulator is never a silent default: the demo asks for it by name
    t2v = text_to_video(
        prompt="[Truck left, Pedestal up] A lighthouse on a rocky coast at dusk, waves "
        "breaking, warm light in the window, cinematic wide shot",
        destination=destination, credentials_block=SIMULATOR,
    )
    image = sample_image(OUT / "inputs" / "balloon.png")
    i2v = image_to_video(
        first_frame_image=str(image),
        prompt="[Push in] The balloon drifts upward and sways gently in the wind",
        destination=destination, credentials_block=SIMULATOR,
    )
    # MiniMax-H3 (MiniMax's own API, v2): a ratio, and a native stereo sound track
    h3 = text_to_video(
        prompt="A brass band marches along a harbour quay at dawn, gulls overhead, "
        "the drum keeps time",
        options=GenerationOptions(model="MiniMax-H3", ratio="16:9", duration=4,
                                  provider="minimax"),
        destination=destination, credentials_block=SIMULATOR,
    )
    print("\nDone in %.0f s. Files:" % (time.monotonic() - started))
    total = 0.0
    for label, clip in (("text-to-video", t2v), ("image-to-video", i2v),
                        ("MiniMax-H3", h3)):
        total += clip.cost_usd
        print(f"  {label:15} {clip.local_path}  {clip.width}x{clip.height} "
              f"{clip.duration:.1f}s  sha256 {clip.sha256[:12]}…")
        print(f"  {'':15} thumbnail {clip.thumbnail_path}, manifest {clip.manifest_path}")
        if clip.has_audio:
            print(f"  {'':15} {_sound(clip.local_path)}")
        print(f"  {'':15} would have cost ${clip.cost_usd:.2f} on {clip.provider}")
    print(f"  total that would have been paid: ${total:.2f} (simulated: $0.00)")
    from hailuo.simulator.embedded import stop_embedded_simulator

    stop_embedded_simulator()
    return 0


if __name__ == "__main__":
    sys.exit(main())
