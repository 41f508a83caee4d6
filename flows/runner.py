"""Clips run in this process: a thread per clip in flight, up to ``max_concurrency``.

The single-process way to run many clips (a batch's default, and the way each chunk of a
spread batch runs on its worker: ``flows/fanout.py``). Each clip is a ``generate-clip``
task whose submit/wait/download/upload run as nested tasks (``flows/pipeline.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from hailuo.errors import ClipFailure
from prefect_hailuo.blocks.credentials import HailuoConnection
from prefect_hailuo.flows import ledger
from prefect_hailuo.flows.models import ClipResult, ClipSpec, Destination, GenerationOptions
from prefect_hailuo.flows.pipeline import run_clip


@task(name="generate-clip", cache_policy=NO_CACHE, task_run_name="clip-{number:03d}")
def generate_clip(number: int, spec: ClipSpec, connection: HailuoConnection,
                  options: GenerationOptions, destination: Destination,
                  group: str | None = None) -> ClipResult:
    """Clip ``number`` (1-based, as the clips are named: clip-001, ...) of a batch; its
    submit/wait/download/upload run as nested tasks."""
    return run_clip(spec, connection, options, destination, group=group)


@dataclass
class Outcome:
    """What a set of clips came to: the finished ones (with their 1-based numbers in the
    whole batch) and the failed ones (each with its typed error)."""

    done: list[tuple[int, ClipResult]] = field(default_factory=list)
    failures: list[ClipFailure] = field(default_factory=list)

    def add(self, other: Outcome) -> None:
        self.done.extend(other.done)
        self.failures.extend(other.failures)

    def sorted(self) -> Outcome:
        return Outcome(sorted(self.done, key=lambda d: d[0]),
                       sorted(self.failures, key=lambda f: f.number))


def run_clips_here(numbered: list[tuple[int, ClipSpec]], connection: HailuoConnection,
                   options: GenerationOptions, destination: Destination, group: str,
                   max_concurrency: int) -> Outcome:
    """Run the clips in this process, ``max_concurrency`` at a time; one clip failing does
    not stop the others (its error is kept for the caller). Clips the ledger holds as
    finished and verified (``flows/ledger.py``) are not run again."""
    logger = get_run_logger()
    done, numbered = ledger.split_done(numbered, connection, options, destination, group)
    outcome = Outcome(done=done)
    if not numbered:
        return outcome
    with ThreadPoolTaskRunner(max_workers=max(1, max_concurrency)) as runner:
        futures = [runner.submit(generate_clip, {
            "number": n, "spec": s, "connection": connection, "options": options,
            "destination": destination, "group": group}) for n, s in numbered]
        for (number, spec), future in zip(numbered, futures, strict=True):
            try:
                outcome.done.append((number, future.result()))
            except Exception as exc:  # noqa: BLE001 - reported per clip, raised by the caller
                outcome.failures.append(ClipFailure(number, spec.name, exc))
                logger.error("clip %s failed: %s", spec.name, outcome.failures[-1].summary)
    return outcome.sorted()  # the ledger's clips came first
