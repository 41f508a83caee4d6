"""``storyboard``: a film from keyframes K0..Kn, its n clips generated at the same time.

Why keyframes make it parallel: clip i runs first+last frame from Ki-1 to Ki, so no clip
waits for another and a one-minute film takes about the time of one clip, not n in a row.
Segments without a keyframe before them chain onto the previous clip (as in
``multi_clip_continuity``), so keyframes and prompts can be mixed; the engine
(``flows.continuity.make_film``) runs each such chain in order and the chains in parallel.
"""

from __future__ import annotations

from prefect import flow

from prefect_hailuo.flows.continuity import FilmResult, make_film
from prefect_hailuo.flows.models import Destination, GenerationOptions
from prefect_hailuo.flows.params import (
    Credentials,
    CredentialsBlock,
    MaxConcurrency,
    Options,
    StoryboardInput,
    Where,
    pick_credentials,
)
from prefect_hailuo.tasks.cancellation import cancel_queued_tasks


@flow(name="hailuo-storyboard", log_prints=True, persist_result=True,
      on_cancellation=[cancel_queued_tasks])
def storyboard(
    storyboard: StoryboardInput,
    options: Options = GenerationOptions(),
    destination: Where = Destination(),
    credentials: Credentials = None,
    credentials_block: CredentialsBlock = None,
    max_concurrency: MaxConcurrency = 8,
) -> FilmResult:
    """Generate every clip between consecutive keyframes in parallel, then stitch.

    Args:
        storyboard: A storyboard, or the path of a .yaml/.json storyboard file on the
            machine running the flow; its first_image is K0 and each segment's keyframe
            the image it ends on. First+last frame mode needs MiniMax-Hailuo-02.
        options: Model, default duration/resolution (the storyboard's own win), cost limit.
        destination: Local folder and optional S3 bucket block for clips and film.
        credentials: The HailuoCredentials block to use, picked from the saved blocks; it
            wins over the credentials block name.
        credentials_block: The same by name (CLI and code): a saved HailuoCredentials
            block, or "simulator" for the embedded simulator (nothing is paid). Empty
            means not set; with neither set the run fails at once, naming the block to
            create.
        max_concurrency: Most clips (chains) in flight at once; submits also respect the
            hailuo-submit rate limit when it exists.
    """
    return make_film(storyboard, mode="storyboard", options=options, destination=destination,
                     credentials_block=pick_credentials(credentials, credentials_block),
                     max_concurrency=max_concurrency)
