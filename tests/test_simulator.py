"""The simulator over real HTTP, with plain httpx: both dialects, every fault's shape.

Why plain httpx and not the project's client: these tests pin down what the *provider*
does, so a client bug cannot hide a simulator bug (or the other way round). Most tests
share one cheap-mode server (one template render per size) and reset it between tests.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import av
import httpx
import pytest
from PIL import Image

from hailuo.simulator import SimulatorConfig, SimulatorHandle, run_simulator
from hailuo.simulator.config import STARTUP_ONLY

KEY = "sk-sim-TOPSECRET-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
APIMART_T2V = {"model": "MiniMax-Hailuo-02", "prompt": "a lighthouse at dusk [Pan left]",
               "resolution": "512p", "duration": 5}
MINIMAX_T2V = {"model": "MiniMax-Hailuo-02", "prompt": "a fox in snow [Zoom in]",
               "resolution": "768P", "duration": 6}
TRANSPORT_ERRORS = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)
BASE = SimulatorConfig(render_seconds=0.3, cheap=True, seed=1234)
LIVE_DEFAULTS = {k: v for k, v in BASE.model_dump().items() if k not in STARTUP_ONLY}


# -- helpers ---------------------------------------------------------------------------
def image_data_url(size: tuple[int, int] = (640, 480), fmt: str = "JPEG") -> str:
    image = Image.new("RGB", size)
    for x in range(0, size[0], 40):  # some structure, not a flat colour
        image.paste((x % 255, 90, 255 - x % 255), (x, 0, x + 20, size[1]))
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(buf.getvalue()).decode()}"


def apimart_task_id(body: dict[str, Any]) -> str:
    data = body["data"]
    return data[0]["task_id"] if isinstance(data, list) else data["id"]


def wait_apimart(client: httpx.Client, task_id: str, timeout: float = 30) -> tuple[dict, list]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/v1/tasks/{task_id}").json()
        seen.append(body["data"]["status"])
        if body["data"]["status"] in ("completed", "failed"):
            return body, seen
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} not done; saw {seen[-5:]}")


def wait_minimax(client: httpx.Client, task_id: str, timeout: float = 30) -> tuple[dict, list]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get("/v1/query/video_generation", params={"task_id": task_id}).json()
        seen.append(body["status"])
        if body["status"] in ("Success", "Fail"):
            return body, seen
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} not done; saw {seen[-5:]}")


def probe(data: bytes) -> dict[str, Any]:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return {"width": stream.codec_context.width, "height": stream.codec_context.height,
                "fps": float(stream.average_rate), "frames": frames,
                "duration": frames / float(stream.average_rate)}


def completed_apimart(sim: SimulatorHandle, client: httpx.Client) -> dict[str, Any]:
    task_id = apimart_task_id(client.post("/v1/videos/generations", json=APIMART_T2V).json())
    body, _ = wait_apimart(client, task_id)
    assert body["data"]["status"] == "completed"
    return body["data"]


class Receiver:
    """A tiny callback endpoint: records every POST, answers as ``respond`` says."""

    def __init__(self, respond: Callable[[str, dict], tuple[int, dict]]) -> None:
        self.posts: list[tuple[str, dict]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.posts.append((self.path, body))
                status, answer = respond(self.path, body)
                raw = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, predicate: Callable[[list], bool], timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self.posts):
            if time.monotonic() > deadline:
                raise AssertionError(f"callbacks seen: {self.posts}")
            time.sleep(0.02)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- fixtures --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server() -> Iterator[SimulatorHandle]:
    with run_simulator(BASE) as handle:
        yield handle


@pytest.fixture
def sim(server: SimulatorHandle) -> SimulatorHandle:
    server.configure(**LIVE_DEFAULTS)
    server.reset()
    return server


@pytest.fixture
def client(sim: SimulatorHandle) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.base_url, headers=AUTH, timeout=10) as c:
        yield c


# -- happy paths with real renders -----------------------------------------------------
def test_both_providers_end_to_end_with_real_renders() -> None:
    """Submit -> progress -> completed -> a real MP4 at the right size and duration."""
    started = time.monotonic()
    with run_simulator(render_seconds=0.3) as sim:
        assert time.monotonic() - started < 1.0
        with httpx.Client(base_url=sim.base_url, headers=AUTH, timeout=30) as client:
            image = image_data_url((640, 480))
            a = client.post("/v1/videos/generations", json=APIMART_T2V)
            m = client.post("/v1/video_generation", json={
                "model": "MiniMax-Hailuo-02", "prompt": "the scene comes alive [Push in]",
                "first_frame_image": image, "resolution": "512P", "duration": 6})
            assert a.status_code == 200 and m.status_code == 200
            assert m.json()["base_resp"] == {"status_code": 0, "status_msg": "success"}
            assert m.json()["task_id"].isdigit()
            a_id = apimart_task_id(a.json())
            assert a_id.startswith("task_01") and len(a_id) == 31

            # look at MiniMax once right away: waiting for APIMart first could let it finish
            m_first = client.get("/v1/query/video_generation",
                                 params={"task_id": m.json()["task_id"]}).json()["status"]
            a_body, a_seen = wait_apimart(client, a_id)
            m_body, m_seen = wait_minimax(client, m.json()["task_id"])

            # APIMart: pending/processing with progress, then completed with a signed link
            assert a_seen[0] in ("pending", "processing") and a_seen[-1] == "completed"
            data = a_body["data"]
            assert data["progress"] == 100 and data["cost"] == pytest.approx(0.2)
            assert {"created", "completed", "estimated_time", "actual_time"} <= set(data)
            video = data["result"]["videos"][0]
            assert isinstance(video["url"], list) and video["expires_at"] > time.time()
            got = probe(httpx.get(video["url"][0], timeout=30).content)
            assert (got["width"], got["height"]) == (912, 512)
            assert got["duration"] == pytest.approx(5, abs=0.1)

            # MiniMax: Processing -> Success, then files/retrieve, then the download
            assert m_first in ("Preparing", "Queueing", "Processing") and m_seen[-1] == "Success"
            from hailuo.simulator.render import output_size

            raw_image = base64.b64decode(image.split(",", 1)[1])
            expected = output_size("512p", raw_image)
            assert (m_body["video_width"], m_body["video_height"]) == expected
            file = client.get("/v1/files/retrieve", params={"file_id": m_body["file_id"]}).json()
            assert file["base_resp"]["status_code"] == 0
            meta = file["file"]
            assert meta["filename"] == "output_aigc.mp4" and meta["purpose"] == "video_generation"
            content = httpx.get(meta["download_url"], timeout=30).content
            assert meta["bytes"] == len(content)
            assert httpx.get(meta["backup_download_url"]).content == content
            got = probe(content)
            assert (got["width"], got["height"]) == expected
            assert got["duration"] == pytest.approx(6, abs=0.1)

            task = sim.task(a_id)
            assert task["render_finished_at"] >= task["created_at"]
            assert task["camera"] == [["Pan left"]]


def test_cheap_mode_restamps_distinct_files(sim: SimulatorHandle, client: httpx.Client) -> None:
    first, second = completed_apimart(sim, client), completed_apimart(sim, client)
    a = httpx.get(first["result"]["videos"][0]["url"][0]).content
    b = httpx.get(second["result"]["videos"][0]["url"][0]).content
    assert a != b
    assert probe(a)["frames"] == probe(b)["frames"]


def test_queue_phase_then_processing(sim: SimulatorHandle, client: httpx.Client) -> None:
    sim.configure(queue_seconds=0.4, render_seconds=0.4)
    task_id = client.post("/v1/video_generation", json=MINIMAX_T2V).json()["task_id"]
    _, seen = wait_minimax(client, task_id)
    assert seen[0] in ("Preparing", "Queueing")
    assert seen.index("Processing") > 0 and seen[-1] == "Success"


@pytest.mark.parametrize("shape", ["list", "object"])
def test_apimart_submit_shapes(sim: SimulatorHandle, client: httpx.Client, shape: str) -> None:
    sim.configure(apimart_submit_shape=shape)
    body = client.post("/v1/videos/generations", json=APIMART_T2V).json()
    assert body["code"] == 200
    if shape == "list":
        assert body["data"][0]["status"] == "submitted"
        assert body["data"][0]["task_id"].startswith("task_")
    else:
        assert body["data"]["status"] == "pending" and body["data"]["progress"] == 0
        assert body["data"]["task_info"]["estimated_time"] >= 1


def test_apimart_submit_shapes_alternate(sim: SimulatorHandle, client: httpx.Client) -> None:
    kinds = {type(client.post("/v1/videos/generations", json=APIMART_T2V).json()["data"])
             for _ in range(2)}
    assert kinds == {list, dict}


def test_apimart_metadata_variant_accepted(sim: SimulatorHandle, client: httpx.Client) -> None:
    body = {"model": "MiniMax-Hailuo-02", "prompt": "rain", "duration": 5,
            "metadata": {"resolution": "512p", "watermark": False, "prompt_optimizer": True}}
    answer = client.post("/v1/videos/generations", json=body)
    assert answer.status_code == 200
    assert sim.task(apimart_task_id(answer.json()))["resolution"] == "512p"


# -- auth ------------------------------------------------------------------------------
def test_auth_error_shapes(sim: SimulatorHandle) -> None:
    sim.configure(accepted_keys=[KEY])
    url = sim.base_url
    wrong = {"Authorization": "Bearer sk-wrong"}
    r = httpx.post(f"{url}/v1/videos/generations", json=APIMART_T2V, headers=wrong)
    assert r.status_code == 401
    assert r.json() == {"error": {"code": 401, "message": "Invalid API key",
                                  "type": "authentication_error"}}
    assert httpx.get(f"{url}/v1/tasks/task_x").status_code == 401
    r = httpx.post(f"{url}/v1/video_generation", json=MINIMAX_T2V, headers=wrong)
    assert r.status_code == 200 and r.json()["base_resp"]["status_code"] == 2049
    r = httpx.post(f"{url}/v1/video_generation", json=MINIMAX_T2V)
    assert r.status_code == 200 and r.json()["base_resp"]["status_code"] == 1004
    r = httpx.post(f"{url}/v1/video_generation", json=MINIMAX_T2V, headers=AUTH)
    assert r.json()["base_resp"]["status_code"] == 0
    assert [e["auth"] for e in sim.requests("submit")] == ["rejected", "rejected", "missing",
                                                           "accepted"]
    assert sim.submits() == 1


# -- provider validation ---------------------------------------------------------------
APIMART_INVALID = [
    ({"model": "MiniMax-Hailuo-02", "prompt": "x", "resolution": "1080p", "duration": 10},
     "duration"),
    ({"model": "S2V-01", "prompt": "x"}, "S2V-01"),
    ({"model": "MiniMax-Hailuo-2.3", "prompt": "x", "first_frame_image": image_data_url(),
      "last_frame_image": image_data_url()}, "first-last-frame"),
    ({"model": "MiniMax-Hailuo-02", "prompt": "x", "resolution": "768P"}, "resolution"),
    ({"model": "MiniMax-Hailuo-02", "prompt": "x", "callback_url": "http://h"}, "callback_url"),
    ({"model": "MiniMax-Hailuo-02", "prompt": "x" * 2001}, "2000"),
    ({"model": "MiniMax-Hailuo-02"}, "prompt"),
    ({"model": "MiniMax-Hailuo-02", "prompt": "x", "duration": "5"}, "duration"),
    ({"model": "MiniMax-Hailuo-02", "prompt": "x", "first_frame_image":
      image_data_url((640, 480))}, "POST /v1/uploads/images"),
    ({"model": "MiniMax-Hailuo-02", "prompt": "x", "first_frame_image": "/etc/passwd"},
     "URL"),
]


@pytest.mark.parametrize(("body", "needle"), APIMART_INVALID)
def test_apimart_rejects_like_the_provider(sim: SimulatorHandle, client: httpx.Client,
                                           body: dict, needle: str) -> None:
    r = client.post("/v1/videos/generations", json=body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == 400 and error["type"] == "invalid_request_error"
    assert needle in error["message"]
    assert sim.submits() == 0


MINIMAX_INVALID = [
    ({"model": "MiniMax-Hailuo-2.3-Fast", "prompt": "x"}, "text-to-video"),
    ({"model": "MiniMax-Hailuo-02", "prompt": "x", "resolution": "1080P", "duration": 10},
     "duration"),
    ({"model": "MiniMax-Hailuo-02", "prompt": "x", "resolution": "512P"}, "512P"),
    ({"model": "MiniMax-Hailuo-02", "prompt": "x", "resolution": "768p"}, "resolution"),
    ({"model": "MiniMax-Hailuo-2.3", "prompt": "x", "first_frame_image": image_data_url(),
      "last_frame_image": image_data_url()}, "first-last-frame"),
    ({"model": "MiniMax-Hailuo-02", "prompt": "x", "webhook": "http://h"}, "webhook"),
    ({"model": "S2V-01", "prompt": "x", "subject_reference": [{"type": "face", "image": []}]},
     "subject_reference"),
    ({"model": "T2V-01", "prompt": "x", "resolution": "1080P"}, "720P"),
]


@pytest.mark.parametrize(("body", "needle"), MINIMAX_INVALID)
def test_minimax_rejects_like_the_provider(sim: SimulatorHandle, client: httpx.Client,
                                           body: dict, needle: str) -> None:
    r = client.post("/v1/video_generation", json=body)
    assert r.status_code == 200
    base = r.json()["base_resp"]
    assert base["status_code"] == 2013 and base["status_msg"].startswith("invalid params")
    assert needle in base["status_msg"]
    assert sim.submits() == 0


def test_minimax_subject_reference_and_image_url(sim: SimulatorHandle,
                                                 client: httpx.Client) -> None:
    """S2V-01 with the subject image given as an http URL the simulator fetches itself."""
    raw = base64.b64decode(image_data_url((512, 512), "PNG").split(",", 1)[1])
    receiver_bytes = {"/face.png": raw}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            data = receiver_bytes.get(self.path)
            self.send_response(200 if data else 404)
            self.send_header("Content-Length", str(len(data or b"")))
            self.end_headers()
            self.wfile.write(data or b"")

        def log_message(self, *args: Any) -> None:
            pass

    images = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=images.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{images.server_address[1]}"
        body = {"model": "S2V-01", "prompt": "the character waves",
                "subject_reference": [{"type": "character", "image": [f"{base}/face.png"]}]}
        r = client.post("/v1/video_generation", json=body).json()
        assert r["base_resp"]["status_code"] == 0
        task = sim.task(r["task_id"])
        assert task["mode"] == "subject-reference" and task["resolution"] == "720p"
        missing = {**body, "subject_reference": [{"type": "character",
                                                  "image": [f"{base}/nope.png"]}]}
        r = client.post("/v1/video_generation", json=missing).json()
        assert r["base_resp"]["status_code"] == 2013 and "404" in r["base_resp"]["status_msg"]
    finally:
        images.shutdown()
        images.server_close()


def test_unknown_task_ids(sim: SimulatorHandle, client: httpx.Client) -> None:
    r = client.get("/v1/tasks/task_01NOPE")
    assert r.status_code == 404 and r.json()["error"]["code"] == 404
    r = client.get("/v1/query/video_generation", params={"task_id": "123"})
    assert r.json()["base_resp"]["status_code"] == 2013
    r = client.get("/v1/files/retrieve", params={"file_id": "123"})
    assert r.json()["base_resp"]["status_code"] == 2013


# -- faults ----------------------------------------------------------------------------
def test_rate_limit_both_shapes(sim: SimulatorHandle, client: httpx.Client) -> None:
    sim.configure(rpm=2)
    for _ in range(2):
        assert client.post("/v1/videos/generations", json=APIMART_T2V).status_code == 200
    r = client.post("/v1/videos/generations", json=APIMART_T2V)
    assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limit_error"
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    r = client.post("/v1/video_generation", json=MINIMAX_T2V)  # same key, same window
    assert r.status_code == 200 and r.json()["base_resp"]["status_code"] == 1002
    assert int(r.headers["Retry-After"]) >= 1
    other = {"Authorization": "Bearer sk-another-key"}
    assert httpx.post(f"{sim.base_url}/v1/videos/generations", json=APIMART_T2V,
                      headers=other).status_code == 200
    assert [e["fault"] for e in sim.requests("submit")].count("rate_limited") == 2
    assert sim.submits() == 3


def test_status_rate_limit(sim: SimulatorHandle, client: httpx.Client) -> None:
    sim.configure(status_rpm=1)
    assert client.get("/v1/tasks/task_x").status_code == 404
    r = client.get("/v1/tasks/task_x")
    assert r.status_code == 429 and "Retry-After" in r.headers


def test_server_errors(sim: SimulatorHandle, client: httpx.Client) -> None:
    sim.configure(error_rate=1.0)
    r = client.post("/v1/videos/generations", json=APIMART_T2V)
    assert r.status_code in (500, 502, 503)
    assert r.json()["error"]["code"] == r.status_code
    assert r.json()["error"]["type"] == "server_error"
    r = client.get("/v1/query/video_generation", params={"task_id": "1"})
    assert r.status_code in (500, 502, 503) and r.json()["base_resp"]["status_code"] in (
        1000, 1024, 1033)
    assert sim.submits() == 0


def test_drop_before_handling(sim: SimulatorHandle) -> None:
    sim.configure(drop_before_rate=1.0)
    with pytest.raises(TRANSPORT_ERRORS):
        httpx.post(f"{sim.base_url}/v1/videos/generations", json=APIMART_T2V, headers=AUTH)
    (entry,) = sim.requests("submit")
    assert entry["fault"] == "dropped_before" and entry["status"] is None
    assert not entry["accepted"] and sim.submits() == 0


def test_drop_after_submit_creates_the_task(sim: SimulatorHandle) -> None:
    sim.configure(drop_after_submit_rate=1.0)
    with pytest.raises(TRANSPORT_ERRORS):
        httpx.post(f"{sim.base_url}/v1/video_generation", json=MINIMAX_T2V, headers=AUTH)
    (entry,) = sim.requests("submit")
    assert entry["fault"] == "dropped_after_submit" and entry["accepted"]
    assert sim.submits() == 1
    assert sim.task(entry["task_id"])["provider"] == "minimax"


def test_failed_tasks_carry_the_code(sim: SimulatorHandle, client: httpx.Client) -> None:
    sim.configure(fail_rate=1.0, fail_codes=[1026])
    task_id = apimart_task_id(client.post("/v1/videos/generations", json=APIMART_T2V).json())
    body, _ = wait_apimart(client, task_id)
    assert body["data"]["status"] == "failed"
    assert body["data"]["error"]["code"] == 1026
    assert body["data"]["error"]["type"] == "content_policy_violation"
    assert "result" not in body["data"]
    task_id = client.post("/v1/video_generation", json=MINIMAX_T2V).json()["task_id"]
    body, _ = wait_minimax(client, task_id)
    assert body["status"] == "Fail" and body["base_resp"]["status_code"] == 1026
    assert "file_id" not in body


def test_truncated_download(sim: SimulatorHandle, client: httpx.Client) -> None:
    url = completed_apimart(sim, client)["result"]["videos"][0]["url"][0]
    size = int(httpx.head(url).headers["content-length"])
    sim.configure(truncate_rate=1.0)
    with pytest.raises(TRANSPORT_ERRORS):
        httpx.get(url)
    with httpx.stream("GET", url) as response:  # the promise is the full size
        assert int(response.headers["content-length"]) == size
        received = 0
        with pytest.raises(TRANSPORT_ERRORS):
            for chunk in response.iter_bytes():
                received += len(chunk)
        assert 0 < received < size
    assert sim.requests("download")[-1]["fault"] == "truncated"


def test_download_head_and_range(sim: SimulatorHandle, client: httpx.Client) -> None:
    url = completed_apimart(sim, client)["result"]["videos"][0]["url"][0]
    full = httpx.get(url).content
    head = httpx.head(url)
    assert head.status_code == 200 and int(head.headers["content-length"]) == len(full)
    assert head.headers["content-type"] == "video/mp4"
    part = httpx.get(url, headers={"Range": "bytes=10-99"})
    assert part.status_code == 206 and part.content == full[10:100]
    assert part.headers["content-range"] == f"bytes 10-99/{len(full)}"
    assert httpx.get(url, headers={"Range": f"bytes={len(full)}-"}).status_code == 416


def test_expired_and_forged_links(sim: SimulatorHandle, client: httpx.Client) -> None:
    sim.configure(expired_link_rate=1.0)
    data = completed_apimart(sim, client)
    video = data["result"]["videos"][0]
    assert video["expires_at"] < time.time()
    r = httpx.get(video["url"][0])
    assert r.status_code == 410 and b"expired" in r.content
    sim.configure(expired_link_rate=0.0)  # a fresh status GET hands out a fresh link
    fresh = client.get(f"/v1/tasks/{data['id']}").json()["data"]["result"]["videos"][0]
    assert httpx.get(fresh["url"][0]).status_code == 200
    forged = fresh["url"][0].replace("sig=", "sig=0")
    assert httpx.get(forged).status_code == 403
    later = fresh["url"][0].replace(f"expires={fresh['expires_at']}",
                                    f"expires={fresh['expires_at'] + 999}")
    assert httpx.get(later).status_code == 403
    assert [e["fault"] for e in sim.requests("download")] == [
        "link_expired", None, "bad_signature", "bad_signature"]


def test_short_link_ttl(sim: SimulatorHandle, client: httpx.Client) -> None:
    sim.configure(link_ttl_seconds=1)
    url = completed_apimart(sim, client)["result"]["videos"][0]["url"][0]
    time.sleep(2.05)
    assert httpx.get(url).status_code == 410


def test_slow_responses(sim: SimulatorHandle, client: httpx.Client) -> None:
    sim.configure(slow_seconds=0.3)
    started = time.monotonic()
    assert client.get("/v1/tasks/task_x").status_code == 404
    assert time.monotonic() - started >= 0.3
    assert sim.requests("status")[-1]["fault"] == "slow"


def test_file_bytes_zero(sim: SimulatorHandle, client: httpx.Client) -> None:
    sim.configure(file_bytes_zero=True)
    task_id = client.post("/v1/video_generation", json=MINIMAX_T2V).json()["task_id"]
    body, _ = wait_minimax(client, task_id)
    file = client.get("/v1/files/retrieve", params={"file_id": body["file_id"]}).json()
    assert file["file"]["bytes"] == 0
    assert len(httpx.get(file["file"]["download_url"]).content) > 0


def test_seeded_faults_are_reproducible() -> None:
    def pattern() -> list[int]:
        with run_simulator(seed=42, error_rate=0.5, render_seconds=0.1, cheap=True) as sim:
            return [httpx.get(f"{sim.base_url}/v1/tasks/t", headers=AUTH).status_code
                    for _ in range(12)]

    first = pattern()
    assert first == pattern() and len(set(first)) > 1


# -- idempotency -----------------------------------------------------------------------
def test_idempotency_key_replay_and_conflict(sim: SimulatorHandle, client: httpx.Client) -> None:
    headers = {"Idempotency-Key": "idem-1"}
    first = client.post("/v1/videos/generations", json=APIMART_T2V, headers=headers)
    again = client.post("/v1/videos/generations", json=dict(reversed(APIMART_T2V.items())),
                        headers=headers)
    assert first.status_code == again.status_code == 200
    assert apimart_task_id(first.json()) == apimart_task_id(again.json())
    assert first.json() == again.json()
    conflict = client.post("/v1/videos/generations", json={**APIMART_T2V, "prompt": "other"},
                           headers=headers)
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "idempotency_key_reused"
    assert sim.submits() == 1
    entries = sim.requests("submit")
    assert [e["replay"] for e in entries] == [False, True, False]
    assert all(e["idempotency_key"] == "idem-1" for e in entries)
    assert len([t for t in sim.simulator.state.tasks.values()
                if t.idempotency_key == "idem-1"]) == 1


def test_idempotent_retry_after_dropped_submit(sim: SimulatorHandle) -> None:
    """The user story: the connection dies after the submit; the retry gets the same task."""
    sim.configure(drop_after_submit_rate=1.0)
    headers = {**AUTH, "Idempotency-Key": "idem-drop"}
    url = f"{sim.base_url}/v1/videos/generations"
    with pytest.raises(TRANSPORT_ERRORS):
        httpx.post(url, json=APIMART_T2V, headers=headers)
    retry = httpx.post(url, json=APIMART_T2V, headers=headers)
    assert retry.status_code == 200
    assert apimart_task_id(retry.json()) == sim.requests("submit")[0]["task_id"]
    assert sim.submits() == 1


# -- callbacks -------------------------------------------------------------------------
def test_minimax_callbacks_challenge_first(sim: SimulatorHandle, client: httpx.Client) -> None:
    receiver = Receiver(lambda path, body: (200, {"challenge": body["challenge"]}
                                            if "challenge" in body else {}))
    try:
        body = {**MINIMAX_T2V, "callback_url": f"{receiver.url}/hook"}
        task_id = client.post("/v1/video_generation", json=body).json()["task_id"]
        receiver.wait_for(lambda posts: any(p[1].get("status") == "success" for p in posts))
        bodies = [b for _, b in receiver.posts]
        assert set(bodies[0]) == {"challenge"}
        statuses = [b["status"] for b in bodies[1:]]
        assert statuses == ["processing", "success"]
        assert bodies[-1]["task_id"] == task_id and bodies[-1]["file_id"]
        assert bodies[-1]["base_resp"]["status_code"] == 0
    finally:
        receiver.close()


def test_minimax_callbacks_stop_without_echo(sim: SimulatorHandle, client: httpx.Client) -> None:
    receiver = Receiver(lambda path, body: (200, {"ok": True}))
    try:
        body = {**MINIMAX_T2V, "callback_url": receiver.url}
        task_id = client.post("/v1/video_generation", json=body).json()["task_id"]
        wait_minimax(client, task_id)
        time.sleep(0.3)
        assert [set(b) for _, b in receiver.posts] == [{"challenge"}]
        assert sim.callbacks()[-1]["kind"] == "abandoned"
    finally:
        receiver.close()


def test_apimart_callback_retries_after_5xx(sim: SimulatorHandle, client: httpx.Client) -> None:
    sim.configure(callback_retry_delays=[0.05, 0.05, 0.05])
    answers = iter([500, 503, 200])
    receiver = Receiver(lambda path, body: (next(answers, 200), {}))
    try:
        body = {**APIMART_T2V, "webhook": f"{receiver.url}/hooks/"}
        task_id = apimart_task_id(client.post("/v1/videos/generations", json=body).json())
        receiver.wait_for(lambda posts: len(posts) >= 3)
        time.sleep(0.2)
        assert len(receiver.posts) == 3
        assert {path for path, _ in receiver.posts} == {"/hooks/callback"}
        payload = receiver.posts[-1][1]
        assert payload["data"]["id"] == task_id and payload["data"]["status"] == "completed"
        assert payload["data"]["result"]["videos"][0]["url"]
    finally:
        receiver.close()


def test_apimart_callback_4xx_stops_and_duplicates(sim: SimulatorHandle,
                                                   client: httpx.Client) -> None:
    sim.configure(callback_retry_delays=[0.05, 0.05, 0.05])
    refusing = Receiver(lambda path, body: (404, {}))
    duplicating = Receiver(lambda path, body: (200, {}))
    try:
        client.post("/v1/videos/generations", json={**APIMART_T2V, "webhook": refusing.url})
        refusing.wait_for(lambda posts: len(posts) == 1)
        sim.configure(callback_duplicate_rate=1.0)
        client.post("/v1/videos/generations", json={**APIMART_T2V, "webhook": duplicating.url})
        duplicating.wait_for(lambda posts: len(posts) == 2)
        time.sleep(0.3)
        assert len(refusing.posts) == 1
        assert duplicating.posts[0][1] == duplicating.posts[1][1]
    finally:
        refusing.close()
        duplicating.close()


# -- log and admin ---------------------------------------------------------------------
def test_request_log_contents_and_no_key(sim: SimulatorHandle, client: httpx.Client) -> None:
    sim.configure(accepted_keys=[KEY])
    raw = json.dumps(APIMART_T2V).encode()
    r = client.post("/v1/videos/generations", content=raw,
                    headers={"Content-Type": "application/json", "Idempotency-Key": "k1"})
    task_id = apimart_task_id(r.json())
    client.get(f"/v1/tasks/{task_id}")
    httpx.post(f"{sim.base_url}/v1/video_generation", json=MINIMAX_T2V,
               headers={"Authorization": f"Bearer {KEY}x"})
    submit = sim.requests("submit")[0]
    assert submit["body_sha256"] == hashlib.sha256(raw).hexdigest()
    assert submit["provider"] == "apimart" and submit["status"] == 200
    assert submit["task_id"] == task_id and submit["idempotency_key"] == "k1"
    assert submit["auth"] == "accepted" and submit["code"] == 200
    status = sim.requests("status")[0]
    assert status["task_id"] == task_id and status["kind"] == "status"
    assert sim.requests("submit")[1]["code"] == 2049
    over_http = httpx.get(f"{sim.base_url}/_sim/requests").text
    dumped = json.dumps([sim.requests(), sim.callbacks(), sim.tasks()])
    config = httpx.get(f"{sim.base_url}/_sim/config").text
    for text in (over_http, dumped, config):
        assert KEY not in text


def test_admin_api(sim: SimulatorHandle, client: httpx.Client) -> None:
    admin = httpx.Client(base_url=f"{sim.base_url}/_sim")
    assert admin.post("/config", json={"render_seconds": 60}).json()["render_seconds"] == 60
    assert admin.post("/config", json={"nope": 1}).status_code == 400
    assert admin.post("/config", json={"port": 1}).status_code == 400
    task_id = client.post("/v1/video_generation", json=MINIMAX_T2V).json()["task_id"]
    assert admin.get(f"/tasks/{task_id}").json()["status"] == "processing"
    done = admin.post(f"/tasks/{task_id}/complete-now").json()
    assert done["status"] == "completed" and done["render_finished_at"]
    assert client.get("/v1/query/video_generation",
                      params={"task_id": task_id}).json()["status"] == "Success"
    assert any(t["id"] == task_id for t in admin.get("/tasks").json())
    assert len(admin.get("/requests", params={"kind": "submit"}).json()) == 1
    admin.post("/reset")
    assert sim.requests("submit") == [] and sim.task(task_id)
    admin.post("/reset", params={"tasks": "true"})
    with pytest.raises(KeyError):
        sim.task(task_id)
    admin.close()


def test_cli_runs_in_foreground() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "hailuo.simulator", "--port", "0", "--render-seconds", "0.2",
         "--rpm", "5", "--accept-key", KEY, "--cheap"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = process.stdout.readline()
        assert "listening on http://127.0.0.1:" in line
        base = line.rsplit(" ", 1)[1].strip()
        r = httpx.get(f"{base}/v1/tasks/task_nope", headers=AUTH, timeout=10)
        assert r.status_code == 404
        config = httpx.get(f"{base}/_sim/config").json()
        assert config["rpm"] == 5 and config["cheap"] is True
        deadline = time.monotonic() + 5
        logged = ""
        while "/v1/tasks/task_nope" not in logged and time.monotonic() < deadline:
            logged += process.stdout.readline()
        assert "/v1/tasks/task_nope -> 404" in logged and KEY not in logged
    finally:
        process.terminate()
        process.wait(timeout=10)


# -- APIMart today: uploads, model schema, response version, idempotency answers -------
def _multipart(data: bytes, name: str = "file", filename: str = "photo.png") -> dict:
    return {"files": {name: (filename, data, "image/png")}}


def _png_bytes(size: tuple[int, int] = (640, 480)) -> bytes:
    return base64.b64decode(image_data_url(size, "PNG").split(",", 1)[1])


def test_upload_answer_shape_url_and_errors(sim: SimulatorHandle, client: httpx.Client) -> None:
    png = _png_bytes()
    r = client.post("/v1/uploads/images", **_multipart(png))
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"url", "filename", "content_type", "bytes", "created_at"}
    assert body["content_type"] == "image/png" and body["bytes"] == len(png)
    assert body["url"].startswith(f"{sim.base_url}/f/image/") and "photo.png" in body["url"]
    assert httpx.get(body["url"]).content == png
    gif = b"GIF89a" + b"\0" * 64
    assert client.post("/v1/uploads/images", **_multipart(gif)).json()["bytes"] == 70
    r = client.post("/v1/uploads/images", **_multipart(b"just text"))
    assert r.status_code == 400 and "unsupported image format" in r.json()["error"]["message"]
    r = client.post("/v1/uploads/images", **_multipart(png, name="image"))
    assert r.status_code == 400 and "file" in r.json()["error"]["message"]
    big = b"\x89PNG\r\n\x1a\n" + b"\0" * (20 * 1024 * 1024)
    assert client.post("/v1/uploads/images", **_multipart(big)).status_code == 413
    assert httpx.post(f"{sim.base_url}/v1/uploads/images", **_multipart(png)).status_code == 401
    assert [e["kind"] for e in sim.requests()][:1] == ["upload"]


def test_generation_reads_uploads_until_they_expire(sim: SimulatorHandle,
                                                    client: httpx.Client) -> None:
    small = client.post("/v1/uploads/images", **_multipart(_png_bytes((200, 200)))).json()
    r = client.post("/v1/videos/generations", json={**APIMART_T2V,
                                                    "first_frame_image": small["url"]})
    assert r.status_code == 400 and "short edge" in r.json()["error"]["message"]
    sim.configure(upload_ttl_seconds=0.3)
    url = client.post("/v1/uploads/images", **_multipart(_png_bytes())).json()["url"]
    ok = client.post("/v1/videos/generations", json={**APIMART_T2V, "first_frame_image": url})
    assert ok.status_code == 200
    assert sim.task(apimart_task_id(ok.json()))["mode"] == "image-to-video"
    time.sleep(0.4)
    assert httpx.get(url).status_code == 404
    late = client.post("/v1/videos/generations", json={**APIMART_T2V, "first_frame_image": url})
    assert late.status_code == 400 and "404" in late.json()["error"]["message"]


def test_apimart_data_urls_refused_unless_accepted(sim: SimulatorHandle,
                                                  client: httpx.Client) -> None:
    body = {**APIMART_T2V, "first_frame_image": image_data_url()}
    r = client.post("/v1/videos/generations", json=body)
    assert r.status_code == 400 and "no longer supported" in r.json()["error"]["message"]
    sim.configure(apimart_data_urls="accept")
    assert client.post("/v1/videos/generations", json=body).status_code == 200
    minimax = {**MINIMAX_T2V, "first_frame_image": image_data_url(), "resolution": "768P"}
    assert client.post("/v1/video_generation", json=minimax).json()["base_resp"][
        "status_code"] == 0


@pytest.mark.parametrize(("setting", "shape", "expected"), [
    ("true", "bool", True), ("false", "bool", False), ("absent", "bool", None),
    ("true", "object", {"supported": True}), ("false", "object", {"supported": False}),
])
def test_model_schema_reports_idempotency(sim: SimulatorHandle, client: httpx.Client,
                                          setting: str, shape: str, expected: Any) -> None:
    sim.configure(model_idempotency=setting, model_schema_shape=shape)
    r = client.get("/v1/model-schema", params={"model": "MiniMax-Hailuo-2.3",
                                                "operation": "video_generation"})
    body = r.json()
    assert r.status_code == 200 and body["model"] == "MiniMax-Hailuo-2.3"
    assert body["operation"] == "video_generation" and body["input_schema"]["properties"]
    if expected is None:
        assert "idempotency" not in body
    elif isinstance(expected, dict):
        assert body["idempotency"]["supported"] is expected["supported"]
    else:
        assert body["idempotency"] is expected
    assert client.get("/v1/model-schema", params={"model": "Sora"}).status_code == 404
    assert client.get("/v1/model-schema", params={
        "model": "MiniMax-Hailuo-02", "operation": "image_generation"}).status_code == 400


def test_model_not_honouring_the_key_creates_a_task_per_post(sim: SimulatorHandle,
                                                             client: httpx.Client) -> None:
    sim.configure(model_idempotency="false")
    headers = {"Idempotency-Key": "same"}
    a = client.post("/v1/videos/generations", json=APIMART_T2V, headers=headers)
    b = client.post("/v1/videos/generations", json=APIMART_T2V, headers=headers)
    assert apimart_task_id(a.json()) != apimart_task_id(b.json()) and sim.submits() == 2


@pytest.mark.parametrize("version", ["auto", "legacy", "2026-07-27"])
def test_response_version_2026_07_27(sim: SimulatorHandle, client: httpx.Client,
                                     version: str) -> None:
    sim.configure(apimart_response_version=version)
    asked = {"X-APIMart-Response-Version": "2026-07-27", "Idempotency-Key": f"v-{version}"}
    r = client.post("/v1/videos/generations", json=APIMART_T2V, headers=asked)
    plain = client.post("/v1/videos/generations", json=APIMART_T2V)
    if version == "legacy":
        assert r.status_code == 200 and r.json()["code"] == 200
    else:
        assert r.status_code == 202 and r.headers["X-APIMart-Response-Version"] == "2026-07-27"
        data = r.json()["data"]
        assert r.json()["code"] == 202 and data["status"] == "queued"
        assert data["id"].startswith("task_") and data["object"] == "generation.task"
        replay = client.post("/v1/videos/generations", json=APIMART_T2V, headers=asked)
        assert replay.status_code == 202 and replay.json() == r.json()
        assert replay.headers["Idempotency-Replayed"] == "true"
    assert plain.status_code == (202 if version == "2026-07-27" else 200)


def test_second_request_with_a_key_in_progress_gets_409(sim: SimulatorHandle) -> None:
    sim.configure(submit_seconds=0.8)
    headers = {**AUTH, "Idempotency-Key": "busy"}
    url = f"{sim.base_url}/v1/videos/generations"
    results: list[httpx.Response] = []
    first = threading.Thread(target=lambda: results.append(
        httpx.post(url, json=APIMART_T2V, headers=headers, timeout=10)))
    first.start()
    time.sleep(0.3)
    busy = httpx.post(url, json=APIMART_T2V, headers=headers, timeout=10)
    first.join()
    assert busy.status_code == 409 and busy.json()["error"]["code"] == "idempotency_in_progress"
    assert busy.headers["Retry-After"] == "1"
    assert results[0].status_code == 200 and sim.submits() == 1
    again = httpx.post(url, json=APIMART_T2V, headers=headers, timeout=10)
    assert apimart_task_id(again.json()) == apimart_task_id(results[0].json())


@pytest.mark.parametrize(("fault", "status"), [
    ("idempotency_in_progress", 409), ("idempotency_result_indeterminate", 409),
    ("idempotency_key_reused", 409), ("idempotency_unavailable", 503),
    ("build_request_failed", 500),
])
@pytest.mark.parametrize("style", ["code", "message"])
def test_scripted_apimart_error_words(sim: SimulatorHandle, client: httpx.Client, fault: str,
                                      status: int, style: str) -> None:
    sim.configure(scripted_faults={fault: 1}, apimart_error_style=style)
    r = client.post("/v1/videos/generations", json=APIMART_T2V)
    error = r.json()["error"]
    assert r.status_code == status
    if style == "code":
        assert error["code"] == fault
    else:
        assert error["code"] == status and fault in error["message"]
    assert client.post("/v1/videos/generations", json=APIMART_T2V).status_code == 200
    assert sim.submits() == 1 and sim.requests("submit")[0]["fault"] == fault


def test_bad_parameters_as_build_request_failed(sim: SimulatorHandle,
                                                client: httpx.Client) -> None:
    sim.configure(apimart_invalid_answer="build_request_failed")
    r = client.post("/v1/videos/generations", json={**APIMART_T2V, "duration": 7})
    assert r.status_code == 500 and r.json()["error"]["code"] == "build_request_failed"
    assert "duration" in r.json()["error"]["message"] and sim.submits() == 0


def test_success_false_and_error_after_accept(sim: SimulatorHandle,
                                              client: httpx.Client) -> None:
    sim.configure(scripted_faults={"success_false": 1, "error_after_accept": 1})
    r = client.post("/v1/videos/generations", json=APIMART_T2V)
    assert r.status_code == 200 and r.json()["success"] is False and r.json()["message"]
    assert sim.submits() == 0
    r = client.post("/v1/videos/generations", json=APIMART_T2V)
    assert r.status_code == 502 and sim.submits() == 1  # created, answer lost
    assert sim.requests("submit")[-1]["fault"] == "error_after_accept"


def test_scripted_fault_counts_and_rates(sim: SimulatorHandle, client: httpx.Client) -> None:
    sim.configure(scripted_faults={"success_false": 2})
    codes = [client.post("/v1/videos/generations", json=APIMART_T2V).json().get("success")
             for _ in range(3)]
    assert codes == [False, False, None]
    sim.configure(scripted_faults={}, fault_rates={"success_false": 1.0})
    assert client.post("/v1/videos/generations", json=APIMART_T2V).json()["success"] is False
    with pytest.raises(ValueError, match="unknown fault"):
        sim.configure(scripted_faults={"nope": 1})
    from hailuo.simulator.cli import build_parser, config_from_args

    config = config_from_args(build_parser().parse_args(
        ["--fault", "file_1013=2", "--fault", "success_false", "--fault-rate",
         "error_after_accept=0.5", "--wrong-region-code", "2049"]))
    assert config.scripted_faults == {"file_1013": 2, "success_false": -1}
    assert config.fault_rates == {"error_after_accept": 0.5}
    assert config.wrong_region_code == 2049


def test_status_words_costs_and_missing_links(sim: SimulatorHandle,
                                              client: httpx.Client) -> None:
    sim.configure(unknown_status_word="rendering", render_seconds=30,
                  apimart_cost_field="credits_cost")
    task_id = apimart_task_id(client.post("/v1/videos/generations", json=APIMART_T2V).json())
    data = client.get(f"/v1/tasks/{task_id}").json()["data"]
    assert data["status"] == "rendering" and "cost" not in data
    assert data["credits_cost"] == pytest.approx(2.0)  # $0.20 at 10 credits per dollar
    m_id = client.post("/v1/video_generation", json=MINIMAX_T2V).json()["task_id"]
    q = client.get("/v1/query/video_generation", params={"task_id": m_id}).json()
    assert q["status"] == "rendering"
    sim.configure(scripted_faults={"completed_without_url": 1, "success_without_file_id": 1,
                                   "file_1013": 1, "file_without_url": 1})
    for tid in (task_id, m_id):
        httpx.post(f"{sim.base_url}/_sim/tasks/{tid}/complete-now").raise_for_status()
    done = client.get(f"/v1/tasks/{task_id}").json()["data"]
    assert done["status"] == "completed" and "result" not in done
    assert "result" in client.get(f"/v1/tasks/{task_id}").json()["data"]
    q = client.get("/v1/query/video_generation", params={"task_id": m_id}).json()
    assert q["status"] == "Success" and "file_id" not in q
    q = client.get("/v1/query/video_generation", params={"task_id": m_id}).json()
    f = client.get("/v1/files/retrieve", params={"file_id": q["file_id"]}).json()
    assert f["base_resp"]["status_code"] == 1013
    f = client.get("/v1/files/retrieve", params={"file_id": q["file_id"]}).json()
    assert f["base_resp"]["status_code"] == 0 and "download_url" not in f["file"]
    f = client.get("/v1/files/retrieve", params={"file_id": q["file_id"]}).json()
    assert f["file"]["download_url"]


@pytest.mark.parametrize("code", [1004, 2049])
def test_wrong_region_key(sim: SimulatorHandle, client: httpx.Client, code: int) -> None:
    sim.configure(wrong_region_code=code)
    r = client.post("/v1/video_generation", json=MINIMAX_T2V)
    assert r.status_code == 200 and r.json()["base_resp"]["status_code"] == code
    q = client.get("/v1/query/video_generation", params={"task_id": "1"}).json()
    assert q["base_resp"]["status_code"] == code
    assert client.post("/v1/videos/generations", json=APIMART_T2V).status_code == 200
    assert sim.submits() == 1 and sim.requests("submit")[0]["auth"] == "wrong_region"
