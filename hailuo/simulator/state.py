"""What the simulator remembers: tasks, the request log, rate-limit windows, replays.

Why a task's status is *computed* from timestamps rather than stored: the progression
(queue -> processing -> done) then needs no timer per task, survives a changed
``render_seconds`` without drift, and ``complete-now`` is just moving one timestamp.
A task only counts as completed once its time has passed AND its file exists.
Everything here is guarded by one lock because renders finish on worker threads while
the event loop and test threads read.
"""

from __future__ import annotations

import math
import os
import secrets
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from hailuo.capabilities import Mode, Provider

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_ulid() -> str:
    """A ULID (26 Crockford base32 chars: 48-bit ms time + 80 random bits)."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    return "".join(_CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def new_apimart_id() -> str:
    """APIMart task ids look like ``task_01K8SGYNNNVBQTXNR4MM964S7K``."""
    return f"task_{new_ulid()}"


def new_minimax_id() -> str:
    """MiniMax task and file ids are 15-digit decimal strings."""
    return str(secrets.randbelow(9 * 10**14) + 10**14)


class Phase(StrEnum):
    PREPARING = "preparing"
    QUEUEING = "queueing"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self in (Phase.COMPLETED, Phase.FAILED)


@dataclass
class Task:
    """One accepted generation request and the life it leads inside the simulator."""

    id: str
    provider: Provider
    model: str
    mode: Mode
    resolution: str
    duration: int
    width: int
    height: int
    prompt: str
    created_at: float
    queue_seconds: float
    render_seconds: float
    file_token: str
    camera: tuple[tuple[str, ...], ...] = ()
    fail_code: int | None = None
    fail_message: str | None = None
    callback_url: str | None = None
    idempotency_key: str | None = None
    file_id: str | None = None
    cost: float | None = None
    watermark: bool = False
    base_url: str = ""  # where the submit came in: callbacks link back to it
    path: Path | None = None
    size: int | None = None
    render_started_at: float | None = None
    render_finished_at: float | None = None
    render_error: str | None = None
    forced_at: float | None = None
    notes: list[str] = field(default_factory=list)
    future: Future[Any] | None = field(default=None, repr=False)

    @property
    def queue_end(self) -> float:
        return min(self.created_at + self.queue_seconds, self.due_at)

    @property
    def due_at(self) -> float:
        """When the simulated provider time is over (the file may still be rendering)."""
        natural = self.created_at + self.queue_seconds + self.render_seconds
        return natural if self.forced_at is None else min(natural, self.forced_at)

    @property
    def estimated_time(self) -> int:
        return max(1, math.ceil(self.queue_seconds + self.render_seconds))

    def phase(self, now: float | None = None) -> tuple[Phase, int]:
        """(phase, progress 0..100) at ``now``."""
        now = time.time() if now is None else now
        if now < self.queue_end:
            third = self.created_at + (self.queue_end - self.created_at) / 3
            return (Phase.PREPARING if now < third else Phase.QUEUEING), 0
        if now < self.due_at:
            span = self.due_at - self.queue_end
            return Phase.PROCESSING, min(99, int(100 * (now - self.queue_end) / span))
        if self.fail_code is not None:
            return Phase.FAILED, 0
        if self.render_finished_at is not None:
            return Phase.COMPLETED, 100
        if self.render_error is not None:
            return Phase.FAILED, 0
        return Phase.PROCESSING, 99

    @property
    def completed_at(self) -> float | None:
        if self.render_finished_at is None or self.fail_code is not None:
            return None
        return max(self.due_at, self.render_finished_at)

    @property
    def failure(self) -> tuple[int, str] | None:
        """(code, message) once the task is failed, else None."""
        if self.phase()[0] is not Phase.FAILED:
            return None
        if self.fail_code is not None:
            return self.fail_code, self.fail_message or "failed"
        return 1000, f"unknown error: {self.render_error}"

    def to_admin(self) -> dict[str, Any]:
        """The task's state for ``/_sim/tasks`` (wall-clock float timestamps)."""
        phase, progress = self.phase()
        return {
            "id": self.id, "provider": str(self.provider), "model": self.model,
            "mode": str(self.mode), "status": str(phase), "progress": progress,
            "resolution": self.resolution, "duration": self.duration,
            "width": self.width, "height": self.height, "prompt": self.prompt,
            "camera": [list(group) for group in self.camera],
            "created_at": self.created_at, "queue_end_at": self.queue_end,
            "due_at": self.due_at, "render_started_at": self.render_started_at,
            "render_finished_at": self.render_finished_at, "completed_at": self.completed_at,
            "fail_code": self.fail_code, "fail_message": self.fail_message,
            "render_error": self.render_error, "callback_url": self.callback_url,
            "idempotency_key": self.idempotency_key, "file_id": self.file_id,
            "file_size": self.size, "path": str(self.path) if self.path else None,
            "cost": self.cost, "notes": list(self.notes),
        }


