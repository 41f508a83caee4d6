"""A chaos run mixing the providers' newer failure modes (issue "Real providers and hostile
answers"): every clip is still delivered, verified, with one paid task each.

On APIMart: idempotency 409 "in progress" and 503 "unavailable" answers, a task created
and then answered with a 502 (re-sent under the same Idempotency-Key, which this model's
schema confirms, so the provider replays it), "completed" without a URL, local images that
must be uploaded first, plus the older faults. On MiniMax v1: ``Success`` without a
``file_id``, a transient 1013 from ``files/retrieve`` and files without a URL.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from hailuo import media
from hailuo.simulator import run_simulator

pytestmark = pytest.mark.prefect

KEY = "hk-chaos-providers-0f1e2d3c4b5a69788"


@pytest.fixture(scope="module")
def sim():
    with run_simulator(render_seconds=0.3, cheap=True, accepted_keys=[KEY], seed=5) as handle:
        yield handle


def _credentials(provider: str, base_url: str) -> str:
    from pydantic import SecretStr

    from prefect_hailuo.blocks import HailuoCredentials

    name = f"chaos-providers-{provider}"
    HailuoCredentials(provider=provider, base_url=base_url, api_key=SecretStr(KEY),
                      max_retries=6).save(name, overwrite=True)
    return name


def _check_delivered(result, sim, n: int) -> dict[str, int]:
    assert len(result.clips) == n and not result.failed
    for clip in result.clips:
        assert media.sha256_file(Path(clip.local_path)) == clip.sha256
        media.probe(Path(clip.local_path))
    tasks = sim.tasks()
    failed = [t for t in tasks if t["fail_code"] is not None]
    # one created task per clip, plus one per provider-reported failure (resubmitted)
    assert sim.submits() == len(tasks) == n + len(failed)
    keys = Counter(t["idempotency_key"] for t in tasks if t["idempotency_key"])
    assert not keys or max(keys.values()) == 1, "a request was silently submitted twice"
    return dict(Counter(f for r in sim.requests() if r["fault"]
                        for f in r["fault"].split(",")))


def test_apimart_chaos_with_idempotency_answers_uploads_and_missing_urls(
        sim, prefect_harness, tmp_path):
    from prefect_hailuo.flows import ClipSpec, Destination, GenerationOptions, generate_batch

    images = []
    for i in range(4):
        path = tmp_path / f"frame-{i}.png"
        Image.new("RGB", (640, 360), (40 * i, 90, 200 - 30 * i)).save(path)
        images.append(str(path))
    clips = [ClipSpec(name=f"t2v-{i:02d}", prompt=f"[Truck left] chaos harbour scene {i}")
             for i in range(12)]
    clips += [ClipSpec(name=f"i2v-{i:02d}", prompt="[Push in] the boat drifts slowly",
                       first_frame_image=images[i]) for i in range(4)]
    creds = _credentials("apimart", sim.base_url)
    sim.reset(tasks=True)
    sim.configure(error_rate=0.05, rate_limit_rate=0.05, fail_rate=0.05,
                  fail_codes=[1000, 1033], truncate_rate=0.05, expired_link_rate=0.05,
                  fault_rates={"idempotency_in_progress": 0.1,
                               "idempotency_unavailable": 0.1,
                               "error_after_accept": 0.1,
                               "completed_without_url": 0.1}, seed=23)
    try:
        result = generate_batch(clips=clips, credentials_block=creds, max_concurrency=6,
                                options=GenerationOptions(resolution="512p", duration=5,
                                                          max_resubmits=3),
                                destination=Destination(output_dir=str(tmp_path / "out")))
    finally:
        sim.configure(error_rate=0, rate_limit_rate=0, fail_rate=0, truncate_rate=0,
                      expired_link_rate=0, fault_rates={})
    faults = _check_delivered(result, sim, len(clips))
    print(f"\napimart chaos: {len(clips)} delivered, faults {faults}")
    assert faults.get("idempotency_in_progress", 0) + faults.get(
        "idempotency_unavailable", 0) > 0
    uploads = [r for r in sim.requests() if r["path"].startswith("/v1/uploads/images")]
    assert uploads, "local images reach APIMart as uploads"


def test_minimax_chaos_with_missing_file_ids_and_transient_file_errors(
        sim, prefect_harness, tmp_path):
    from prefect_hailuo.flows import ClipSpec, Destination, GenerationOptions, generate_batch

    clips = [ClipSpec(name=f"mm-{i:02d}", prompt=f"[Pan left] chaos lighthouse scene {i}")
             for i in range(10)]
    creds = _credentials("minimax", sim.base_url)
    sim.reset(tasks=True)
    sim.configure(error_rate=0.05, rate_limit_rate=0.05,
                  fault_rates={"success_without_file_id": 0.15, "file_1013": 0.2,
                               "file_without_url": 0.1}, seed=29)
    try:
        result = generate_batch(clips=clips, credentials_block=creds, max_concurrency=5,
                                options=GenerationOptions(resolution="768p", duration=6),
                                destination=Destination(output_dir=str(tmp_path / "out")))
    finally:
        sim.configure(error_rate=0, rate_limit_rate=0, fault_rates={})
    faults = _check_delivered(result, sim, len(clips))
    print(f"\nminimax chaos: {len(clips)} delivered, faults {faults}")
    assert faults.get("file_1013", 0) + faults.get("success_without_file_id", 0) > 0
