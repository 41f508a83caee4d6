"""Turning accepted tasks into MP4 files on a bounded pool of worker threads.

Why a bounded pool started at submit: rendering is CPU bound (about 1-2 s per 6 s 768p
clip), so a burst of submits must queue instead of starving the HTTP server, and the
render overlaps the simulated provider time so tests stay fast. Why ``cheap`` mode: in
load tests the simulator's own encoding would dominate, so one template per
(width, height, duration) is rendered once and each task gets a restamped copy -
distinct bytes, same cost as a file copy.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from hailuo.simulator.state import SimState, Task
from hailuo.simulator.validation import Submission

log = logging.getLogger("hailuo.simulator")


class Renderer:
    """Renders (or restamps) one file per task into ``data_dir``."""

    def __init__(self, state: SimState, data_dir: Path, workers: int) -> None:
        self.state = state
        self.data_dir = data_dir
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hailuo-render")
        self._templates: dict[tuple[int, int, int], Path] = {}
        self._template_locks: dict[tuple[int, int, int], threading.Lock] = {}
        self._lock = threading.Lock()

    def submit(self, task: Task, submission: Submission, *, cheap: bool,
               preset: str) -> Future[None]:
        future = self.pool.submit(self._render, task, submission, cheap, preset)
        task.future = future
        return future

    def _render(self, task: Task, submission: Submission, cheap: bool, preset: str) -> None:
        from hailuo.simulator import render  # PyAV import kept off the startup path

        with self.state.lock:
            task.render_started_at = time.time()
        out = self.data_dir / f"{task.id}.mp4"
        try:
            if cheap:
                render.restamp(self._template(task, preset), out, task.id)
            else:
                spec = render.RenderSpec(
                    width=task.width, height=task.height, duration=task.duration,
                    prompt=task.prompt, camera=task.camera,
                    first_frame=submission.first_frame, last_frame=submission.last_frame,
                    subject=submission.subject, seed_extra=submission.model,
                )
                render.render_video(spec, out, preset=preset)
            size = out.stat().st_size
        except Exception as exc:  # a render bug must fail the task, not hang it
            log.exception("render of %s failed", task.id)
            with self.state.lock:
                task.render_error = f"{type(exc).__name__}: {exc}"
            return
        with self.state.lock:
            task.path, task.size = out, size
            task.render_finished_at = time.time()

    def _template(self, task: Task, preset: str) -> Path:
        """The shared clip for this size and duration, rendered once on first use."""
        from hailuo.simulator import render

        key = (task.width, task.height, task.duration)
        with self._lock:
            lock = self._template_locks.setdefault(key, threading.Lock())
        with lock:
            path = self._templates.get(key)
            if path is None:
                path = self.data_dir / f"template_{task.width}x{task.height}_{task.duration}s.mp4"
                spec = render.RenderSpec(width=task.width, height=task.height,
                                         duration=task.duration,
                                         prompt="hailuo simulator cheap-mode template")
                render.render_video(spec, path, preset=preset)
                self._templates[key] = path
            return path

    def shutdown(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
