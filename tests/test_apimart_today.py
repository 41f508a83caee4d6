"""APIMart as it is today (issue 13 A), client against the simulator over real HTTP.

Uploads instead of data URLs, ``Idempotency-Key`` + ``X-APIMart-Response-Version`` on every
generation, the 202 answer, the 409/503 idempotency answers, resending an ambiguous submit
only when ``GET /v1/model-schema`` says the model honours the key, HTTP 500
``build_request_failed``, credits vs dollars, unknown status words and ``success: false``.
Each fault comes from a simulator knob, so every answer here crossed a socket.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator

import httpx
import pytest

from hailuo import errors
from hailuo.client import UPLOAD_TTL_SECONDS, HailuoClient, PollPolicy, UploadCache
from hailuo.fingerprint import request_fingerprint
from hailuo.models import JobStatus, VideoRequest
from hailuo.simulator import SimulatorConfig, SimulatorHandle, run_simulator
from hailuo.simulator.config import STARTUP_ONLY
from tests.conftest import make_png

KEY = "sk-apimart-today-0123456789abcdef"
BASE = SimulatorConfig(render_seconds=0.3, cheap=True, seed=5)
LIVE_DEFAULTS = {k: v for k, v in BASE.model_dump().items() if k not in STARTUP_ONLY}
T2V = VideoRequest(prompt="[Pan left] a harbour at dawn, gulls", resolution="512p", duration=5)
TRANSPORT_ERRORS = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


class Recording(httpx.BaseTransport):
    """A real HTTP transport that keeps every request it sends (bodies included)."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()

    def posts(self, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == "POST" and r.url.path == path]

    def generations(self) -> list[httpx.Request]:
        return self.posts("/v1/videos/generations")


@pytest.fixture(scope="module")
def server() -> Iterator[SimulatorHandle]:
    with run_simulator(BASE) as handle:
        yield handle


@pytest.fixture
def sim(server: SimulatorHandle) -> SimulatorHandle:
    server.configure(**LIVE_DEFAULTS)
    server.reset(tasks=True)
    UploadCache.forget_all()
    return server


@pytest.fixture
def wire() -> Recording:
    return Recording()


def client_for(sim: SimulatorHandle, wire: Recording | None = None, *,
               sleeps: list[float] | None = None, real_sleep: bool = False,
               key: str = KEY, **kw) -> HailuoClient:
    def sleep(seconds: float) -> None:
        if sleeps is not None:
            sleeps.append(seconds)
        if real_sleep:
            time.sleep(seconds)

    return HailuoClient("apimart", api_key=key, base_url=sim.base_url, transport=wire,
                        sleep=sleep, backoff=0.01, **kw)


def one(entries: list[dict], **match) -> dict:
    found = [e for e in entries if all(e.get(k) == v for k, v in match.items())]
    assert len(found) == 1, found
    return found[0]


# ----------------------------------------------------------------- 1. local images
def test_local_images_are_uploaded_and_sent_as_urls_never_as_data_urls(sim, wire, tmp_path):
    first = make_png(tmp_path / "first.png", (640, 360), (200, 40, 40))
    last = make_png(tmp_path / "last.png", (640, 360), (40, 40, 200))
    request = VideoRequest(prompt="the light changes", first_frame_image=str(first),
                           last_frame_image=str(last), resolution="768p", duration=5)
    job = client_for(sim, wire).submit(request)

    uploads = wire.posts("/v1/uploads/images")
    assert len(uploads) == 2
    assert all(b'name="file"' in r.content for r in uploads)
    assert all(b"/tmp" not in r.content.split(b"\r\n\r\n")[0] for r in uploads), \
        "the local path leaks into the upload"
    (generation,) = wire.generations()
    body = json.loads(generation.content)
    assert b"data:" not in generation.content, "a data: URL was sent to APIMart"
    for name in ("first_frame_image", "last_frame_image"):
        assert body[name].startswith(f"{sim.base_url}/f/image/")
    task = sim.task(job.task_id)
    assert task["mode"] == "first-last-frame" and (task["width"], task["height"]) != (0, 0)
    assert [e["kind"] for e in sim.requests() if e["kind"] in ("upload", "submit")] == [
        "upload", "upload", "submit"]