class RateLimiter:
    """Sliding one-minute windows per (key, bucket)."""

    WINDOW = 60.0

    def __init__(self) -> None:
        self._hits: dict[tuple[str, str], deque[float]] = {}

    def check(self, who: str, bucket: str, limit: int | None, now: float) -> float | None:
        """Admit (record, return None) or refuse (return seconds until a slot frees)."""
        if limit is None:
            return None
        hits = self._hits.setdefault((who, bucket), deque())
        while hits and hits[0] <= now - self.WINDOW:
            hits.popleft()
        if len(hits) >= limit:
            return max(1.0, math.ceil(hits[0] + self.WINDOW - now))
        hits.append(now)
        return None

    def clear(self) -> None:
        self._hits.clear()


@dataclass
class Replay:
    """What an APIMart ``Idempotency-Key`` was first used for, and what was answered."""

    body_hash: str
    task_id: str
    response: dict[str, Any]
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Upload:
    """An image stored by APIMart's ``POST /v1/uploads/images``."""

    name: str  # the last URL segment: "<ms>-<random>-<filename>"
    data: bytes
    content_type: str
    filename: str
    created_at: float
    expires_at: float
    who: str

    def expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.expires_at


class SimState:
    """Tasks, the request log, the callback log, rate limits and idempotency keys."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.tasks: dict[str, Task] = {}
        self.by_file_id: dict[str, str] = {}
        self.by_token: dict[str, str] = {}
        self.requests: list[dict[str, Any]] = []
        self.callbacks: list[dict[str, Any]] = []
        self.limiter = RateLimiter()
        self.replays: dict[tuple[str, str], Replay] = {}
        self.uploads: dict[str, Upload] = {}
        self._seq = 0

    def add_upload(self, upload: Upload) -> None:
        with self.lock:
            self.uploads[upload.name] = upload

    def upload(self, name: str) -> Upload | None:
        with self.lock:
            return self.uploads.get(name)

    def add_task(self, task: Task) -> None:
        with self.lock:
            self.tasks[task.id] = task
            self.by_token[task.file_token] = task.id
            if task.file_id:
                self.by_file_id[task.file_id] = task.id

    def task(self, task_id: str, provider: Provider | None = None) -> Task | None:
        with self.lock:
            task = self.tasks.get(task_id)
        if task is not None and provider is not None and task.provider != provider:
            return None
        return task

    def task_by_file_id(self, file_id: str) -> Task | None:
        with self.lock:
            task_id = self.by_file_id.get(file_id)
        return self.task(task_id) if task_id else None

    def task_by_token(self, token: str) -> Task | None:
        with self.lock:
            task_id = self.by_token.get(token)
        return self.task(task_id) if task_id else None

    def log(self, entry: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self._seq += 1
            entry["seq"] = self._seq
            self.requests.append(entry)
        return entry

    def log_callback(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.callbacks.append(entry)

    def request_log(self, kind: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(e) for e in self.requests if kind is None or e["kind"] == kind]

    def callback_log(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(e) for e in self.callbacks]

    def accepted_submits(self) -> int:
        """Tasks created by a submit (a dropped-after-submit counts, a replay does not)."""
        with self.lock:
            return sum(1 for e in self.requests
                       if e["kind"] == "submit" and e.get("accepted") and not e.get("replay"))

    def reset(self, *, tasks: bool = False) -> None:
        with self.lock:
            self.requests.clear()
            self.callbacks.clear()
            self.limiter.clear()
            if tasks:
                self.tasks.clear()
                self.by_file_id.clear()
                self.by_token.clear()
                self.replays.clear()
                self.uploads.clear()
