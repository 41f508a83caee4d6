"""The simulated provider: creating tasks, signing links, and each provider's bodies.

Why separate from the routes: the HTTP layer (``app.py``) decides *which* answer a
request gets (faults, auth, limits); this module knows *what* a task looks like in each
provider's dialect. The server handle and the callback sender reuse the same builders,
so a callback body is byte-for-byte the status body a GET would return.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

from hailuo.capabilities import Provider
from hailuo.errors import InvalidRequestError
from hailuo.simulator.callbacks import CallbackSender
from hailuo.simulator.config import SimulatorConfig
from hailuo.simulator.faults import (
    MINIMAX_MESSAGES,
    Dice,
    apimart_error,
    failure_type,
    minimax_base,
)
from hailuo.simulator.rendering import Renderer
from hailuo.simulator.state import (
    Phase,
    SimState,
    Task,
    new_apimart_id,
    new_minimax_id,
)
from hailuo.simulator.validation import Submission

log = logging.getLogger("hailuo.simulator")

DOWNLOAD_ROUTES = {"download": "download", "backup": "download-backup"}

_APIMART_STATUS = {Phase.PREPARING: "pending", Phase.QUEUEING: "pending",
                   Phase.PROCESSING: "processing", Phase.COMPLETED: "completed",
                   Phase.FAILED: "failed"}
_MINIMAX_STATUS = {Phase.PREPARING: "Preparing", Phase.QUEUEING: "Queueing",
                   Phase.PROCESSING: "Processing", Phase.COMPLETED: "Success",
                   Phase.FAILED: "Fail"}


class Simulator:
    """State, configuration and resources of one simulated provider pair."""

    def __init__(self, config: SimulatorConfig) -> None:
        self._config = config
        self.secret = (config.signing_secret or secrets.token_hex(32)).encode()
        self.state = SimState()
        self.dice = Dice(config.seed)
        self.renderer: Renderer | None = None
        self.sender: CallbackSender | None = None
        self.client: httpx.AsyncClient | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._submit_count = 0
        self._faults_lock = threading.Lock()
        self._fault_left: dict[str, int] = dict(config.scripted_faults)

    # -- configuration --------------------------------------------------------------
    @property
    def config(self) -> SimulatorConfig:
        return self._config

    def configure(self, **knobs: Any) -> SimulatorConfig:
        """Change fault/timing knobs live; startup-only knobs are refused."""
        from hailuo.simulator.config import STARTUP_ONLY

        fixed = sorted(set(knobs) & STARTUP_ONLY)
        if fixed:
            raise ValueError(f"{', '.join(fixed)} can only be set when the server starts")
        new = self._config.updated(**knobs)
        if "seed" in knobs:
            self.dice.reseed(new.seed)
        if "scripted_faults" in knobs:
            with self._faults_lock:
                self._fault_left = dict(new.scripted_faults)
        self._config = new
        return new

    def fault(self, name: str) -> bool:
        """Whether fault ``name`` strikes now: a scripted one while its count lasts (-1:
        always), else at random with its ``fault_rates`` probability."""
        with self._faults_lock:
            left = self._fault_left.get(name, 0)
            if left != 0:
                if left > 0:
                    self._fault_left[name] = left - 1
                return True
        return self.dice.roll(name, self._config.fault_rates.get(name, 0.0))

    # -- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        if self._config.data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="hailuo-sim-")
            data_dir = Path(self._tmp.name)
        else:
            data_dir = Path(self._config.data_dir)
            data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir
        self.renderer = Renderer(self.state, data_dir, self._config.render_workers)
        self.client = httpx.AsyncClient(follow_redirects=True)
        self.sender = CallbackSender(self.state, lambda: self._config, self.dice, self.client,
                                     self.apimart_callback_body, self.minimax_callback_body)

    async def stop(self) -> None:
        import asyncio

        if self.sender is not None:
            await self.sender.close()
        if self.renderer is not None:
            try:
                await asyncio.to_thread(self.renderer.shutdown)
            except RuntimeError:  # at interpreter exit no new threads: stop inline
                self.renderer.shutdown()
        if self.client is not None:
            await self.client.aclose()
        if self._tmp is not None:
            self._tmp.cleanup()

    # -- tasks -----------------------------------------------------------------------
    def create_task(self, sub: Submission, *, base_url: str,
                    idempotency_key: str | None) -> Task:
        """Accept a validated submission: record it, decide its fate, start its render."""
        from hailuo.simulator import render

        config = self._config
        camera, notes = _camera(sub.prompt)
        width, height = render.output_size(sub.resolution, sub.first_frame)
        fail = self.dice.roll("fail", config.fail_rate)
        fail_code = self.dice.choice("fail_code", list(config.fail_codes)) if fail else None
        minimax = sub.provider is Provider.MINIMAX
        task = Task(
            id=new_minimax_id() if minimax else new_apimart_id(),
            provider=sub.provider, model=sub.model, mode=sub.mode,
            resolution=sub.resolution, duration=sub.duration, width=width, height=height,
            prompt=sub.prompt, created_at=time.time(), queue_seconds=config.queue_seconds,
            render_seconds=config.render_seconds, file_token=secrets.token_urlsafe(18),
            camera=camera, fail_code=fail_code,
            fail_message=MINIMAX_MESSAGES.get(fail_code, "generation failed") if fail else None,
            callback_url=sub.callback_url, idempotency_key=idempotency_key,
            file_id=new_minimax_id() if minimax else None, watermark=sub.watermark,
            cost=round(config.price_per_second.get(sub.resolution, 0.08) * sub.duration, 4),
            notes=notes, base_url=base_url,
        )
        self.state.add_task(task)
        if fail_code is None:  # a task doomed to fail is never rendered
            assert self.renderer is not None
            self.renderer.submit(task, sub, cheap=config.cheap, preset=config.render_preset)
        if sub.callback_url and self.sender is not None:
            self.sender.follow(task)
        return task

    def next_submit_shape(self) -> str:
        shape = self._config.apimart_submit_shape
        if shape == "alternate":
            shape = "list" if self._submit_count % 2 == 0 else "object"
        self._submit_count += 1
        return shape

    # -- signed links ----------------------------------------------------------------
    def link(self, task: Task, base_url: str, route: str = "download") -> tuple[str, int]:
        """A signed, expiring URL for the task's file (maybe already expired, by fault)."""
        now = time.time()
        if self.dice.roll("expired_link", self._config.expired_link_rate):
            expires = int(now) - 60
        else:
            expires = int(now + self._config.link_ttl_seconds)
        sig = self.signature(route, task.file_token, expires)
        base = (self._config.public_base_url or base_url).rstrip("/")
        query = urlencode({"expires": expires, "sig": sig})
        return f"{base}/{DOWNLOAD_ROUTES[route]}/{task.file_token}.mp4?{query}", expires

    def signature(self, route: str, token: str, expires: int) -> str:
        message = f"{route}:{token}:{expires}".encode()
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()[:32]

    def check_signature(self, route: str, token: str, expires: str | None,
                        sig: str | None) -> str | None:
        """None when valid, else "bad_signature" or "link_expired"."""
        try:
            when = int(expires or "")
        except ValueError:
            return "bad_signature"
        if not sig or not hmac.compare_digest(sig, self.signature(route, token, when)):
            return "bad_signature"
        return "link_expired" if when < time.time() else None

    # -- APIMart bodies --------------------------------------------------------------
    def apimart_submit_body(self, task: Task, *, versioned: bool = False) -> dict[str, Any]:
        """The submit answer: the 2026-07-27 shape (sent with HTTP 202) or a legacy one."""
        if versioned:
            return {"code": 202, "data": {"id": task.id, "object": "generation.task",
                                          "status": "queued"},
                    "request_id": f"req_{secrets.token_hex(8)}"}
        if self.next_submit_shape() == "list":
            return {"code": 200, "data": [{"status": "submitted", "task_id": task.id}]}
        return {"code": 200, "data": {"id": task.id, "status": "pending", "progress": 0,
                                      "task_info": {"estimated_time": task.estimated_time}}}

    def apimart_status_body(self, task: Task, base_url: str, *,
                            without_url: bool = False) -> dict[str, Any]:
        phase, progress = task.phase()
        data: dict[str, Any] = {
            "id": task.id, "status": self._word(phase, _APIMART_STATUS[phase]),
            "progress": progress, "created": int(task.created_at),
            "estimated_time": task.estimated_time,
        }
        field = self._config.apimart_cost_field
        if field in ("cost", "both"):
            data["cost"] = task.cost
        if field in ("credits_cost", "both") and task.cost is not None:
            data["credits_cost"] = round(task.cost * 10, 4)  # 10 credits = 1 USD
        if phase is Phase.COMPLETED and without_url:
            data["completed"] = int(task.completed_at or time.time())
        elif phase is Phase.COMPLETED:
            url, expires = self.link(task, base_url)
            completed = task.completed_at or time.time()
            data["result"] = {"videos": [{"url": [url], "expires_at": expires}]}
            data["completed"] = int(completed)
            data["actual_time"] = round(completed - task.created_at)
        elif phase is Phase.FAILED:
            code, message = task.failure or (1000, "failed")
            data["error"] = apimart_error(code, message, failure_type(code))["error"]
        return {"code": 200, "data": data}

    def apimart_callback_body(self, task: Task) -> dict[str, Any]:
        return self.apimart_status_body(task, task.base_url)

    def _word(self, phase: Phase, word: str) -> str:
        """The status word, or the configured unknown word while the task runs."""
        unknown = self._config.unknown_status_word
        return unknown if unknown and not phase.terminal else word

    # -- MiniMax bodies --------------------------------------------------------------
    def minimax_query_body(self, task: Task, status: str | None = None, *,
                           without_file_id: bool = False) -> dict[str, Any]:
        phase, _ = task.phase()
        body: dict[str, Any] = {"task_id": task.id,
                                "status": status or self._word(phase, _MINIMAX_STATUS[phase])}
        if phase is Phase.COMPLETED:
            body.update(video_width=task.width, video_height=task.height)
            if not without_file_id:
                body["file_id"] = task.file_id
        if phase is Phase.FAILED:
            code, message = task.failure or (1000, "failed")
            body["base_resp"] = minimax_base(code, message)
        else:
            body["base_resp"] = minimax_base(0)
        return body

    def minimax_callback_body(self, task: Task, event: str) -> dict[str, Any]:
        """Query-shaped, with the lowercase statuses callbacks use."""
        body = self.minimax_query_body(task, event)
        if event != "success":
            for name in ("file_id", "video_width", "video_height"):
                body.pop(name, None)
        if event != "failed":
            body["base_resp"] = minimax_base(0)
        return body

    def minimax_file_body(self, task: Task, base_url: str, *,
                          without_url: bool = False) -> dict[str, Any]:
        file: dict[str, Any] = {
            "file_id": task.file_id,
            "bytes": 0 if self._config.file_bytes_zero else (task.size or 0),
            "created_at": int(task.render_finished_at or task.created_at),
            "filename": "output_aigc.mp4", "purpose": "video_generation",
        }
        if not without_url:
            file["download_url"], _ = self.link(task, base_url, "download")
            file["backup_download_url"], _ = self.link(task, base_url, "backup")
        return {"file": file, "base_resp": minimax_base(0)}


def _camera(prompt: str) -> tuple[tuple[tuple[str, ...], ...], list[str]]:
    """Camera commands as plain strings; an unknown command is prompt text, not an error.

    The real provider does not reject ``[Fly away]``: it just does not move the camera.
    """
    from hailuo.prompts import parse_camera_commands

    try:
        groups = parse_camera_commands(prompt)
    except InvalidRequestError as exc:
        return (), [f"camera commands ignored: {exc.message}"]
    return tuple(tuple(str(c) for c in group) for group in groups), []

