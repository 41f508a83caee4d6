"""B9: a storyboard of 6 clips (every clip between two keyframes, all in parallel) against
chained continuity of the same 6 clips (each starts on the previous clip's last frame)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from benchmarks.common import Settings, median, quiet_logs, result, save_sim_credentials, spread


def _keyframes(folder: Path, count: int) -> list[str]:
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"k{i}.png"
        if not path.exists():
            img = Image.new("RGB", (1366, 768), (40 + 30 * i, 90, 200 - 25 * i))
            ImageDraw.Draw(img).ellipse([200 + 120 * i, 200, 500 + 120 * i, 500],
                                        fill=(250, 220, 80))
            img.save(path)
        paths.append(str(path))
    return paths


def b9_storyboard(s: Settings) -> dict[str, Any]:
    from hailuo.simulator import run_simulator
    from hailuo.storyboard import Segment, Storyboard
    from prefect_hailuo.flows import Destination, GenerationOptions
    from prefect_hailuo.flows.continuity import multi_clip_continuity
    from prefect_hailuo.flows.storyboard import storyboard

    n = s.pick(6, 2)
    render = s.pick(5.0, 0.5)
    keys = _keyframes(s.work / "b9_keys", n + 1)
    board_t, chain_t = [], []
    with run_simulator(render_seconds=render, cheap=True) as sim:
        creds = save_sim_credentials("bench-b9", sim.base_url)

        def board(tag: str) -> Storyboard:
            return Storyboard(title=f"b9 {tag}", first_image=keys[0], resolution="768p",
                              segments=[Segment(prompt=f"the sun drifts right, {tag} shot {i}",
                                                keyframe=keys[i + 1]) for i in range(n)])

        for rep in range(s.reps):
            with quiet_logs():
                t = time.perf_counter()
                storyboard(board(f"board r{rep}"), GenerationOptions(),
                           Destination(output_dir=str(s.work / "b9" / f"board-{rep}")),
                           credentials_block=creds)
                tb = time.perf_counter() - t
                t = time.perf_counter()
                multi_clip_continuity(board(f"chain r{rep}"), GenerationOptions(),
                                      Destination(output_dir=str(s.work / "b9" / f"chain-{rep}")),
                                      credentials_block=creds)
                tc = time.perf_counter() - t
            board_t.append(tb)
            chain_t.append(tc)
    ratio = median(board_t) / median(chain_t)
    met = ratio <= 1 / 3
    notes = [
        f"{n} segments, 768p, render {render:g} s in cheap mode; the same storyboard (first "
        "image + a keyframe per segment) given to `flows.storyboard.storyboard` (every clip "
        "first+last frame between its keyframes, in parallel, then stitched) and to "
        "`flows.continuity.multi_clip_continuity` (clip k+1 image-to-video from clip k's "
        "exact last frame, one after another, then stitched). Both end with a stitched "
        "film, poster, contact sheet and manifest. Runs after B1-B8 in the same Prefect "
        "server (already warm).",
    ]
    if not met:
        notes.append(f"MISSED: the storyboard takes {ratio:.2f} of the chained wall time. "
                     "The chain costs n x (render + per-clip overhead); the storyboard one "
                     "render plus n clips' overhead on two cores, so a short render lets "
                     "the shared overhead dominate.")
    return result("B9", "storyboard of 6 clips vs chained continuity of 6 clips", figures={
        "storyboard_seconds": spread(board_t),
        "continuity_seconds": spread(chain_t),
        "storyboard_over_continuity": round(ratio, 3),
    }, headline=f"storyboard {median(board_t):.1f} s = {ratio:.2f} of chained "
                f"{median(chain_t):.1f} s", met=met, notes=notes)
