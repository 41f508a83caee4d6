"""MiniMax-H3 over real HTTP against the simulator's v2 API: every mode end to end (size,
24 fps, the 17k+5 frame grid, a stereo 32 kHz AAC track that depends on the prompt), v2
errors (2013 plan keys included), content.url refreshed by re-querying, submits reconciled
from the list endpoint (exactly one paid task), cancelling a queued task."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from hailuo import errors, h3, media
from hailuo.client import HailuoClient, PollPolicy
from hailuo.h3media import check_media
from hailuo.models import DownloadedVideo, JobStatus, VideoRequest
from hailuo.providers.minimax_v2 import PlanKeyError
from hailuo.simulator import SimulatorHandle, run_simulator
from hailuo.simulator.h3render import H3Spec, chord
from hailuo.simulator.render import fit_cover
from tests.h3_helpers import audio_track, mp4, peak_frequencies, textured_png, wav

KEY = "sim-key-h3-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
LIVE_DEFAULTS = dict(render_seconds=0.2, queue_seconds=0.0, cheap=False,
                     drop_after_submit_rate=0.0, drop_before_rate=0.0, error_rate=0.0,
                     rate_limit_rate=0.0, fail_rate=0.0, fail_codes=[1026],
                     expired_link_rate=0.0, link_ttl_seconds=3600.0, scripted_faults={},
                     wrong_region_code=None)


def short_sleep(seconds: float) -> None:
    time.sleep(min(seconds, 0.2))


@pytest.fixture(scope="module")
def server() -> Iterator[SimulatorHandle]:
    with run_simulator(render_seconds=0.2) as handle:
        yield handle


@pytest.fixture
def sim(server: SimulatorHandle) -> SimulatorHandle:
    server.configure(**LIVE_DEFAULTS)
    server.reset(tasks=True)
    return server


@pytest.fixture
def client(sim: SimulatorHandle) -> Iterator[HailuoClient]:
    with HailuoClient("minimax", api_key=KEY, base_url=sim.base_url,
                      poll=PollPolicy(min_interval=0.05, max_interval=0.2),
                      sleep=short_sleep) as c:
        yield c


@pytest.fixture
def raw(sim: SimulatorHandle) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.base_url, headers=AUTH, timeout=30) as c:
        yield c


def generate(client: HailuoClient, request: VideoRequest, out: Path) -> DownloadedVideo:
    job = client.submit(request)
    assert job.model == request.model and job.simulated
    done = client.wait(job, timeout=120)
    return client.download(done, out)


def check_clip(path: Path, size: tuple[int, int], duration: int) -> np.ndarray:
    """Size, 24 fps, frames on the 17k+5 grid, H.264 + stereo 32 kHz AAC lasting as long
    as the picture (within a frame). Returns the decoded audio."""
    info = media.probe(path)
    frames = h3.frame_count(duration)
    assert (info.width, info.height) == size
    assert info.fps == 24 and info.frames == frames and (frames - 5) % 17 == 0
    assert info.duration == pytest.approx(frames / 24, abs=1e-3) and info.duration >= duration
    assert info.codec == "h264" and info.has_audio
    codec, rate, channels, samples = audio_track(path)
    assert (codec, rate, channels) == ("aac", 32_000, 2)
    assert samples.shape[1] / rate == pytest.approx(frames / 24, abs=1 / 24 + 0.04)
    assert np.abs(samples).max() > 0.05  # a real signal, not silence
    return samples


def psnr_to(image: Path, frame, size: tuple[int, int]) -> float:
    from PIL import Image

    with Image.open(image) as img:
        want = fit_cover(img, size)
    return media.psnr(np.asarray(want), np.asarray(frame.convert("RGB")))


def measured_chord(samples: np.ndarray) -> tuple[list[float], list[float]]:
    middle = samples[:, 8000:8000 + 32_000]  # one second, away from the fades
    return peak_frequencies(middle[0], 32_000), peak_frequencies(middle[1], 32_000)


# -- every mode -------------------------------------------------------------------------------
def test_text_to_video_ratio_and_a_soundtrack_that_depends_on_the_prompt(client, tmp_path):
    clips = {}
    for prompt in ("a brass band marching at dawn", "rain on a tin roof at night"):
        request = VideoRequest(model="MiniMax-H3-Max", prompt=prompt, ratio="9:16",
                               resolution="480p", duration=5)
        video = generate(client, request, tmp_path / f"{len(clips)}.mp4")
        samples = check_clip(video.path, (480, 848), 5)
        left, right = measured_chord(samples)
        want_left, want_right = chord(H3Spec(480, 848, h3.frame_count(5), prompt=prompt,
                                             model="MiniMax-H3-Max"))
        assert left == pytest.approx(sorted(want_left), abs=2)
        assert right == pytest.approx(sorted(want_right), abs=2)
        assert left != right  # stereo: two different channels
        clips[prompt] = (left, right)
    first, second = clips.values()
    assert first != second


def test_first_frame_is_frame_zero(client, tmp_path):
    image = textured_png(tmp_path / "first.png", (800, 450), seed=5)  # 16:9 -> adaptive
    request = VideoRequest(model="MiniMax-H3", prompt="the camera drifts over the hills",
                           first_frame_image=str(image), duration=4)
    video = generate(client, request, tmp_path / "i2v.mp4")
    check_clip(video.path, (1344, 768), 4)
    assert psnr_to(image, media.first_frame(video.path), (1344, 768)) > 28


def test_last_frame_alone_ends_on_the_image(client, tmp_path):
    image = textured_png(tmp_path / "last.png", (450, 800), seed=6)  # 9:16
    request = VideoRequest(model="MiniMax-H3", prompt="arrive at the door",
                           last_frame_image=str(image), duration=4)
    video = generate(client, request, tmp_path / "last.mp4")
    check_clip(video.path, (768, 1344), 4)
    assert psnr_to(image, media.last_frame(video.path), (768, 1344)) > 28
    assert psnr_to(image, media.first_frame(video.path), (768, 1344)) < 20


def test_first_and_last_frames(client, tmp_path):
    first = textured_png(tmp_path / "a.png", (800, 600), seed=7)  # 4:3
    last = textured_png(tmp_path / "b.png", (800, 600), seed=8)
    request = VideoRequest(model="MiniMax-H3-Max", prompt="morph", resolution="480p",
                           first_frame_image=str(first), last_frame_image=str(last),
                           duration=5)
    video = generate(client, request, tmp_path / "fl.mp4")
    check_clip(video.path, (640, 480), 5)
    assert psnr_to(first, media.first_frame(video.path), (640, 480)) > 28
    assert psnr_to(last, media.last_frame(video.path), (640, 480)) > 28


def test_references_with_an_upload(client, sim, raw, tmp_path, monkeypatch):
    import hailuo.v2client as v2c

    image = textured_png(tmp_path / "ref.png", (600, 600), seed=9)
    video = mp4(tmp_path / "ref.mp4", seconds=2.5)
    audio = wav(tmp_path / "ref.wav", seconds=3.0)
    # a body limit that the largest medium does not fit in: it goes as mm_file:// after
    # POST /v1/files/upload, the others inline as data URIs
    sizes = [check_media(str(path), field=field).data_uri_size for path, field in (
        (image, "reference_images"), (video, "reference_videos"), (audio, "reference_audios"))]
    monkeypatch.setattr(v2c, "H3_MAX_BODY_BYTES", 4096 + sum(sizes) - max(sizes) // 2)
    monkeypatch.setattr(v2c, "BODY_MARGIN", 0)
    request = VideoRequest(model="MiniMax-H3", prompt="a duet in a red room", ratio="1:1",
                           reference_images=[str(image)], reference_videos=[str(video)],
                           reference_audios=[str(audio)], duration=4)
    clip = generate(client, request, tmp_path / "refs.mp4")
    check_clip(clip.path, (768, 768), 4)
    uploads = sim.requests("upload")
    assert len(uploads) == 1 and uploads[0]["status"] == 200
    task = raw.get(f"/v2/query/video_generation/{clip.task_id}").json()["task"]
    assert task["ratio"] == "1:1" and task["usage"]["input_seconds"] == 3  # 2.5 s rounded up
    assert task["usage"]["input_image_count"] == 1


def test_2k_in_cheap_mode(client, sim, tmp_path):
    sim.configure(cheap=True)
    request = VideoRequest(model="MiniMax-H3", prompt="a city at night, neon", ratio="16:9",
                           resolution="2K", duration=4)
    video = generate(client, request, tmp_path / "2k.mp4")
    check_clip(video.path, (2560, 1440), 4)


def test_queries_put_the_id_in_the_path(client, sim):
    job = client.submit(VideoRequest(model="MiniMax-H3", prompt="p", ratio="4:3"))
    client.wait(job, timeout=60)
    statuses = sim.requests("status")
    assert statuses and all(e["path"] == f"/v2/query/video_generation/{job.task_id}"
                            and "task_id" not in e["query"] for e in statuses)
    # a fresh client (another process) finds it by model
    with HailuoClient("minimax", api_key=KEY, base_url=sim.base_url) as other:
        assert other.status(job.task_id, model="MiniMax-H3").status is JobStatus.COMPLETED


# -- errors ----------------------------------------------------------------------------------
def test_plan_key_2013(client, sim):
    sim.configure(scripted_faults={"h3_plan_key": 1})
    with pytest.raises(PlanKeyError) as info:
        client.submit(VideoRequest(model="MiniMax-H3", prompt="p", ratio="16:9"))
    assert isinstance(info.value, errors.AuthenticationError)
    assert info.value.code == 2013 and info.value.http_status == 400
    assert "pay-as-you-go" in info.value.message
    assert sim.submits() == 0 and len(sim.requests("submit")) == 1


def test_v2_error_answers(client, sim, raw):
    body = raw.post("/v2/video_generation", json={"model": "MiniMax-H3", "prompt": "v1 field",
                                                  "resolution": "768P", "duration": 5})
    answer = body.json()
    assert body.status_code == 400 and answer["type"] == "error"
    assert answer["error"]["type"] == "bad_request_error"
    assert answer["error"]["message"].endswith("(2013)") and answer["error"]["http_code"] == "400"
    with pytest.raises(errors.InvalidRequestError) as info:
        client.status("123456789012345", model="MiniMax-H3")
    assert info.value.http_status == 400 and info.value.code == 2013
    sim.configure(wrong_region_code=2049)
    with pytest.raises(errors.AuthenticationError) as auth:
        client.submit(VideoRequest(model="MiniMax-H3", prompt="p", ratio="16:9"))
    assert auth.value.code == 2049 and "region" in auth.value.message
    sim.configure(wrong_region_code=None, rate_limit_rate=1.0)
    client.max_rate_limit_waits = 1
    with pytest.raises(errors.RateLimitedError):
        client.submit(VideoRequest(model="MiniMax-H3", prompt="p", ratio="16:9"))
    assert sim.submits() == 0


def test_failed_task(client, sim, raw):
    sim.configure(fail_rate=1.0, fail_codes=[1026])
    job = client.submit(VideoRequest(model="MiniMax-H3", prompt="p", ratio="16:9"))
    with pytest.raises(errors.ContentRejectedError) as info:
        client.wait(job, timeout=30)
    assert info.value.code == 1026 and info.value.task_id == job.task_id
    task = raw.get(f"/v2/query/video_generation/{job.task_id}").json()["task"]
    assert task["status"] == "failed" and task["error"]["code"] == "1026"


def test_expired_url_is_refreshed_by_querying_again(client, sim, tmp_path):
    sim.configure(expired_link_rate=1.0)
    job = client.wait(client.submit(VideoRequest(model="MiniMax-H3", prompt="p",
                                                 ratio="3:4")), timeout=60)
    sim.configure(expired_link_rate=0.0)
    sim.reset()
    video = client.download(job, tmp_path / "fresh.mp4")
    assert video.frames == h3.frame_count(5)
    downloads = sim.requests("download")
    assert [e["status"] for e in downloads] == [410, 200]
    assert len(sim.requests("status")) == 1  # one re-query signed a new content.url


# -- money safety: reconcile from the list endpoint -------------------------------------------
def h3_tasks(sim: SimulatorHandle) -> list[dict]:
    return [t for t in sim.tasks() if t["model"].startswith("MiniMax-H3")]


def test_dropped_connection_adopts_the_one_listed_task(client, sim):
    sim.configure(drop_after_submit_rate=1.0, fail_rate=1.0)  # failed: never rendered
    job = client.submit(VideoRequest(model="MiniMax-H3", prompt="once", ratio="21:9",
                                     duration=7))
    assert sim.submits() == 1 and len(sim.requests("submit")) == 1
    assert [t["id"] for t in h3_tasks(sim)] == [job.task_id]
    assert sim.requests("list")  # found through GET /v2/query/video_generation
    assert job.model == "MiniMax-H3"


def test_5xx_after_the_task_was_made_adopts_it(client, sim):
    sim.configure(scripted_faults={"error_after_accept": 1}, fail_rate=1.0)
    job = client.submit(VideoRequest(model="MiniMax-H3", prompt="p", ratio="16:9",
                                     duration=8))
    assert sim.submits() == 1 and [t["id"] for t in h3_tasks(sim)] == [job.task_id]


def test_definite_5xx_with_nothing_listed_is_sent_again(client, sim):
    sim.configure(scripted_faults={"v2_server_error": 1}, fail_rate=1.0)
    job = client.submit(VideoRequest(model="MiniMax-H3", prompt="p", ratio="16:9",
                                     duration=9))
    assert [e["status"] for e in sim.requests("submit")] == [500, 200]
    assert sim.submits() == 1 and [t["id"] for t in h3_tasks(sim)] == [job.task_id]


def test_several_matches_are_ambiguous(client, sim, raw):
    sim.configure(fail_rate=1.0)
    body = {"model": "MiniMax-H3", "content": [{"type": "text", "text": "twin"}],
            "resolution": "768P", "duration": 10, "ratio": "16:9"}
    others = [raw.post("/v2/video_generation", json=body).json()["task_id"] for _ in range(2)]
    sim.configure(drop_after_submit_rate=1.0)
    with pytest.raises(errors.AmbiguousSubmitError) as info:
        client.submit(VideoRequest(model="MiniMax-H3", prompt="twin", ratio="16:9",
                                   duration=10))
    assert len(info.value.details["candidates"]) == 3
    assert set(others) <= set(info.value.details["candidates"])
    assert "list_tasks" in info.value.message and "cancel" in info.value.message
    assert sim.submits() == 3  # nothing re-sent


def fake_minimax(items: list[dict]) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """POST /v2/video_generation breaks after sending; the list answers ``items``."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "POST":
            raise httpx.ReadError("connection reset after the body was sent", request=request)
        assert request.url.path == "/v2/query/video_generation"
        return httpx.Response(200, json={"items": items, "total": len(items)})

    return httpx.MockTransport(handler), seen


