"""What the ``hailuo`` command shows while a generation runs.

Three faces of one display, chosen from where the output goes:

- ``tty``: one line redrawn in place (stage, provider status, a bar, elapsed and ETA),
  refreshed by a ticker so the clock moves while the provider is quiet;
- ``plain``: one line per change, for logs and pipes (no escape codes, no redraws);
- ``off``: nothing (``--json``: machines read the single JSON document on stdout).

Why a separate module without Prefect: the display is fed plain events (stage, status,
progress) by whoever watches the run, so it is tested without starting anything.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Literal, TextIO

Mode = Literal["tty", "plain", "off"]

_SPINNER = "|/-\\"
_BAR = 20


def choose_mode(stream: TextIO, *, json_output: bool = False, quiet: bool = False) -> Mode:
    """``off`` for --json/--quiet, ``tty`` when ``stream`` is a terminal, else ``plain``."""
    if json_output or quiet:
        return "off"
    isatty = getattr(stream, "isatty", None)
    return "tty" if isatty is not None and isatty() else "plain"


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class ProgressDisplay:
    """Thread-safe: events arrive from the thread running the flow, the ticker redraws."""

    def __init__(self, stream: TextIO, mode: Mode, *, label: str = "",
                 clock: Callable[[], float] = time.monotonic, tick_seconds: float = 0.25
                 ) -> None:
        self.stream = stream
        self.mode = mode
        self.label = label
        self._clock = clock
        self._tick = tick_seconds
        self._lock = threading.Lock()
        self._started = clock()
        self._progress_started: float | None = None
        self._progress_origin = 0
        self._stage = "starting"
        self._status: str | None = None
        self._progress: int | None = None
        self._task_id: str | None = None
        self._clips_total: int | None = None
        self._clips_done = 0
        self._last_plain: tuple | None = None
        self._frame = 0
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    # -- events -------------------------------------------------------------------------
    def stage(self, stage: str, *, task_id: str | None = None) -> None:
        with self._lock:
            self._stage = stage
            self._task_id = task_id or self._task_id
            self._emit()

    def status(self, status: str, progress: int | None, *, task_id: str | None = None) -> None:
        with self._lock:
            self._stage = "generating"
            self._status = status
            self._task_id = task_id or self._task_id
            if progress is not None:
                if self._progress_started is None and progress > 0:
                    # ETA is extrapolated from when progress first moved, not from the
                    # start: queueing time says nothing about render speed.
                    self._progress_started = self._clock()
                    self._progress_origin = max(0, min(100, int(progress)))
                self._progress = max(0, min(100, int(progress)))
            self._emit()

    def clips(self, total: int) -> None:
        """Several clips in one run (films): show ``clips done/total`` as well."""
        with self._lock:
            self._clips_total = total

    def clip_done(self) -> None:
        with self._lock:
            self._clips_done += 1
            self._emit()

    def note(self, text: str) -> None:
        """A line that stays (e.g. "using the embedded simulator")."""
        if self.mode == "off":
            return
        with self._lock:
            if self.mode == "tty":
                self.stream.write("\r\x1b[2K")
            self.stream.write(text + "\n")
            if self.mode == "tty":
                self.stream.write(self._line())
            self.stream.flush()

    # -- lifecycle ----------------------------------------------------------------------
    def __enter__(self) -> ProgressDisplay:
        if self.mode == "tty":
            self._ticker = threading.Thread(target=self._run_ticker, name="hailuo-progress",
                                            daemon=True)
            self._ticker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=2)
            self._ticker = None
        if self.mode == "tty":
            with self._lock:
                self.stream.write("\r\x1b[2K")
                self.stream.flush()

    # -- rendering ----------------------------------------------------------------------
    def eta_seconds(self) -> float | None:
        """Remaining seconds at the pace seen since progress first moved; None until then."""
        if self._progress_started is None or self._progress is None or self._progress >= 100:
            return None
        gained = self._progress - self._progress_origin
        spent = self._clock() - self._progress_started
        if gained <= 0 or spent <= 0:
            return None
        return (100 - self._progress) * spent / gained

    def _line(self) -> str:
        elapsed = _clock(self._clock() - self._started)
        parts = [_SPINNER[self._frame % len(_SPINNER)], self.label, self._clip_count(),
                 self._stage]
        if self._task_id:
            parts.append(self._task_id)
        if self._status and self._stage == "generating":
            parts.append(self._status)
        if self._progress is not None and self._stage == "generating":
            filled = self._progress * _BAR // 100
            parts.append(f"[{'#' * filled}{'.' * (_BAR - filled)}] {self._progress:3d}%")
        timing = f"{elapsed} elapsed"
        eta = self.eta_seconds()
        if eta is not None and self._stage == "generating":
            timing += f", ~{_clock(eta)} left"
        parts.append(timing)
        return " ".join(p for p in parts if p)

    def _clip_count(self) -> str:
        if self._clips_total is None:
            return ""
        return f"clips {self._clips_done}/{self._clips_total}"

    def _emit(self) -> None:
        """Called with the lock held."""
        if self.mode == "tty":
            self.stream.write("\r\x1b[2K" + self._line())
            self.stream.flush()
        elif self.mode == "plain":
            generating = self._stage == "generating"
            key = (self._stage, self._task_id, generating and self._status,
                   generating and self._progress, self._clips_done)
            if key == self._last_plain:
                return
            self._last_plain = key
            elapsed = self._clock() - self._started
            bits = [f"[{elapsed:.1f}s]", self._stage]
            if self._clips_total is not None:
                bits.append(f"clips={self._clips_done}/{self._clips_total}")
            if self._task_id:
                bits.append(f"task={self._task_id}")
            if self._status and generating:
                bits.append(f"status={self._status}")
            if self._progress is not None and generating:
                bits.append(f"progress={self._progress}%")
            self.stream.write(" ".join(bits) + "\n")
            self.stream.flush()

    def _run_ticker(self) -> None:
        while not self._stop.wait(self._tick):
            with self._lock:
                self._frame += 1
                self.stream.write("\r\x1b[2K" + self._line())
                self.stream.flush()
