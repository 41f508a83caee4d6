"""MiniMax v2 (H3) callbacks over real HTTP: the simulator POSTs the challenge, then the
query-shaped ``{"task": {...}}`` on each status change (api-contract-v2.md 1.7), and the
``CallbackReceiver`` understands them and wakes the wait at once."""

from __future__ import annotations

import time

import httpx
import pytest

from hailuo.callbacks import CallbackReceiver, detect_provider, wait_with_callbacks
from hailuo.capabilities import Provider
from hailuo.client import HailuoClient, PollPolicy
from hailuo.models import JobStatus, VideoRequest
from hailuo.simulator import run_simulator

KEY = "sim-key-h3-callbacks-0123456789"
V2_RUNNING = {"task": {"id": "424010985738629", "model": "MiniMax-H3", "status": "running",
                       "created_at": 1785125529, "usage": {}, "ratio": "16:9",
                       "task_type": "generation", "modality": "video"}}
V2_DONE = {"task": {**V2_RUNNING["task"], "status": "succeeded",
                    "content": {"url": "https://video-product.cdn.minimax.io/x/output.mp4"}}}
#: Only a callback can end these waits quickly.
SLOW_POLL = PollPolicy(min_interval=30.0, max_interval=60.0)


def test_v2_bodies_are_recognised_and_parsed():
    assert detect_provider(V2_DONE) is Provider.MINIMAX
    with CallbackReceiver(port=0, insecure_no_token=True) as rx:
        event = rx.register("424010985738629")
        with httpx.Client(timeout=3) as http:
            assert http.post(rx.url_for(), json=V2_RUNNING).status_code == 200
            assert http.post(rx.url_for(), json=V2_DONE).status_code == 200
            bad = http.post(rx.url_for(), json={"task": {"id": "424010985738629",
                                                         "status": 7}})
        assert event.is_set()
        latest = rx.latest("424010985738629")
        assert latest is not None and latest.status is JobStatus.COMPLETED
        assert latest.video_urls == ["https://video-product.cdn.minimax.io/x/output.mp4"]
        assert bad.status_code == 400 and rx.stats()["unparseable"] == 1


def test_the_simulator_sends_v2_callbacks_and_the_wait_wakes():
    with run_simulator(render_seconds=1.0, accepted_keys=[KEY]) as sim, \
            CallbackReceiver(port=0) as rx, \
            HailuoClient("minimax", api_key=KEY, base_url=sim.base_url, poll=SLOW_POLL) as client:
        request = VideoRequest(model="MiniMax-H3", prompt="a paper boat", ratio="16:9",
                               duration=4, callback_url=rx.url_for())
        job = client.submit(request)
        started = time.monotonic()
        done = wait_with_callbacks(client, job, rx, timeout=60)
        assert done.status is JobStatus.COMPLETED and done.video_urls
        assert time.monotonic() - started < 15  # woken, not the 30 s poll
        deadline = time.monotonic() + 10  # the delivery is logged once it was answered
        while True:
            sent = [c for c in sim.callbacks() if c["task_id"] == job.task_id]
            if any(c["kind"] == "succeeded" for c in sent) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert [c["kind"] for c in sent][:1] == ["challenge"]
        assert [c["kind"] for c in sent if c["kind"] != "challenge"] == ["running",
                                                                         "succeeded"]
        assert all(c["status"] == 200 for c in sent)
        final = sent[-1]["body"]["task"]
        assert final["id"] == job.task_id and final["content"]["url"]
        assert rx.stats()["unparseable"] == 0 and rx.stats()["received"] >= 2


@pytest.mark.parametrize("pinned", [None, "minimax"])
def test_a_pinned_or_detecting_receiver_takes_them(pinned):
    with CallbackReceiver(port=0, insecure_no_token=True, provider=pinned) as rx:
        rx.register("424010985738629")
        answer = httpx.post(rx.url_for(), json=V2_DONE, timeout=3)
        assert answer.status_code == 200 and answer.json() == {"ok": True}