def listed(task_id: str, text: str | None = None, age: int = 0, **fields) -> dict:
    """A listed task; ``created_at`` is filled in when the test runs (``age`` seconds
    before then), not when the parameters are collected minutes earlier."""
    item = {"id": task_id, "model": "MiniMax-H3", "status": "queued", "age": age,
            "resolution": "768P", "duration": 6, "ratio": "16:9",
            "task_type": "generation", **fields}
    if text is not None:
        item["prompt"] = text
    return item


@pytest.mark.parametrize("items,adopted", [
    ([], None),  # nothing listed after a lost answer: ambiguous, never re-sent
    ([listed("111", "another prompt")], None),  # a listing that shows another prompt
    ([listed("111", age=3600)], None),  # too old
    ([listed("111", duration=10)], None),  # another duration
    ([listed("111", "the prompt"), listed("222", "another prompt")], "111"),
    ([listed("333")], "333"),  # the documented list shows no prompt: model/time/shape
    ([listed("111")], None),  # 111 was adopted above: this process owns it, not a match
])
def test_reconcile_rules(items, adopted):
    now = int(time.time())
    items = [{**{k: v for k, v in item.items() if k != "age"},
              "created_at": now - item["age"]} for item in items]
    transport, seen = fake_minimax(items)
    client = HailuoClient("minimax", api_key=KEY, base_url="https://api.minimax.io",
                          transport=transport, sleep=lambda s: None)
    request = VideoRequest(model="MiniMax-H3", prompt="the prompt", ratio="16:9", duration=6)
    if adopted is None:
        with pytest.raises(errors.AmbiguousSubmitError):
            client.submit(request)
    else:
        assert client.submit(request).task_id == adopted
    assert sum(r.method == "POST" for r in seen) == 1  # the paid call went out once


