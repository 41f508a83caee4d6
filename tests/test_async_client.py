"""AsyncHailuoClient: the simulator over real HTTP, and the same decisions as the sync one.

The async client exists so one worker can keep hundreds of clips waiting without a thread
each; these tests hold it to that (200 waits, a bounded thread count) and to the sync
client's rules: retries of transient answers, the wait's timeout keeping the task id, a
verified download, the key never in an error. The parity tests feed both clients the same
scripted answers and require the same sleeps and the same outcome.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from hailuo import AsyncHailuoClient, errors, media
from hailuo.client import HailuoClient, PollPolicy
from hailuo.models import Job, JobStatus, VideoRequest
from hailuo.simulator import run_simulator

KEY = "sk-async/TEST+KEY=4b8e1f0a9c27"
FAST = PollPolicy(min_interval=0.05, max_interval=0.2)
T2V = VideoRequest(prompt="[Truck left] a tram crosses a bridge at night, neon reflections")


@contextmanager
def simulator(**knobs) -> Iterator:
    knobs = {"render_seconds": 0.3, "cheap": True, **knobs}
    with run_simulator(**knobs) as sim:
        yield sim


def async_client(sim, provider: str = "apimart", **kw) -> AsyncHailuoClient:
    kw.setdefault("poll", FAST)
    kw.setdefault("backoff", 0.01)
    return AsyncHailuoClient(provider, api_key=KEY, base_url=sim.base_url, **kw)


def leaks(text: str) -> list[str]:
    """The spellings of KEY found in ``text``."""
    forms = {"raw": KEY, "url-encoded": quote(KEY, safe=""), "prefix": KEY[:20],
             "suffix": KEY[-18:]}
    return [name for name, form in forms.items() if form in text]


# ------------------------------------------------------------- the simulator, for real
@pytest.mark.parametrize("provider", ["apimart", "minimax"])
def test_create_and_poll_then_download_delivers_a_verified_clip(provider, tmp_path):
    async def scenario(sim) -> tuple[Job, object]:
        async with async_client(sim, provider) as client:
            job = await client.create_and_poll(T2V, timeout=60)
            video = await client.download(job, tmp_path / "out" / "clip.mp4",
                                          within=tmp_path / "out")
            return job, video

    with simulator() as sim:
        job, video = asyncio.run(scenario(sim))
        assert sim.submits() == 1
    assert job.status is JobStatus.COMPLETED and job.simulated and job.video_urls
    assert video.path == tmp_path / "out" / "clip.mp4" and video.task_id == job.task_id
    assert hashlib.sha256(video.path.read_bytes()).hexdigest() == video.sha256
    info = media.probe(video.path)
    assert (info.width, info.height, info.frames) == (video.width, video.height, video.frames)
    assert not [p for p in video.path.parent.iterdir() if ".part" in p.name]


def test_transient_status_failures_are_retried_until_the_clip_arrives(tmp_path):
    async def scenario(sim) -> Job:
        async with async_client(sim, max_retries=8) as client:
            job = await client.submit(T2V)
            sim.configure(error_rate=0.4, rate_limit_rate=0.2, seed=5,
                          scripted_faults={"completed_without_url": 1})
            try:
                done = await client.wait(job, timeout=60)
            finally:
                sim.configure(error_rate=0, rate_limit_rate=0, scripted_faults={})
            await client.download(done, tmp_path / "v.mp4")
            return done

    with simulator() as sim:
        done = asyncio.run(scenario(sim))
        faults = [r["fault"] for r in sim.requests("status") if r["fault"]]
    assert done.status is JobStatus.COMPLETED and (tmp_path / "v.mp4").stat().st_size > 0
    transient = [f for f in faults if "server_error" in f or "rate_limited" in f]
    assert len(transient) >= 2, faults  # 5xx / 429 answers to status GETs, retried
    assert any("completed_without_url" in f for f in faults)


def test_wait_past_its_timeout_raises_timed_out_error_keeping_the_task_id():
    async def scenario(sim) -> tuple[str, errors.TimedOutError, float]:
        async with async_client(sim) as client:
            job = await client.submit(T2V)
            started = time.monotonic()
            with pytest.raises(errors.TimedOutError) as caught:
                await client.wait(job.task_id, timeout=1.0)
            return job.task_id, caught.value, time.monotonic() - started

    with simulator(queue_seconds=600) as sim:
        task_id, error, took = asyncio.run(scenario(sim))
        assert sim.task(task_id)["status"] not in ("completed", "failed")
    assert error.task_id == task_id and error.retryable
    assert 0.9 <= took < 5


def test_wait_timeout_bounds_a_trickled_status_call_in_flight():
    async def scenario(sim) -> tuple[str, errors.TimedOutError, float]:
        async with async_client(sim, call_deadline=120) as client:
            job = await client.submit(T2V)
            sim.configure(trickle_bytes=0.4)
            started = time.monotonic()
            with pytest.raises(errors.TimedOutError) as caught:
                await client.wait(job, timeout=2.0)
            return job.task_id, caught.value, time.monotonic() - started

    with simulator() as sim:
        task_id, error, took = asyncio.run(scenario(sim))
    assert error.task_id == task_id and took < 10


def test_two_hundred_waits_share_one_event_loop_without_a_thread_each():
    n = 200
    waiting: set[str] = set()  # tasks seen still running by their wait

    async def scenario(sim) -> tuple[list[Job], int, int]:
        async with async_client(sim, poll=PollPolicy(min_interval=0.2,
                                                     max_interval=0.5)) as client:
            jobs = await asyncio.gather(*(client.submit(T2V.model_copy(
                update={"prompt": f"{T2V.prompt} #{i}"})) for i in range(n)))
            # Submits ran in worker threads (by design); the waits must not add any.
            baseline = threading.active_count()
            peak = baseline
            stop = asyncio.Event()

            async def sample() -> None:
                nonlocal peak
                while not stop.is_set():
                    peak = max(peak, threading.active_count())
                    await asyncio.sleep(0.02)

            def note(job: Job) -> None:
                if not job.status.terminal:
                    waiting.add(job.task_id)

            sampler = asyncio.create_task(sample())
            done = await asyncio.gather(*(client.wait(j, timeout=120, on_update=note)
                                          for j in jobs))
            stop.set()
            await sampler
            return done, baseline, peak

    with simulator(render_seconds=10.0, render_workers=4) as sim:
        started = len(sim.requests("status"))
        done, baseline, peak = asyncio.run(scenario(sim))
        polls = len(sim.requests("status")) - started
    print(f"\n{n} waits: threads {baseline} -> peak {peak}, {polls} status polls, "
          f"{len(waiting)} seen running")
    assert len(done) == n and all(j.status is JobStatus.COMPLETED for j in done)
    assert len({j.task_id for j in done}) == n
    assert len(waiting) >= n // 2 and polls >= 2 * n  # they did wait, together
    assert peak - baseline <= 5, f"threads grew from {baseline} to {peak} during {n} waits"


@pytest.mark.parametrize("provider", ["apimart", "minimax"])
def test_the_key_never_reaches_errors_or_jobs(provider, caplog):
    caplog.set_level("DEBUG")

    async def scenario(sim) -> tuple[list[Job], list[BaseException]]:
        seen: list[Job] = []
        raised: list[BaseException] = []
        async with async_client(sim, provider) as client:
            job = await client.submit(T2V)
            with pytest.raises(errors.GenerationFailedError) as failed:
                await client.wait(job, timeout=30, on_update=seen.append)
            raised.append(failed.value)
            unknown = "task_unknown123" if provider == "apimart" else "999999999999999"
            with pytest.raises(errors.HailuoError) as caught:
                await client.status(unknown)
            raised.append(caught.value)
        async with AsyncHailuoClient(provider, api_key=KEY + "-wrong",
                                     base_url=sim.base_url) as wrong:
            with pytest.raises(errors.AuthenticationError) as refused:
                await wrong.status(job.task_id)
            raised.append(refused.value)
        return seen, raised

    with simulator(echo_key_in_errors=True, fail_rate=1.0, fail_codes=[1000],
                   accepted_keys=[KEY]) as sim:
        seen, raised = asyncio.run(scenario(sim))
    assert seen[-1].status is JobStatus.FAILED and seen[-1].error_message
    texts = [text for exc in raised for text in (str(exc), repr(exc))]
    texts += [seen[-1].model_dump_json(), caplog.text]
    for text in texts:
        assert leaks(text) == [], text
    assert "***" in str(raised[0])
    assert KEY not in repr(AsyncHailuoClient("apimart", api_key=KEY))


def test_h3_task_is_polled_on_the_v2_api_without_a_thread(tmp_path):
    async def scenario(sim) -> tuple[Job, Path]:
        async with async_client(sim, "minimax") as client:
            job = await client.submit(VideoRequest(model="MiniMax-H3", prompt=T2V.prompt,
                                                   duration=5, resolution="768p", ratio="16:9"))
            done = await client.wait(job, timeout=60)
            again = await client.status(done.task_id, model="MiniMax-H3")
            assert again.status is JobStatus.COMPLETED
            video = await client.download(done, tmp_path / "h3.mp4")
            return done, video.path

    with simulator() as sim:
        done, path = asyncio.run(scenario(sim))
        v2_polls = [r for r in sim.requests() if r["method"] == "GET"
                    and r["path"].startswith("/v2/query/")]
        v1_polls = [r for r in sim.requests() if r["path"].startswith("/v1/query/")]
    assert done.status is JobStatus.COMPLETED and path.stat().st_size > 0
    assert len(v2_polls) >= 2 and not v1_polls


# ----------------------------------------- sync and async decide alike (scripted answers)
def _status(status: str, **data) -> dict:
    return {"code": 200, "data": {"id": "task_1", "status": status, **data}}


DONE = _status("completed", progress=100,
               result={"videos": [{"url": ["https://cdn.test/a.mp4"]}]})
Answer = tuple[int, dict, dict[str, str]]

SCRIPTS: dict[str, list[Answer]] = {
    "503 with Retry-After, then done": [
        (503, {"error": {"message": "busy", "type": "server_error"}}, {"Retry-After": "2"}),
        (200, DONE, {})],
    "429 then 502 then running then done": [
        (429, {"error": {"message": "slow down"}}, {"Retry-After": "1"}),
        (502, {}, {}), (200, _status("processing", progress=50), {}), (200, DONE, {})],
    "5xx beyond the GET's retries, polled again by the wait": [
        (500, {}, {})] * 3 + [(200, DONE, {})],
    "5xx until the wait gives up": [(503, {}, {})] * 40,
    "content refused": [(200, _status("processing"), {}),
                        (200, _status("failed", error={"code": 1026, "message": "policy"}),
                         {})],
    "completed without a link, then with one": [
        (200, _status("completed", progress=100), {}), (200, DONE, {})],
    "an answer about another task": [
        (200, {"code": 200, "data": {"id": "task_2", "status": "processing"}}, {})],
    "an undecodable 200, then done": [(200, "not json", {}), (200, DONE, {})],
    "a status answer too large": [(200, {"pad": "x" * 5000}, {})],
    "a gzip bomb of a status answer": [(200, "bomb", {"Content-Encoding": "gzip"})],
}


class Script:
    """Answers a status GET from the script (the last answer repeats) and a download
    with ``video``; records every request."""

    def __init__(self, answers: list[Answer], video: Callable[[int], httpx.Response]
                 ) -> None:
        self.answers, self.video = answers, video
        self.gets = self.downloads = 0

    def api(self, request: httpx.Request) -> httpx.Response:
        status, body, headers = self.answers[min(self.gets, len(self.answers) - 1)]
        self.gets += 1
        if body == "bomb":
            return httpx.Response(status, headers=headers,
                                  content=gzip.compress(b" " * (8 << 20)))
        content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        return httpx.Response(status, headers=headers, content=content)

    def cdn(self, request: httpx.Request) -> httpx.Response:
        self.downloads += 1
        return self.video(self.downloads)


def _settings() -> dict:
    return dict(base_url="https://api.example.test", backoff=0.0, max_retries=2,
                max_status_bytes=4096, max_download_bytes=1 << 20,
                poll=PollPolicy(min_interval=1.0, max_interval=4.0,
                                max_consecutive_failures=3))


def run_sync(script: Script, call: str, *args) -> tuple[object, list[float]]:
    sleeps: list[float] = []
    client = HailuoClient("apimart", api_key=KEY, transport=httpx.MockTransport(script.api),
                          download_transport=httpx.MockTransport(script.cdn),
                          sleep=sleeps.append, **_settings())
    with client:
        try:
            return getattr(client, call)(*args), sleeps
        except errors.HailuoError as exc:
            return exc, sleeps


def run_async(script: Script, call: str, *args) -> tuple[object, list[float]]:
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async def go() -> object:
        async with AsyncHailuoClient("apimart", api_key=KEY,
                                     transport=httpx.MockTransport(script.api),
                                     download_transport=httpx.MockTransport(script.cdn),
                                     sleep=sleep, **_settings()) as client:
            try:
                return await getattr(client, call)(*args)
            except errors.HailuoError as exc:
                return exc

    return asyncio.run(go()), sleeps


def outcome(result: object) -> tuple:
    if isinstance(result, errors.HailuoError):
        return type(result).__name__, result.task_id, result.code, result.http_status
    if isinstance(result, Job):
        return result.status, result.task_id, tuple(result.video_urls)
    return (type(result).__name__,)


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_sync_and_async_wait_make_the_same_decisions(name):
    video = lambda n: httpx.Response(404)  # noqa: E731 - no download in these scripts
    sync_result, sync_sleeps = run_sync(Script(SCRIPTS[name], video), "wait", "task_1")
    async_result, async_sleeps = run_async(Script(SCRIPTS[name], video), "wait", "task_1")
    assert outcome(async_result) == outcome(sync_result)
    assert async_sleeps == pytest.approx(sync_sleeps)


def _downloads(tiny: bytes) -> dict[str, Callable[[int], httpx.Response]]:
    return {
        "a real clip": lambda n: httpx.Response(200, content=tiny),
        "a refused link, then a fresh one": lambda n: httpx.Response(
            403 if n == 1 else 200, content=b"" if n == 1 else tiny),
        "always expired": lambda n: httpx.Response(410),
        "an unknown encoding": lambda n: httpx.Response(
            200, headers={"Content-Encoding": "br"}, content=tiny),
        "larger than the cap": lambda n: httpx.Response(200, content=b"\0" * (2 << 20)),
        "not a video": lambda n: httpx.Response(200, content=b"<html>nope</html>"),
        "empty": lambda n: httpx.Response(200, content=b""),
    }


@pytest.mark.parametrize("name", list(_downloads(b"")))
def test_sync_and_async_download_make_the_same_decisions(name, tiny_mp4, tmp_path):
    video = _downloads(tiny_mp4)[name]
    done = Job(task_id="task_1", provider="apimart", status=JobStatus.COMPLETED,
               video_urls=["https://cdn.test/a.mp4"])
    sync_result, sync_sleeps = run_sync(Script([(200, DONE, {})], video), "download", done,
                                        tmp_path / "sync" / "v.mp4")
    async_result, async_sleeps = run_async(Script([(200, DONE, {})], video), "download",
                                           done, tmp_path / "async" / "v.mp4")
    if isinstance(sync_result, errors.HailuoError):
        assert outcome(async_result) == outcome(sync_result)
        assert not list((tmp_path / "async").iterdir())  # nothing half-written is left
    else:
        assert async_result.sha256 == sync_result.sha256 == hashlib.sha256(tiny_mp4).hexdigest()
        assert (async_result.size, async_result.frames) == (sync_result.size,
                                                            sync_result.frames)
    assert async_sleeps == pytest.approx(sync_sleeps)
