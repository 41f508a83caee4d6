"""Regenerating a finished MiniMax-H3 768P clip at 2K (``POST /v2/video_regeneration``) over
real HTTP against the simulator: the body (form (b): the same content plus the clip as
``base_video``), the 2K render with the same frame count and the same sound, refusals of a
base that is not an H3 768P output, reconciling a lost answer, the price, and the
``upscale_to_2k`` task inside a flow: priced first, cached (a re-run pays nothing)."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from hailuo import errors, h3, media, pricing
from hailuo.client import HailuoClient, PollPolicy
from hailuo.models import VideoRequest
from hailuo.providers.minimax_v2 import V2_DIALECT
from hailuo.simulator import SimulatorHandle, run_simulator
from tests.conftest import save_credentials
from tests.h3_helpers import audio_track, mp4, peak_frequencies, textured_png

KEY = "sim-key-h3-upscale-0123456789"
CLEAN = dict(drop_after_submit_rate=0.0, fail_rate=0.0, scripted_faults={}, cheap=False)


@pytest.fixture(scope="module")
def server() -> Iterator[SimulatorHandle]:
    with run_simulator(render_seconds=0.2, accepted_keys=[KEY]) as handle:
        yield handle


@pytest.fixture
def sim(server: SimulatorHandle) -> SimulatorHandle:
    server.configure(**CLEAN)
    server.reset(tasks=True)
    return server


@pytest.fixture
def client(sim: SimulatorHandle) -> Iterator[HailuoClient]:
    with HailuoClient("minimax", api_key=KEY, base_url=sim.base_url,
                      poll=PollPolicy(min_interval=0.05, max_interval=0.2),
                      sleep=lambda s: time.sleep(min(s, 0.2))) as c:
        yield c


def _clip(client: HailuoClient, request: VideoRequest, out: Path) -> Path:
    job = client.submit(request)
    return client.download(client.wait(job, timeout=120), out).path


def _chord(path: Path) -> list[float]:
    _, rate, _, samples = audio_track(path)
    return peak_frequencies(samples[0, 8000:8000 + rate], rate)


REQUEST = VideoRequest(model="MiniMax-H3", prompt="a lighthouse sweeps the night sea",
                       ratio="16:9", duration=4)


def test_regeneration_renders_the_clip_at_2k_with_its_sound(client, sim, tmp_path):
    base = _clip(client, REQUEST, tmp_path / "base.mp4")
    job = client.regenerate(REQUEST, base)
    assert job.model == "MiniMax-H3" and job.simulated
    big = client.download(client.wait(job, timeout=120), tmp_path / "2k.mp4").path
    info, before = media.probe(big), media.probe(base)
    assert (info.width, info.height) == (2560, 1440) == h3.frame_size("2k", "16:9")
    assert info.frames == before.frames == h3.frame_count(4) and info.fps == 24
    assert info.has_audio and info.audio_sample_rate == 32_000 and info.audio_channels == 2
    assert _chord(big) == pytest.approx(_chord(base), abs=2)  # the same sound
    task = sim.task(job.task_id)
    assert task["resolution"] == "2k" and "regeneration" in task["notes"]
    assert task["cost"] == pytest.approx(0.05 * 4)
    listed = client.list_tasks(model="MiniMax-H3", task_ids=[job.task_id])
    assert [j.task_id for j in listed] == []  # the list's default task type: generation
    regen = [e for e in sim.requests("submit") if e.get("regeneration")]
    assert [e["path"] for e in regen] == ["/v2/video_regeneration"]


def test_the_body_is_form_b():
    request = VideoRequest(model="MiniMax-H3", prompt="p", first_frame_image="https://x/a.png",
                           duration=6).validate_for("minimax")
    body = V2_DIALECT.regeneration_body(request, {"first_frame_image": "https://x/a.png"},
                                        "data:video/mp4;base64,AAAA")
    assert body == {"model": "MiniMax-H3", "resolution": "2K", "content": [
        {"type": "text", "text": "p"},
        {"type": "image_url", "image_url": {"url": "https://x/a.png"}, "role": "first_frame"},
        {"type": "video_url", "video_url": {"url": "data:video/mp4;base64,AAAA"},
         "role": "base_video"}]}


def test_a_base_that_is_not_an_h3_768p_output_is_refused(client, sim, tmp_path):
    odd = mp4(tmp_path / "odd.mp4", size=(320, 256), seconds=4.5)  # no audio, small
    with pytest.raises(errors.InvalidRequestError, match="base_video") as info:
        client.regenerate(REQUEST, odd)
    assert info.value.field == "base_video" and sim.submits() == 0
    with pytest.raises(errors.InvalidRequestError, match="MiniMax-H3 only"):
        client.regenerate(REQUEST.model_copy(update={"model": "MiniMax-H3-Max",
                                                     "duration": 5}), odd)
    # the simulator refuses it as MiniMax would (a client that skipped the checks)
    data = base64.b64encode(odd.read_bytes()).decode()
    body = {"model": "MiniMax-H3", "resolution": "2K", "content": [
        {"type": "text", "text": "p"},
        {"type": "video_url", "video_url": {"url": f"data:video/mp4;base64,{data}"},
         "role": "base_video"}]}
    headers = {"Authorization": f"Bearer {KEY}"}
    answer = httpx.post(f"{sim.base_url}/v2/video_regeneration", json=body, headers=headers)
    assert answer.status_code == 400 and "base_video" in answer.json()["error"]["message"]
    answer = httpx.post(f"{sim.base_url}/v2/video_regeneration", headers=headers,
                        json={"model": "MiniMax-H3", "source_task_id": "1", "resolution": "2K"})
    assert answer.status_code == 400 and "whitelist" in answer.json()["error"]["message"]


def test_a_lost_answer_is_reconciled_not_resent(client, sim, tmp_path):
    base = _clip(client, REQUEST, tmp_path / "base.mp4")
    sim.configure(drop_after_submit_rate=1.0)
    job = client.regenerate(REQUEST, base)
    regenerations = [t for t in sim.tasks() if "regeneration" in t["notes"]]
    assert [t["id"] for t in regenerations] == [job.task_id]
    assert any(e["query"].get("filter.task_type") == "regeneration"
               for e in sim.requests("list"))


def test_price_of_a_regeneration():
    images = tuple(f"https://x/{i}.png" for i in range(7))
    request = VideoRequest(model="MiniMax-H3", prompt="p", duration=5,
                           reference_images=images)
    quote = pricing.regeneration_quote(request)
    assert quote.usd == Decimal("0.05") * 5 + Decimal("0.025") * 2
    assert "checked 2026-11" in quote.basis and "PAYG" in quote.basis
    assert all(row.source and row.checked for row in pricing.H3_REGENERATION_PRICES)
    with pytest.raises(errors.InvalidRequestError):
        pricing.regeneration_quote(request.model_copy(update={"model": "MiniMax-H3-Max"}))


# -- the task, in a flow ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def creds(prefect_harness, server) -> str:
    return save_credentials("h3-upscale-test", server.base_url, KEY, provider="minimax")


def test_upscale_task_prices_first_and_a_rerun_pays_nothing(sim, creds, tmp_path):
    from prefect import flow

    from prefect_hailuo.blocks.credentials import resolve_connection
    from prefect_hailuo.flows import ClipSpec, Destination, GenerationOptions
    from prefect_hailuo.flows.pipeline import run_clip
    from prefect_hailuo.tasks.upscale import upscale_to_2k

    image = textured_png(tmp_path / "first.png", (800, 450), seed=11)
    options = GenerationOptions(model="MiniMax-H3", duration=4, provider="minimax")
    spec = ClipSpec(name="harbour", prompt="boats rock in the harbour",
                    first_frame_image=str(image))

    @flow
    def make_and_upscale(limit: float | None) -> tuple:
        connection = resolve_connection(creds)
        clip = run_clip(spec, connection, options, Destination(output_dir=str(tmp_path)))
        big = upscale_to_2k(clip.local_path, spec.to_request(options), connection,
                            output_dir=str(tmp_path), max_cost_usd=limit, label="harbour")
        return clip, big

    clip, big = make_and_upscale(1.0)
    assert (big.width, big.height) == (2560, 1440) and big.has_audio
    assert big.frames == media.probe(clip.local_path).frames and big.new_submit
    assert big.cost_usd == pytest.approx(0.20) and Path(big.local_path).name.startswith(
        "harbour-2k-")
    submits = sim.submits()
    again_clip, again = make_and_upscale(1.0)  # a re-run: the same tasks, nothing paid
    assert again.task_id == big.task_id and not again.new_submit
    assert again_clip.task_id == clip.task_id and sim.submits() == submits
    assert media.sha256_file(again.local_path) == big.sha256
    with pytest.raises(Exception, match="max_cost_usd"):
        make_and_upscale(0.10)  # the clip is cached; the upscale is refused before sending
    assert sim.submits() == submits
