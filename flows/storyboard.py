"""``storyboard``: a film from keyframes K0..Kn, its n clips generated at the same time.

Why keyframes make it parallel: clip i runs first+last frame from Ki-1 to Ki, so no clip
waits for another and a one-minute film takes about the time of one clip, not n in a row.
Segments without a keyframe before them chain onto the previous clip (as in
``multi_clip_continuity``), so keyframes and prompts can be mixed; the engine
(``flows.continuity.make_film``) runs each such chain in order and the chains in parallel.
"""

from __future__ import annotations

from prefect import flow

from hailuo.storyboard import Storyboard
from prefect_hailuo.flows.continuity import FilmResult, make_film
from prefect_hailuo.flows.models import Destination, GenerationOptions


@flow(name="hailuo-storyboard", log_prints=True)
def storyboard(
    storyboard: Storyboard | str,
    options: GenerationOptions = GenerationOptions(),
    destination: Destination = Destination(),
    credentials_block: str | None = None,
    max_concurrency: int = 8,
) -> FilmResult:
    """Generate every clip between consecutive keyframes in parallel, then stitch.

    Args:
        storyboard: a Storyboard, or the path of a .yaml/.json storyboard file; its
            ``first_image`` is K0 and each segment's ``keyframe`` the image it ends on.
            First+last frame mode needs MiniMax-Hailuo-02.
        options: model, default duration/resolution (the storyboard's own win), cost limit.
        destination: local folder and optional S3 bucket block for clips and film.
        credentials_block: a saved HailuoCredentials block; empty runs the simulator.
        max_concurrency: clips (chains) in flight at once; submits also respect the
            ``hailuo-submit`` rate limit when it exists.
    """
    return make_film(storyboard, mode="storyboard", options=options, destination=destination,
                     credentials_block=credentials_block, max_concurrency=max_concurrency)
