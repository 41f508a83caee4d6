"""MiniMax v1 details (issue 13 B), client against the simulator over real HTTP.

``files/retrieve`` code 1013 is transient; ``Success`` without ``file_id`` (and a file
answer without ``download_url``) is a typed error carrying the task id, never an
``AssertionError``; ``fast_pretreatment`` goes only to the models that document it; a key
of the other region (1004 / 2049) gets an error that names the host to try.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from hailuo import errors
from hailuo.client import HailuoClient, PollPolicy
from hailuo.models import JobStatus, VideoRequest
from hailuo.simulator import SimulatorConfig, SimulatorHandle, run_simulator
from hailuo.simulator.config import STARTUP_ONLY

KEY = "sk-minimax-v1-0123456789abcdef"
BASE = SimulatorConfig(render_seconds=0.2, cheap=True, seed=3)
LIVE_DEFAULTS = {k: v for k, v in BASE.model_dump().items() if k not in STARTUP_ONLY}
T2V = VideoRequest(prompt="[Push in] a fox in snow, soft light")
FAST_POLL = PollPolicy(min_interval=0.05, max_interval=0.1, max_consecutive_failures=2)


class Forward(httpx.BaseTransport):
    """Real HTTP to the simulator for a client configured with a real provider host, and
    a record of what was sent."""

    def __init__(self, target: str) -> None:
        self.target = httpx.URL(target)
        self.inner = httpx.HTTPTransport()
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        request.url = request.url.copy_with(scheme=self.target.scheme, host=self.target.host,
                                            port=self.target.port)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture(scope="module")
def server() -> Iterator[SimulatorHandle]:
    with run_simulator(BASE) as handle:
        yield handle


@pytest.fixture
def sim(server: SimulatorHandle) -> SimulatorHandle:
    server.configure(**LIVE_DEFAULTS)
    server.reset(tasks=True)
    return server


def client_for(sim: SimulatorHandle, *, base_url: str | None = None,
               sleeps: list[float] | None = None, transport: Forward | None = None,
               **kw) -> HailuoClient:
    transport = transport or (Forward(sim.base_url) if base_url else None)

    def sleep(seconds: float) -> None:
        if sleeps is not None:
            sleeps.append(seconds)
        time.sleep(min(seconds, 0.05))

    return HailuoClient("minimax", api_key=KEY, base_url=base_url or sim.base_url,
                        transport=transport, sleep=sleep, backoff=0.01, poll=FAST_POLL, **kw)


def test_files_retrieve_code_1013_is_transient_and_retried(sim):
    sim.configure(scripted_faults={"file_1013": 2})
    client = client_for(sim)
    job = client.wait(client.submit(T2V), timeout=30)
    assert job.status is JobStatus.COMPLETED and len(job.video_urls) == 2
    files = sim.requests("file")
    assert [e["fault"] for e in files] == ["file_1013", "file_1013", None]
    assert [e["code"] for e in files][:2] == [1013, 1013]


def test_success_without_file_id_is_a_typed_error_with_the_task_id(sim, tmp_path):
    sim.configure(scripted_faults={"success_without_file_id": -1})
    client = client_for(sim)
    job = client.submit(T2V)
    with pytest.raises(errors.ResultMissingError) as info:
        client.wait(job, timeout=30)
    assert info.value.task_id == job.task_id and "file_id" in info.value.message
    # the download path used to end in a bare AssertionError here
    with pytest.raises(errors.ResultMissingError) as info:
        client.download(job.task_id, tmp_path / "v.mp4")
    assert info.value.task_id == job.task_id
    assert list(tmp_path.iterdir()) == []
    sim.configure(scripted_faults={})  # a later look carries the file_id: resumable
    assert client.wait(job, timeout=30).video_urls


def test_a_file_answer_without_download_url_is_the_same_typed_error(sim):
    sim.configure(scripted_faults={"file_without_url": -1})
    client = client_for(sim)
    job = client.submit(T2V)
    with pytest.raises(errors.ResultMissingError) as info:
        client.wait(job, timeout=30)
    assert info.value.task_id == job.task_id and "download_url" in info.value.message


@pytest.mark.parametrize("model,fast,sent", [
    ("MiniMax-Hailuo-02", True, True),
    ("MiniMax-Hailuo-2.3", False, True),
    ("T2V-01", True, False),
    ("T2V-01-Director", False, False),
])
def test_fast_pretreatment_only_goes_to_models_that_document_it(sim, model, fast, sent):
    """The simulator refuses the field for other models (knob undocumented_fields), so an
    accepted submit proves it was not sent."""
    wire = Forward(sim.base_url)
    client = client_for(sim, base_url="https://api.minimax.io", transport=wire)
    job = client.submit(VideoRequest(model=model, prompt="a quiet lake at dawn",
                                     fast_pretreatment=fast))
    body = json.loads(wire.requests[-1].content)
    assert ("fast_pretreatment" in body) is sent
    if sent:
        assert body["fast_pretreatment"] is fast
    assert sim.task(job.task_id)["model"] == model


def test_the_simulator_refuses_fast_pretreatment_for_other_models(sim):
    r = httpx.post(f"{sim.base_url}/v1/video_generation", headers={
        "Authorization": f"Bearer {KEY}"}, json={"model": "T2V-01", "prompt": "x",
                                                  "fast_pretreatment": False})
    assert r.json()["base_resp"]["status_code"] == 2013
    assert "fast_pretreatment" in r.json()["base_resp"]["status_msg"]


@pytest.mark.parametrize("code", [1004, 2049])
@pytest.mark.parametrize("host,suggested", [
    ("https://api.minimax.io", "https://api.minimaxi.com"),
    ("https://api.minimaxi.com", "https://api.minimax.io"),
])
def test_a_key_of_the_other_region_gets_an_error_naming_the_host_to_try(sim, code, host,
                                                                      suggested):
    sim.configure(wrong_region_code=code)
    client = client_for(sim, base_url=host)
    with pytest.raises(errors.AuthenticationError) as info:
        client.submit(T2V)
    assert info.value.code == code and suggested in str(info.value)
    assert not info.value.retryable and sim.submits() == 0
    with pytest.raises(errors.AuthenticationError) as info:
        client.status("123456789012345")  # the same on every call
    assert suggested in str(info.value)


def test_an_unknown_host_gets_both_regional_hosts_in_the_hint(sim):
    sim.configure(wrong_region_code=2049)
    with pytest.raises(errors.AuthenticationError) as info:
        client_for(sim).submit(T2V)
    assert "https://api.minimax.io" in str(info.value)
    assert "https://api.minimaxi.com" in str(info.value)
    assert KEY not in str(info.value)


def test_an_unknown_status_word_is_still_running(sim):
    sim.configure(unknown_status_word="Rendering", render_seconds=30)
    client = client_for(sim)
    job = client.submit(T2V)
    assert client.status(job.task_id).status is JobStatus.PROCESSING
    with pytest.raises(errors.TimedOutError) as info:
        client.wait(job, timeout=0.5)
    assert info.value.task_id == job.task_id