def test_simulator_refuses_data_urls_on_apimart_as_apimart_does(sim, tmp_path):
    png = make_png(tmp_path / "img.png").read_bytes()
    data_url = "data:image/png;base64," + base64.b64encode(png).decode()
    r = httpx.post(f"{sim.base_url}/v1/videos/generations", headers={
        "Authorization": f"Bearer {KEY}"}, json={"model": "MiniMax-Hailuo-02",
                                                  "prompt": "x", "first_frame_image": data_url})
    assert r.status_code == 400
    assert "no longer supported" in r.json()["error"]["message"]
    assert "/v1/uploads/images" in r.json()["error"]["message"]
    assert sim.submits() == 0


def test_an_upload_of_the_same_content_is_reused_while_valid(sim, wire, tmp_path):
    path = make_png(tmp_path / "face.png", (640, 360))
    same_bytes = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
    copy = tmp_path / "copy-of-face.png"
    copy.write_bytes(path.read_bytes())
    now = [time.time()]
    client = client_for(sim, wire, clock=lambda: now[0], upload_cache_dir=False)
    for value in (str(path), same_bytes, str(copy)):
        client.submit(VideoRequest(prompt="she smiles", first_frame_image=value,
                                   resolution="512p", duration=5))
    assert len(wire.posts("/v1/uploads/images")) == 1
    urls = {json.loads(r.content)["first_frame_image"] for r in wire.generations()}
    assert len(urls) == 1

    # another client of this process and account reuses it too; another account does not
    client_for(sim, wire, clock=lambda: now[0]).submit(
        VideoRequest(prompt="she waves", first_frame_image=str(path), resolution="512p",
                     duration=5))
    assert len(wire.posts("/v1/uploads/images")) == 1
    client_for(sim, wire, key="sk-another-account-0000").submit(
        VideoRequest(prompt="she waves", first_frame_image=str(path), resolution="512p",
                     duration=5))
    assert len(wire.posts("/v1/uploads/images")) == 2

    # with less than a day of its 72 h left, the image is uploaded again
    now[0] += UPLOAD_TTL_SECONDS - 23 * 3600
    client.submit(VideoRequest(prompt="she turns", first_frame_image=str(path),
                               resolution="512p", duration=5))
    assert len(wire.posts("/v1/uploads/images")) == 3


def test_the_disk_upload_cache_lets_a_rerun_send_the_same_body(sim, wire, tmp_path):
    """A re-run (new process: empty memory) finds the upload on disk, so it sends the same
    body under the same Idempotency-Key and gets the original task back."""
    path = make_png(tmp_path / "start.png", (640, 360))
    request = VideoRequest(prompt="waves roll in", first_frame_image=str(path),
                           resolution="512p", duration=5)
    cache = tmp_path / "cache"
    first = client_for(sim, wire, upload_cache_dir=cache).submit(request,
                                                                 idempotency_key="rerun-1")
    UploadCache.forget_all()  # what a new process starts with
    again = client_for(sim, wire, upload_cache_dir=cache).submit(request,
                                                                 idempotency_key="rerun-1")
    assert again.task_id == first.task_id and sim.submits() == 1
    assert len(wire.posts("/v1/uploads/images")) == 1
    bodies = {r.content for r in wire.generations()}
    assert len(bodies) == 1
    stored = "".join(p.read_text() for p in cache.rglob("*.json"))
    assert KEY not in stored and "/f/image/" in stored


