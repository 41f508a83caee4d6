"""The provider's side of callbacks: MiniMax's challenge handshake, APIMart's retries.

Why follow each task with a small coroutine: a task's status is computed from time, so
there is no "status changed" event to hook; a 50 ms poll per task with a callback is
cheap and keeps the deliveries in order (challenge, then processing, then the end).
Deliveries are logged (``/_sim/callbacks``) so tests can assert on what was sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

import httpx

from hailuo.capabilities import Provider
from hailuo.simulator.config import SimulatorConfig
from hailuo.simulator.faults import Dice
from hailuo.simulator.state import Phase, SimState, Task

log = logging.getLogger("hailuo.simulator")

POLL_SECONDS = 0.05


class CallbackSender:
    """Delivers callbacks from background tasks on the server's event loop."""

    def __init__(
        self,
        state: SimState,
        config: Callable[[], SimulatorConfig],
        dice: Dice,
        client: httpx.AsyncClient,
        apimart_body: Callable[[Task], dict[str, Any]],
        minimax_body: Callable[[Task, str], dict[str, Any]],
    ) -> None:
        self.state = state
        self.config = config
        self.dice = dice
        self.client = client
        self.apimart_body = apimart_body
        self.minimax_body = minimax_body
        self._running: set[asyncio.Task[None]] = set()

    def follow(self, task: Task) -> None:
        """Start delivering callbacks for ``task`` (it must have a callback URL)."""
        follower = (self._follow_apimart if task.provider is Provider.APIMART
                    else self._follow_minimax)
        job = asyncio.get_running_loop().create_task(follower(task))
        self._running.add(job)
        job.add_done_callback(self._running.discard)

    def follow_v2(self, task: Task, body: Callable[[Task], dict[str, Any]]) -> None:
        """Start delivering MiniMax v2 callbacks for ``task``: the challenge, then a
        query-shaped ``{"task": {...}}`` (``body(task)``) on each status change."""
        job = asyncio.get_running_loop().create_task(self._follow_v2(task, body))
        self._running.add(job)
        job.add_done_callback(self._running.discard)

    async def _follow_v2(self, task: Task, body: Callable[[Task], dict[str, Any]]) -> None:
        url = task.callback_url
        assert url
        if not await self._challenge(task, url):
            return
        last = None
        timeout = self.config().callback_timeout
        while True:
            current = body(task)
            word = current.get("task", {}).get("status")
            if word != last and word != "queued":  # queued is where every task starts
                last = word
                await self._post(task, url, current, str(word), timeout)
                if self.dice.roll("callback_duplicate", self.config().callback_duplicate_rate):
                    await self._post(task, url, current, f"{word} (duplicate)", timeout)
            if word in ("succeeded", "failed", "cancelled", "expired"):
                return
            await asyncio.sleep(POLL_SECONDS)

    async def _challenge(self, task: Task, url: str) -> bool:
        """MiniMax's handshake: the receiver must echo the challenge."""
        challenge = secrets.token_hex(16)
        status, answer = await self._post(task, url, {"challenge": challenge}, "challenge",
                                          self.config().challenge_timeout)
        echoed = isinstance(answer, dict) and answer.get("challenge") == challenge
        if status != 200 or not echoed:
            log.info("callback %s for %s: challenge not echoed; no callbacks sent", url, task.id)
            self._record(task, url, "abandoned", None, None, "challenge not echoed")
        return status == 200 and echoed

    async def close(self) -> None:
        for job in list(self._running):
            job.cancel()
        for job in list(self._running):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await job

    async def _follow_minimax(self, task: Task) -> None:
        url = task.callback_url
        assert url
        if not await self._challenge(task, url):
            return
        sent: set[str] = set()
        while True:
            phase = task.phase()[0]
            due = []
            if phase is Phase.PROCESSING or phase.terminal:
                due.append("processing")
            if phase is Phase.COMPLETED:
                due.append("success")
            elif phase is Phase.FAILED:
                due.append("failed")
            for event in due:
                if event in sent:
                    continue
                sent.add(event)
                body = self.minimax_body(task, event)
                timeout = self.config().callback_timeout
                await self._post(task, url, body, event, timeout)
                if self.dice.roll("callback_duplicate", self.config().callback_duplicate_rate):
                    await self._post(task, url, body, f"{event} (duplicate)", timeout)
            if phase.terminal:
                return
            await asyncio.sleep(POLL_SECONDS)

    async def _follow_apimart(self, task: Task) -> None:
        assert task.callback_url
        url = task.callback_url.rstrip("/") + "/callback"
        while not task.phase()[0].terminal:
            await asyncio.sleep(POLL_SECONDS)
        body = self.apimart_body(task)
        config = self.config()
        delays = list(config.callback_retry_delays)
        delivered = False
        for attempt in range(len(delays) + 1):
            status, _ = await self._post(task, url, body, f"status attempt {attempt + 1}",
                                         config.callback_timeout)
            if status is not None and 200 <= status < 300:
                delivered = True
                break
            if status is not None and 400 <= status < 500:
                break  # a 4xx means the receiver refuses: APIMart stops retrying
            if attempt < len(delays):
                await asyncio.sleep(delays[attempt])
        if delivered and self.dice.roll("callback_duplicate", config.callback_duplicate_rate):
            await self._post(task, url, body, "status (duplicate)", config.callback_timeout)

    async def _post(self, task: Task, url: str, body: dict[str, Any], kind: str,
                    timeout: float) -> tuple[int | None, Any]:
        try:
            response = await self.client.post(url, json=body, timeout=timeout)
        except httpx.HTTPError as exc:
            self._record(task, url, kind, None, body, f"{type(exc).__name__}: {exc}")
            return None, None
        try:
            answer = response.json()
        except ValueError:
            answer = None
        self._record(task, url, kind, response.status_code, body, None)
        return response.status_code, answer

    def _record(self, task: Task, url: str, kind: str, status: int | None,
                body: dict[str, Any] | None, error: str | None) -> None:
        self.state.log_callback({
            "time": time.time(), "task_id": task.id, "provider": str(task.provider),
            "url": url, "kind": kind, "status": status, "error": error, "body": body,
        })