# -- cancel ----------------------------------------------------------------------------------
def test_cancel_a_queued_task(client, sim, raw):
    sim.configure(queue_seconds=30.0)
    job = client.submit(VideoRequest(model="MiniMax-H3", prompt="p", ratio="1:1"))
    cancelled = client.cancel(job.task_id)
    assert cancelled.status is JobStatus.CANCELLED
    assert [e["method"] for e in sim.requests("cancel")] == ["DELETE"]
    task = raw.get(f"/v2/query/video_generation/{job.task_id}").json()["task"]
    assert task["status"] == "cancelled"
    assert sim.task(job.task_id)["cost"] == 0.0 and sim.task(job.task_id)["path"] is None
    with pytest.raises(errors.GenerationFailedError, match="cancelled"):
        client.wait(job, timeout=10)
    listed_ids = [j.task_id for j in client.list_tasks(model="MiniMax-H3",
                                                       status="cancelled")]
    assert listed_ids == [job.task_id]


def test_running_and_finished_tasks_are_not_cancelled(client, sim):
    sim.configure(render_seconds=30.0)
    job = client.submit(VideoRequest(model="MiniMax-H3", prompt="p", ratio="1:1"))
    assert client.cancel(job.task_id).status is JobStatus.PROCESSING
    assert sim.requests("cancel") == []  # a running task: no DELETE (it would be refused)