def test_uploading_does_not_change_the_request_identity(sim, wire, tmp_path):
    path = make_png(tmp_path / "id.png", (640, 360))
    by_path = VideoRequest(prompt="x y", first_frame_image=str(path))
    by_data = VideoRequest(prompt="x y", first_frame_image="data:image/png;base64,"
                           + base64.b64encode(path.read_bytes()).decode())
    before = request_fingerprint(by_path.validate_for("apimart"), "apimart")
    job = client_for(sim, wire).submit(by_path)
    assert request_fingerprint(by_path.validate_for("apimart"), "apimart") == before
    assert request_fingerprint(by_data.validate_for("apimart"), "apimart") == before
    assert job.idempotency_key.startswith(f"hailuo-{before[:32]}-")
    # prepare() stays offline and shows the pending upload by content hash
    _, body = client_for(sim).prepare(by_path)
    assert body["first_frame_image"].startswith("upload:sha256:")


def test_an_upload_refused_by_apimart_names_the_field(tmp_path):
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/uploads/images"
        return httpx.Response(413, json={"error": {"code": 413, "message": "file too large"}})

    client = HailuoClient("apimart", api_key=KEY, base_url="https://api.example.test",
                          transport=httpx.MockTransport(handler), upload_cache_dir=False)
    png = make_png(tmp_path / "a.png")
    with pytest.raises(errors.InvalidImageError) as info:
        client.submit(VideoRequest(prompt="x", first_frame_image=str(png)))
    assert info.value.field == "first_frame_image" and info.value.http_status == 413


# ------------------------------------------------- 2. idempotency and response version
def test_every_generation_sends_the_key_and_response_version_and_reads_the_202(sim, wire):
    job = client_for(sim, wire).submit(T2V, idempotency_key="k-202")
    (post,) = wire.generations()
    assert post.headers["Idempotency-Key"] == "k-202"
    assert post.headers["X-APIMart-Response-Version"] == "2026-07-27"
    entry = one(sim.requests("submit"), idempotency_key="k-202")
    assert entry["status"] == 202 and entry["task_id"] == job.task_id
    assert job.status is JobStatus.QUEUED and job.idempotency_key == "k-202"


@pytest.mark.parametrize("version", ["legacy", "2026-07-27"])
def test_legacy_and_versioned_submit_answers_are_both_parsed(sim, version):
    sim.configure(apimart_response_version=version)
    client = client_for(sim)
    ids = [client.submit(T2V).task_id for _ in range(2)]  # legacy alternates list/object
    statuses = [e["status"] for e in sim.requests("submit")]
    assert statuses == ([200, 200] if version == "legacy" else [202, 202])
    assert all(i.startswith("task_") for i in ids) and len(set(ids)) == 2


def test_a_replayed_answer_is_the_original_task(sim, wire, caplog):
    client = client_for(sim, wire)
    first = client.submit(T2V, idempotency_key="k-replay")
    with caplog.at_level("INFO", logger="hailuo.client"):
        again = client.submit(T2V, idempotency_key="k-replay")  # a re-run, same key
    assert again.task_id == first.task_id and sim.submits() == 1
    assert sim.requests("submit")[-1]["replay"] is True
    assert "idempotent replay" in caplog.text


@pytest.mark.parametrize("style", ["code", "message"])
def test_idempotency_in_progress_waits_retry_after_and_resends_the_same_request(sim, wire,
                                                                                style):
    sim.configure(scripted_faults={"idempotency_in_progress": 2}, apimart_error_style=style)
    sleeps: list[float] = []
    job = client_for(sim, wire, sleeps=sleeps).submit(T2V, idempotency_key="k-busy")
    posts = wire.generations()
    assert len(posts) == 3 and sleeps == [1.0, 1.0]
    assert {(p.headers["Idempotency-Key"], p.content) for p in posts} == {
        ("k-busy", posts[0].content)}
    assert sim.submits() == 1 and job.task_id == sim.tasks()[0]["id"]


