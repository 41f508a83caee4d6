"""CallbackReceiver over real HTTP: handshake, refusals, dedupe, and waking a real wait."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from hailuo.callbacks import CallbackReceiver, detect_provider, wait_with_callbacks
from hailuo.capabilities import Provider
from hailuo.client import HailuoClient, PollPolicy
from hailuo.models import JobStatus, VideoRequest
from hailuo.simulator import run_simulator

APIMART_DONE = {"code": 200, "data": {
    "id": "task_abc", "status": "completed", "progress": 100,
    "result": {"videos": [{"url": ["https://cdn.example/v.mp4"], "expires_at": 1999999999}]}}}
MINIMAX_PROCESSING = {"task_id": "1234567", "status": "processing",
                      "base_resp": {"status_code": 0, "status_msg": "success"}}
MINIMAX_DONE = {"task_id": "1234567", "status": "success", "file_id": "998877",
                "base_resp": {"status_code": 0, "status_msg": "success"}}

#: A poll interval no test waits for: only a callback can end these waits quickly.
SLOW_POLL = PollPolicy(min_interval=30.0, max_interval=60.0)


@pytest.fixture
def receiver():
    # These tests post without the (default, random) token on purpose.
    with CallbackReceiver(port=0, insecure_no_token=True) as rx:
        yield rx


def test_starts_fast_and_stops_cleanly():
    started = time.monotonic()
    rx = CallbackReceiver(port=0).start()
    try:
        assert time.monotonic() - started < 0.5
        url = rx.url
        assert url.startswith("http://127.0.0.1:")
        assert httpx.get(url, timeout=2).json() == {"status": "ok"}
    finally:
        rx.stop()
    assert not rx.running
    with pytest.raises(httpx.ConnectError):
        httpx.get(url, timeout=1)


def test_challenge_is_echoed_quickly(receiver):
    with httpx.Client(timeout=3) as http:
        started = time.monotonic()
        answer = http.post(receiver.url_for(), json={"challenge": "c0ffee-42"})
        took = time.monotonic() - started
    assert answer.status_code == 200
    assert answer.json() == {"challenge": "c0ffee-42"}
    assert took < 1.0  # MiniMax allows 3 s
    assert receiver.stats()["challenges"] == 1


def test_status_bodies_of_both_providers_wake_and_are_kept(receiver):
    apimart = receiver.register("task_abc")
    minimax = receiver.register("1234567")
    with httpx.Client(timeout=3) as http:
        assert http.post(receiver.url + "/callback", json=APIMART_DONE).status_code == 200
        assert http.post(receiver.url, json=MINIMAX_PROCESSING).status_code == 200
    assert apimart.is_set() and minimax.is_set()
    job = receiver.latest("task_abc")
    assert job.provider is Provider.APIMART and job.status is JobStatus.COMPLETED
    assert job.video_urls == ["https://cdn.example/v.mp4"]
    assert receiver.latest("1234567").status is JobStatus.PROCESSING
    minimax.clear()
    with httpx.Client(timeout=3) as http:
        http.post(receiver.url, json=MINIMAX_DONE)
        http.post(receiver.url, json=MINIMAX_PROCESSING | {"note": "late, out of order"})
    latest = receiver.latest("1234567")
    assert latest.status is JobStatus.COMPLETED and latest.file_id == "998877"
    assert minimax.is_set()


def test_duplicates_are_dropped_and_counted(receiver):
    event = receiver.register("task_abc")
    with httpx.Client(timeout=3) as http:
        first = http.post(receiver.url + "/callback", json=APIMART_DONE)
        event.clear()
        second = http.post(receiver.url + "/callback", json=APIMART_DONE)
    assert first.status_code == second.status_code == 200
    assert second.json().get("duplicate") is True
    assert not event.is_set()  # the duplicate did not wake anyone
    stats = receiver.stats()
    assert stats["received"] == 2 and stats["duplicates"] == 1


def test_unknown_task_is_acknowledged_and_ignored(receiver):
    answer = httpx.post(receiver.url + "/callback", json=APIMART_DONE, timeout=3)
    assert answer.status_code == 200  # a 2xx, so the provider stops retrying
    assert receiver.latest("task_abc") is None
    assert receiver.stats()["ignored_unknown"] == 1
    # ... but a task registered just after its (fast) callback still learns of it.
    event = receiver.register("task_abc")
    assert event.is_set()
    assert receiver.latest("task_abc").status is JobStatus.COMPLETED


def test_oversized_malformed_and_unknown_shapes_are_refused(receiver):
    receiver.register("task_abc")
    big = {"code": 200, "data": {"id": "task_abc", "status": "completed",
                                 "pad": "x" * (receiver.max_body + 10)}}
    with httpx.Client(timeout=3) as http:
        assert http.post(receiver.url, json=big).status_code == 413
        chunked = http.post(receiver.url, content=iter([b"{", b" " * receiver.max_body, b"}"]))
        assert chunked.status_code == 413
        assert http.post(receiver.url, content=b"{not json").status_code == 400
        assert http.post(receiver.url, content=b"\xff\xfe").status_code == 400
        assert http.post(receiver.url, json=[1, 2]).status_code == 400
        assert http.post(receiver.url, json={"hello": "world"}).status_code == 400
        bad = {"code": 200, "data": {"id": "task_abc", "status": "exploded"}}
        assert http.post(receiver.url, json=bad).status_code == 400
        # still alive and well after all that
        assert http.post(receiver.url, json={"challenge": "x"}).json() == {"challenge": "x"}
    assert receiver.stats()["rejected"] == 7
    assert receiver.stats()["received"] == 0


def test_token_and_path_prefix():
    with CallbackReceiver(port=0, path="/hooks", token="s3cret") as rx:
        url = rx.url_for()
        assert url == f"{rx.url}/hooks?token=s3cret"
        rx.register("task_abc")
        with httpx.Client(timeout=3) as http:
            assert http.post(f"{rx.url}/hooks?token=nope", json=APIMART_DONE).status_code == 403
            assert http.post(f"{rx.url}/hooks", json=APIMART_DONE).status_code == 403
            assert http.post(f"{rx.url}/elsewhere?token=s3cret",
                             json=APIMART_DONE).status_code == 404
            # APIMart appends "/callback" to the webhook string, query and all.
            assert http.post(url + "/callback", json=APIMART_DONE).status_code == 200
            assert http.post(f"{rx.url}/hooks/callback?token=s3cret",
                             json=APIMART_DONE).status_code == 200
            # a reverse proxy may forward under an outer prefix
            assert http.post(f"{rx.url}/api/hooks?token=s3cret",
                             json=MINIMAX_DONE).status_code == 200
        assert rx.latest("task_abc").status is JobStatus.COMPLETED
        assert rx.stats()["rejected"] == 3


def test_detect_provider_and_pinned_dialect():
    assert detect_provider(APIMART_DONE) is Provider.APIMART
    assert detect_provider(MINIMAX_DONE) is Provider.MINIMAX
    assert detect_provider({"x": 1}) is None
    with CallbackReceiver(port=0, provider="minimax", insecure_no_token=True) as rx:
        rx.register("task_abc")
        answer = httpx.post(rx.url, json=APIMART_DONE, timeout=3)
        assert answer.status_code == 400  # an APIMart body is not a MiniMax status
    assert rx.latest("task_abc") is None


def test_concurrent_callbacks_do_not_break_the_server(receiver):
    ids = [f"task_{i}" for i in range(40)]
    events = [receiver.register(i) for i in ids]

    def post(task_id: str) -> None:
        body = json.loads(json.dumps(APIMART_DONE))
        body["data"]["id"] = task_id
        with httpx.Client(timeout=5) as http:
            assert http.post(receiver.url + "/callback", json=body).status_code == 200

    threads = [threading.Thread(target=post, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert all(e.is_set() for e in events)
    assert receiver.stats()["received"] == 40


@pytest.mark.parametrize("provider", ["minimax", "apimart"])
def test_callback_ends_a_slow_poll_wait_within_about_a_second(provider):
    """Poll intervals of 30 s: only the simulator's callback can end this wait in time."""
    with run_simulator(render_seconds=2.0, cheap=True) as sim, \
            CallbackReceiver(port=0, token="tok-123") as rx, \
            HailuoClient(provider, api_key="sk-test", base_url=sim.base_url,
                         poll=SLOW_POLL) as client:
        started = time.monotonic()
        job = client.submit(VideoRequest(prompt="a lighthouse at dusk [Push in]",
                                         callback_url=rx.url_for()))
        updates = []
        done = wait_with_callbacks(client, job, rx, timeout=60, on_update=updates.append)
        returned_wall, elapsed = time.time(), time.monotonic() - started
        assert done.status is JobStatus.COMPLETED and done.video_urls
        task = sim.task(job.task_id)
        finished = task["completed_at"]
        assert finished is not None
        lag = returned_wall - finished
        assert lag < 1.5, f"woke {lag:.2f}s after completion"
        assert elapsed < 15  # the next scheduled poll would have been ~30 s in
        # the simulator logs a delivery after our answer, which may be after the wake-up
        deadline = time.monotonic() + 3
        while not (deliveries := [c for c in sim.callbacks() if c["task_id"] == job.task_id]):
            assert time.monotonic() < deadline, "the simulator logged no callback"
            time.sleep(0.02)
        assert deliveries and all(c["status"] == 200 for c in deliveries)
        if provider == "minimax":
            assert deliveries[0]["kind"] == "challenge"
        else:
            assert deliveries[0]["url"].endswith("?token=tok-123/callback")
        assert rx.stats()["received"] >= 1
        assert job.task_id not in rx.registered()  # unregistered after the wait
        polls = sim.requests("status")
        assert 1 < len(polls) <= 5, polls  # woken polls only, no busy loop
        print(f"{provider}: completion -> wait returned in {lag * 1000:.0f} ms")


def test_polling_still_finishes_when_no_callback_arrives():
    with run_simulator(render_seconds=0.5, cheap=True) as sim, \
            CallbackReceiver(port=0) as rx, \
            HailuoClient("apimart", api_key="sk-test", base_url=sim.base_url,
                         poll=PollPolicy(min_interval=0.2, max_interval=0.5)) as client:
        job = client.submit(VideoRequest(prompt="rain on a window"))  # receiver never told
        done = wait_with_callbacks(client, job, rx, timeout=30)
        assert done.status is JobStatus.COMPLETED
        assert rx.stats()["received"] == 0
        assert sim.callbacks() == []
