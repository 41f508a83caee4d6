"""Reliability under faults: a chaos batch, a batch killed half-way, bounded waits.

Everything runs for real: the simulator over HTTP with faults on, the Prefect test server,
S3 on moto's server. The tests print the counts they checked (see them with ``-s``).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from hailuo import media
from hailuo.errors import TimedOutError
from hailuo.simulator import run_simulator
from tests.conftest import kill_python_when, s3_client

pytestmark = pytest.mark.prefect

KEY = "hk-reliability-7c1d2e3f4a5b6c7d"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sim():
    with run_simulator(render_seconds=0.3, cheap=True, accepted_keys=[KEY], seed=7) as handle:
        yield handle


@pytest.fixture(scope="module")
def creds(prefect_harness, sim) -> str:
    from pydantic import SecretStr

    from prefect_hailuo.blocks import HailuoCredentials

    HailuoCredentials(provider="apimart", base_url=sim.base_url, api_key=SecretStr(KEY),
                      max_retries=6).save("hailuo-chaos", overwrite=True)
    return "hailuo-chaos"


def _options(**kw):
    from prefect_hailuo.flows import GenerationOptions

    return GenerationOptions(resolution="512p", duration=5, **kw)


def test_chaos_batch_delivers_every_clip_once(sim, creds, s3_bucket_block, s3_endpoint,
                                              tmp_path):
    from prefect_hailuo.flows import ClipSpec, Destination, generate_batch

    sim.reset(tasks=True)
    sim.configure(error_rate=0.15, rate_limit_rate=0.10, drop_before_rate=0.025,
                  drop_after_submit_rate=0.05, fail_rate=0.05, fail_codes=[1000, 1033],
                  truncate_rate=0.05, expired_link_rate=0.10, seed=11)
    try:
        clips = [ClipSpec(name=f"chaos-{i:02d}", prompt=f"[Pan right] chaos scene {i}, "
                          "harbour at dawn, soft light") for i in range(30)]
        result = generate_batch(clips=clips, options=_options(max_resubmits=3),
                                credentials_block=creds, max_concurrency=8,
                                destination=Destination(output_dir=str(tmp_path),
                                                        s3_bucket_block=s3_bucket_block,
                                                        s3_prefix="chaos"))
    finally:
        sim.configure(error_rate=0, rate_limit_rate=0, drop_before_rate=0,
                      drop_after_submit_rate=0, fail_rate=0, truncate_rate=0,
                      expired_link_rate=0)
    assert len(result.clips) == 30 and not result.failed
    s3 = s3_client(s3_endpoint)
    for clip in result.clips:
        assert media.sha256_file(Path(clip.local_path)) == clip.sha256
        media.probe(Path(clip.local_path))
        parsed = urlparse(clip.s3_uri)
        body = s3.get_object(Bucket=parsed.netloc, Key=parsed.path.lstrip("/"))["Body"].read()
        assert hashlib.sha256(body).hexdigest() == clip.sha256  # no corrupt upload
    tasks = sim.tasks()
    failed = [t for t in tasks if t["fail_code"] is not None]
    assert all(t["fail_code"] in (1000, 1033) for t in failed)
    # Every created task is one submit; a request is submitted again only after a
    # provider-reported failure (resubmitted by policy).
    assert sim.submits() == len(tasks) == 30 + len(failed)
    keys = Counter(t["idempotency_key"] for t in tasks)
    assert max(keys.values()) == 1, "a request was silently submitted twice"
    log = sim.requests()
    faults = Counter(f for r in log if r["fault"] for f in r["fault"].split(","))
    replays = sum(1 for r in log if r["replay"])
    dropped_after = faults.get("dropped_after_submit", 0)
    print(f"\nchaos: 30 delivered, {len(tasks)} tasks created, {len(failed)} provider failures "
          f"resubmitted, faults {dict(faults)}, idempotent replays {replays}")
    assert faults["server_error"] > 0 and faults["rate_limited"] > 0
    assert faults["truncated"] + faults["link_expired"] > 0
    if dropped_after:
        assert replays >= 1  # the ambiguous submit was reconciled by replay, not duplicated


def test_batch_killed_half_way_submits_nothing_twice(sim, prefect_harness, tmp_path):
    """SIGKILL a batch while clips are in flight; the re-run pays for nothing again.

    On MiniMax, which has no idempotency key: only our own persisted submits can prevent
    a second payment (clips run as tasks inside the batch, so this also proves nested
    submits are committed at once, not when the clip finishes).
    """
    from pydantic import SecretStr

    from prefect_hailuo.blocks import HailuoCredentials
    from prefect_hailuo.flows import ClipSpec, Destination, GenerationOptions, generate_batch

    HailuoCredentials(provider="minimax", base_url=sim.base_url, api_key=SecretStr(KEY),
                      max_retries=6).save("hailuo-kill", overwrite=True)
    sim.reset(tasks=True)
    sim.configure(render_seconds=120)
    prompts = [f"[Zoom out] killed batch clip {i}, market street, noon" for i in range(6)]

    def two_waiting() -> bool:  # concurrency 2: two clips submitted and polled, four not yet
        polled = {r["task_id"] for r in sim.requests(kind="status") if r.get("task_id")}
        return sim.submits() >= 2 and {t["id"] for t in sim.tasks()} <= polled

    kill_python_when(f"""
        from prefect_hailuo.flows import ClipSpec, Destination, GenerationOptions, generate_batch
        generate_batch(clips=[ClipSpec(prompt=p) for p in {prompts!r}],
                       options=GenerationOptions(),
                       credentials_block="hailuo-kill", max_concurrency=2,
                       destination=Destination(output_dir={str(tmp_path)!r}))
    """, two_waiting)
    first_round = {t["id"] for t in sim.tasks()}
    assert 2 <= len(first_round) < 6
    sim.configure(render_seconds=0.3)
    for task_id in first_round:
        httpx.post(f"{sim.base_url}/_sim/tasks/{task_id}/complete-now").raise_for_status()
    result = generate_batch(clips=[ClipSpec(prompt=p) for p in prompts],
                            options=GenerationOptions(), credentials_block="hailuo-kill",
                            max_concurrency=3, destination=Destination(output_dir=str(tmp_path)))
    assert len(result.clips) == 6
    assert first_round <= {c.task_id for c in result.clips}, "killed clips were not resumed"
    assert sim.submits() == 6
    print(f"\nkilled batch: {len(first_round)} submitted before SIGKILL, resumed; 6 submits "
          "in total")


def test_stuck_task_times_out_keeping_its_id_and_resumes_later(sim, creds, tmp_path):
    from prefect_hailuo.flows import Destination, text_to_video

    sim.configure(queue_seconds=600)
    before = sim.submits()
    prompt = "[Static shot] a queue that never moves, rainy bus stop"
    try:
        with pytest.raises(TimedOutError) as info:
            text_to_video(prompt=prompt, options=_options(timeout_seconds=3),
                          credentials_block=creds,
                          destination=Destination(output_dir=str(tmp_path)))
    finally:
        sim.configure(queue_seconds=0)
    task_id = info.value.task_id
    assert task_id and sim.task(task_id)["status"] not in ("completed", "failed")
    httpx.post(f"{sim.base_url}/_sim/tasks/{task_id}/complete-now").raise_for_status()
    result = text_to_video(prompt=prompt, options=_options(), credentials_block=creds,
                           destination=Destination(output_dir=str(tmp_path)))
    assert result.task_id == task_id and sim.submits() == before + 1


def test_callbacks_wake_the_flow(sim, creds, tmp_path):
    """With callbacks on, the wait ends on the provider's callback, not the next poll."""
    from prefect_hailuo.flows import Destination, text_to_video

    sim.configure(render_seconds=2)
    try:
        result = text_to_video(prompt="[Pedestal up] a kite rises over dunes, bright noon",
                               options=_options(callbacks=True), credentials_block=creds,
                               destination=Destination(output_dir=str(tmp_path)))
    finally:
        sim.configure(render_seconds=0.3)
    deliveries = [c for c in sim.callbacks() if c.get("task_id") == result.task_id]
    assert deliveries and any(200 <= (c.get("status") or 0) < 300 for c in deliveries)