def test_a_resend_while_the_first_is_still_running_meets_409_in_progress(sim, wire):
    """The real sequence: the answer is slow, the client times out (ambiguous), the model
    honours the key so it resends; APIMart is still on the first request (409 in
    progress, Retry-After), then replays it. One task."""
    sim.configure(submit_seconds=1.2)
    sleeps: list[float] = []
    client = client_for(sim, wire, sleeps=sleeps, real_sleep=True,
                        timeout=httpx.Timeout(0.6, connect=5.0))
    job = client.submit(T2V, idempotency_key="k-slow")
    faults = [e["fault"] for e in sim.requests("submit")]
    assert "idempotency_in_progress" in faults
    assert sim.requests("submit")[-1]["replay"] is True
    assert sim.submits() == 1 and job.task_id == sim.tasks()[0]["id"]
    assert 2.0 in sleeps  # Retry-After: ceil(submit_seconds)


@pytest.mark.parametrize("style", ["code", "message"])
@pytest.mark.parametrize("word", ["idempotency_result_indeterminate", "idempotency_key_reused"])
def test_indeterminate_and_reused_keys_stop_with_ambiguous_submit_keeping_the_key(
        sim, wire, word, style):
    sim.configure(scripted_faults={word: 1}, apimart_error_style=style)
    with pytest.raises(errors.AmbiguousSubmitError) as info:
        client_for(sim, wire).submit(T2V, idempotency_key="k-stop")
    assert len(wire.generations()) == 1
    err = info.value
    assert err.details["idempotency_key"] == "k-stop" and err.http_status == 409
    assert word in err.message and "k-stop" in err.message
    assert err.details["request_fingerprint"] in err.message and not err.retryable


def test_idempotency_unavailable_means_not_executed_and_is_retried(sim, wire):
    sim.configure(scripted_faults={"idempotency_unavailable": 2})
    job = client_for(sim, wire).submit(T2V, idempotency_key="k-down")
    assert len(wire.generations()) == 3 and sim.submits() == 1
    assert job.task_id == sim.tasks()[0]["id"]
    sim.configure(scripted_faults={"idempotency_unavailable": -1})
    with pytest.raises(errors.ProviderUnavailableError) as info:
        client_for(sim, max_retries=2).submit(T2V, idempotency_key="k-down-2")
    assert info.value.retryable and info.value.details["idempotency_key"] == "k-down-2"
    assert "not executed" in info.value.message and sim.submits() == 1


@pytest.mark.parametrize("how", ["dropped", "http_502"])
@pytest.mark.parametrize("idempotency,shape", [("false", "bool"), ("absent", "bool"),
                                               ("false", "object")])
def test_an_ambiguous_submit_is_not_resent_unless_the_model_schema_confirms_the_key(
        sim, wire, how, idempotency, shape):
    sim.configure(model_idempotency=idempotency, model_schema_shape=shape,
                  **({"drop_after_submit_rate": 1.0} if how == "dropped"
                     else {"scripted_faults": {"error_after_accept": 1}}))
    with pytest.raises(errors.AmbiguousSubmitError) as info:
        client_for(sim, wire).submit(T2V, idempotency_key="k-unsure")
    assert len(wire.generations()) == 1, "resent without the provider's word: could pay twice"
    assert sim.submits() == 1  # the task was created: this is exactly the reconcile case
    message = info.value.message
    for needle in ("k-unsure", info.value.details["request_fingerprint"], "GET /v1/tasks",
                   "console", "model-schema"):
        assert needle in message
    assert len(sim.requests("schema")) == 1


