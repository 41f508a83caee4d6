"""Issue 13 part C.7: the callback receiver against hostile callers, over real HTTP.

A random token by default; unparseable callbacks wake a wait at most once per interval;
a forged early "completed" cannot make the real callback be dropped as its duplicate; the
number and the lifetime of open connections are capped; task ids must be safe.
"""

from __future__ import annotations

import contextlib
import socket
import time
from urllib.parse import urlsplit

import httpx
import pytest

from hailuo.callbacks import CallbackReceiver, wait_with_callbacks
from hailuo.client import HailuoClient, PollPolicy
from hailuo.models import Job, JobStatus, VideoRequest
from hailuo.simulator import run_simulator

#: No scheduled poll comes within these tests: only a callback can end a wait in time.
SLOW_POLL = PollPolicy(min_interval=30.0, max_interval=60.0)


def done_body(task_id: str, url: str = "https://cdn.example/forged.mp4") -> dict:
    return {"code": 200, "data": {"id": task_id, "status": "completed", "progress": 100,
                                  "result": {"videos": [{"url": [url]}]}}}


def test_receiver_has_a_random_token_by_default():
    with CallbackReceiver(port=0) as one, CallbackReceiver(port=0) as two:
        assert one.token and two.token and one.token != two.token
        assert len(one.token) >= 24
        assert f"token={one.token}" in one.url_for()
        one.register("task_abc")
        with httpx.Client(timeout=3) as http:
            assert http.post(one.url + "/callback", json=done_body("task_abc")).status_code == 403
            assert http.post(two.url_for() + "/callback",
                             json=done_body("task_abc")).status_code == 200
            assert http.post(one.url_for() + "/callback",
                             json=done_body("task_abc")).status_code == 200
        assert one.latest("task_abc").status is JobStatus.COMPLETED
    with CallbackReceiver(port=0, insecure_no_token=True) as open_rx:
        assert open_rx.token is None and "token" not in open_rx.url_for()


def test_unparseable_callbacks_wake_a_wait_at_most_once_per_interval():
    with CallbackReceiver(port=0, unparseable_wake_interval=5.0) as rx:
        event = rx.register("task_abc")
        junk = {"code": 200, "data": {"id": "task_abc", "status": "processing",
                                      "estimated_time": "soon-ish"}}
        with httpx.Client(timeout=3) as http:
            answers = [http.post(rx.url_for(), json=junk).status_code for _ in range(25)]
        assert set(answers) == {400}
        assert event.is_set()
        stats = rx.stats()
        assert stats["unparseable"] == 25
        assert stats["woken"] == 1 and stats["unparseable_not_woken"] == 24


def test_a_poll_contradicting_a_callback_makes_its_repeat_wake_again():
    """Even a forged body identical to the real one cannot swallow the real one."""
    with CallbackReceiver(port=0) as rx:
        event = rx.register("task_abc")
        body = done_body("task_abc", "https://cdn.example/real.mp4")
        with httpx.Client(timeout=3) as http:
            assert http.post(rx.url_for(), json=body).json() == {"ok": True}  # forged, early
            event.clear()
            rx.confirm(Job(task_id="task_abc", provider="apimart",
                           status=JobStatus.PROCESSING))  # the poll says: not done yet
            assert rx.latest("task_abc").status is JobStatus.PROCESSING
            assert http.post(rx.url_for(), json=body).json() == {"ok": True}  # the real one
            assert event.is_set()
            event.clear()
            rx.confirm(Job(task_id="task_abc", provider="apimart",
                           status=JobStatus.COMPLETED))
            assert http.post(rx.url_for(), json=body).json()["duplicate"] is True
            assert not event.is_set()  # a confirmed status repeated is a true duplicate
        assert rx.stats()["forgotten_unconfirmed"] == 1


def test_forged_early_completed_does_not_swallow_the_real_callback():
    """A forged 'completed' arrives first; the real one must still end the wait at once.
    Polls are 30 s apart and the renudges after the forgery end before the render does,
    so only the genuine callback can end this wait within seconds."""
    with run_simulator(render_seconds=6.0, cheap=True) as sim, \
            CallbackReceiver(port=0) as rx, \
            HailuoClient("apimart", api_key="sk-test-forgery-000", base_url=sim.base_url,
                         poll=SLOW_POLL) as client:
        job = client.submit(VideoRequest(prompt="a lighthouse at dusk",
                                         callback_url=rx.url_for()))
        started = time.monotonic()
        rx.register(job.task_id)  # (wait_with_callbacks registers it again: same event)
        forged = httpx.post(rx.url_for() + "/callback", json=done_body(job.task_id),
                            timeout=3)
        assert forged.status_code == 200
        done = wait_with_callbacks(client, job, rx, timeout=60)
        elapsed = time.monotonic() - started
        assert done.status is JobStatus.COMPLETED
        assert done.video_urls != ["https://cdn.example/forged.mp4"]  # from the poll
        assert elapsed < 15, f"the real callback was dropped: woke after {elapsed:.1f}s"
        assert rx.stats()["duplicates"] == 0
        assert rx.stats()["forgotten_unconfirmed"] >= 1


def test_open_connections_are_capped_and_idle_ones_reaped():
    with CallbackReceiver(port=0, max_connections=3, connection_max_seconds=1.5) as rx:
        host, port = urlsplit(rx.url).hostname, urlsplit(rx.url).port
        idle = []
        for _ in range(3):  # three clients that connect and trickle nothing
            sock = socket.create_connection((host, port), timeout=5)
            sock.sendall(b"POST / HTTP/1.1\r\n")
            idle.append(sock)
        time.sleep(0.2)
        extra = socket.create_connection((host, port), timeout=5)
        answer = extra.recv(1024)
        assert answer.startswith(b"HTTP/1.1 503"), answer
        extra.close()
        assert rx.stats()["refused_connections"] >= 1
        started = time.monotonic()
        for sock in idle:  # the server closes each within connection_max_seconds
            sock.settimeout(5)
            with contextlib.suppress(ConnectionResetError):
                while sock.recv(1024):
                    pass
            sock.close()
        assert time.monotonic() - started < 3
        time.sleep(0.2)
        rx.register("task_abc")
        ok = httpx.post(rx.url_for(), json=done_body("task_abc"), timeout=3)
        assert ok.status_code == 200


@pytest.mark.parametrize("bad", ["../../etc/x", "a/b", "x" * 200, "task\nforged"])
def test_callbacks_with_unsafe_task_ids_are_refused(bad):
    with CallbackReceiver(port=0) as rx:
        answer = httpx.post(rx.url_for(), json=done_body(bad), timeout=3)
        assert answer.status_code == 400
        assert rx.stats()["received"] == 0
