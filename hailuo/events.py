"""An in-process progress channel: the tasks say what they are doing, whoever runs them in
the same process may listen.

The ``hailuo`` command runs its flow in its own process and shows a progress display; it
subscribes here instead of reading the run's log records, so the display depends on
nothing but these names (a change to Prefect's logging cannot silently blank it).

- ``emit(kind, **fields)`` calls every subscriber in the emitting thread (the flow's worker
  threads). It costs nothing when nobody listens, and never raises because of a
  subscriber: a failing one is logged at DEBUG on ``hailuo.events`` and the run goes on.
- ``subscribe(callback)`` returns a ``Subscription``; close it (or use it as a context
  manager) to stop listening. Subscribing and emitting are safe from any thread.

Events stay in the process: a run on a worker elsewhere is watched in the Prefect UI.
Every subscriber sees every event of the process (concurrent runs are not told apart).

The kinds, what each carries, and who emits it (``prefect_hailuo.tasks``):

=====================  ===============================  ====================================
kind                   fields                           emitted by
=====================  ===============================  ====================================
``input-fetching``     uri                              fetch_input_image (S3 inputs only)
``input-fetched``      uri, path                        fetch_input_image
``submitting``         provider, model                  submit_generation, before the slot
``submitted``          task_id, provider, model         submit_generation, on the answer
``status``             task_id, status, progress (%)    wait_for_generation, on each change
``downloading``        task_id                          download_video
``downloaded``         task_id, path, reused            download_video (a clip is ready)
``thumbnail``          video_path                       make_thumbnail
``thumbnail-done``     path                             make_thumbnail
``uploading``          path, bucket, key                upload_to_s3, upload_still
``uploaded``           uri (, skipped: already there)   upload_to_s3, upload_still
``stitching``          clips (count)                    stitch_clips
``stitched``           path, method                     stitch_clips
``poster``             video_path                       make_poster
``poster-done``        path                             make_poster
``contact-sheet``      clips (count)                    make_contact_sheet
``contact-sheet-done`` path                             make_contact_sheet
``film-stage``         stage (what the film flow does   flows.film and tasks.soundtrack
                       next: keyframes, narration,      (narrated films)
                       music, mixing, subtitles, ...)
=====================  ===============================  ====================================

A cached task (e.g. a re-run's submit) does not run its body, so it emits nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

INPUT_FETCHING = "input-fetching"
INPUT_FETCHED = "input-fetched"
SUBMITTING = "submitting"
SUBMITTED = "submitted"
STATUS = "status"
DOWNLOADING = "downloading"
DOWNLOADED = "downloaded"
THUMBNAIL = "thumbnail"
THUMBNAIL_DONE = "thumbnail-done"
UPLOADING = "uploading"
UPLOADED = "uploaded"
STITCHING = "stitching"
STITCHED = "stitched"
POSTER = "poster"
POSTER_DONE = "poster-done"
CONTACT_SHEET = "contact-sheet"
CONTACT_SHEET_DONE = "contact-sheet-done"
FILM_STAGE = "film-stage"

#: Every kind the tasks emit (``emit`` accepts others: the channel is open to extensions).
KINDS = frozenset({
    INPUT_FETCHING, INPUT_FETCHED, SUBMITTING, SUBMITTED, STATUS, DOWNLOADING, DOWNLOADED,
    THUMBNAIL, THUMBNAIL_DONE, UPLOADING, UPLOADED, STITCHING, STITCHED, POSTER,
    POSTER_DONE, CONTACT_SHEET, CONTACT_SHEET_DONE, FILM_STAGE})

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    """One thing a task did: its ``kind``, its ``fields`` (read-only), and when
    (``time.monotonic()``) and in which thread it happened."""

    kind: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    at: float = 0.0
    thread: str = ""

    def get(self, name: str, default: Any = None) -> Any:
        return self.fields.get(name, default)


Subscriber = Callable[[Event], object]

_lock = threading.Lock()
# Copy-on-write: ``emit`` reads the current tuple without taking the lock, so a subscriber
# may subscribe or unsubscribe (itself or another) while being called.
_subscribers: tuple[Subscription, ...] = ()


class Subscription:
    """A live subscription: ``close()`` it, or use it as a context manager."""

    def __init__(self, callback: Subscriber) -> None:
        self.callback = callback
        self.closed = False

    def close(self) -> None:
        """Stop receiving events (idempotent); an emit already under way may still call it
        once more."""
        global _subscribers
        with _lock:
            self.closed = True
            _subscribers = tuple(s for s in _subscribers if s is not self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def subscribe(callback: Subscriber) -> Subscription:
    """Call ``callback(event)`` for every event emitted in this process until closed."""
    global _subscribers
    subscription = Subscription(callback)
    with _lock:
        _subscribers = (*_subscribers, subscription)
    return subscription


def emit(kind: str, **fields: Any) -> None:
    """Tell every subscriber; never raises because of one (a broken display must not fail
    a paid generation)."""
    current = _subscribers
    if not current:
        return
    event = Event(kind, MappingProxyType(dict(fields)), time.monotonic(),
                  threading.current_thread().name)
    for subscription in current:
        if subscription.closed:
            continue
        try:
            subscription.callback(event)
        except Exception:  # noqa: BLE001 - a subscriber's problem is never the run's
            _log.debug("hailuo.events subscriber %r failed on %r", subscription.callback,
                       kind, exc_info=True)


def subscriber_count() -> int:
    """How many subscriptions are open (for tests and diagnostics)."""
    return len(_subscribers)