@pytest.mark.parametrize("how", ["dropped", "http_502"])
@pytest.mark.parametrize("shape", ["bool", "object"])
def test_an_ambiguous_submit_is_resent_when_the_model_honours_the_key(sim, wire, how, shape):
    sim.configure(model_schema_shape=shape,
                  **({"drop_after_submit_rate": 1.0} if how == "dropped"
                     else {"scripted_faults": {"error_after_accept": 1}}))
    client = client_for(sim, wire)  # a drop hits the first answer; the resend is a replay
    job = client.submit(T2V, idempotency_key="k-sure")
    posts = wire.generations()
    assert len(posts) == 2 and posts[0].content == posts[1].content
    assert sim.submits() == 1 and job.task_id == sim.tasks()[0]["id"]
    assert sim.requests("submit")[-1]["replay"] is True


def test_the_model_schema_answer_is_cached_per_client_and_model(sim):
    sim.configure(model_idempotency="false", drop_after_submit_rate=1.0)
    client = client_for(sim)
    for _ in range(2):
        with pytest.raises(errors.AmbiguousSubmitError):
            client.submit(T2V)
    assert len(sim.requests("schema")) == 1
    schema = sim.requests("schema")[0]["query"]
    assert schema == {"model": "MiniMax-Hailuo-02", "operation": "video_generation"}


# --------------------------------------------------------------------------- 3.
@pytest.mark.parametrize("style", ["code", "message"])
def test_http_500_build_request_failed_is_an_invalid_request_never_retried(sim, wire, style):
    sim.configure(scripted_faults={"build_request_failed": -1}, apimart_error_style=style)
    with pytest.raises(errors.InvalidRequestError) as info:
        client_for(sim, wire).submit(T2V)
    assert info.value.http_status == 500 and "build_request_failed" in info.value.message
    assert not info.value.retryable
    assert len(wire.generations()) == 1 and sim.requests("schema") == []


@pytest.mark.parametrize("field", ["cost", "credits_cost", "both"])
def test_job_cost_is_dollars_whether_apimart_reports_cost_or_credits(sim, field):
    sim.configure(apimart_cost_field=field)
    client = client_for(sim)
    job = client.wait(client.submit(T2V), timeout=30)
    assert job.cost == pytest.approx(0.2)  # 512p: $0.04/s x 5 s, or 2 credits


def test_an_unknown_status_word_means_still_running_until_the_deadline(sim):
    sim.configure(unknown_status_word="rendering", render_seconds=30)
    client = client_for(sim, real_sleep=True, poll=PollPolicy(min_interval=0.1,
                                                              max_interval=0.2))
    job = client.submit(T2V)
    assert client.status(job.task_id).status is JobStatus.PROCESSING
    started = time.monotonic()
    with pytest.raises(errors.TimedOutError) as info:
        client.wait(job, timeout=1.0)
    assert info.value.task_id == job.task_id and time.monotonic() - started < 5
    httpx.post(f"{sim.base_url}/_sim/tasks/{job.task_id}/complete-now").raise_for_status()
    assert client.wait(job, timeout=10).status is JobStatus.COMPLETED


def test_success_false_keeps_its_message(sim, wire):
    sim.configure(scripted_faults={"success_false": 1})
    with pytest.raises(errors.HailuoError) as info:
        client_for(sim, wire).submit(T2V)
    assert "no available channel" in info.value.message
    assert not isinstance(info.value, errors.AmbiguousSubmitError)
    assert len(wire.generations()) == 1 and sim.submits() == 0


def test_completed_without_a_url_is_a_typed_error_with_the_task_id(sim, tmp_path):
    sim.configure(scripted_faults={"completed_without_url": -1})
    client = client_for(sim, real_sleep=True,
                        poll=PollPolicy(min_interval=0.05, max_interval=0.1,
                                        max_consecutive_failures=2))
    job = client.submit(T2V)
    with pytest.raises(errors.ResultMissingError) as info:
        client.wait(job, timeout=30)
    assert info.value.task_id == job.task_id and info.value.retryable
    with pytest.raises(errors.ResultMissingError):
        client.download(job.task_id, tmp_path / "v.mp4")
    sim.configure(scripted_faults={})
    assert client.wait(job, timeout=30).video_urls  # asking again gets the link
