"""Scale-out pieces on one Prefect test server: the per-account in-flight cap, the shared
state the setup script gives a pool, the shared-state warning, and chunk results crossing
a process boundary with their typed errors. The whole spread over real workers is
``tests/test_scale_out.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

from hailuo.errors import (
    ClipFailure,
    ClipsFailedError,
    GenerationFailedError,
    HailuoError,
    InvalidRequestError,
    TimedOutError,
)
from hailuo.simulator import run_simulator
from tests.conftest import save_credentials

pytestmark = pytest.mark.prefect


# -- chunk results travel as JSON and come back typed -----------------------------------
@pytest.mark.parametrize("error", [
    TimedOutError("gave up waiting", task_id="T-1"),
    GenerationFailedError("render failed", task_id="T-2"),
    InvalidRequestError("too long", field="prompt"),
])
def test_a_chunk_failure_comes_back_with_its_type_and_task_id(error):
    from prefect_hailuo.flows.fanout import ChunkResult, FailedClip

    sent = ChunkResult(failed=[FailedClip.of(ClipFailure(7, "clip-007", error))])
    back = ChunkResult.model_validate_json(sent.model_dump_json()).outcome().failures[0]
    assert (back.number, back.name) == (7, "clip-007")
    assert type(back.error) is type(error)
    assert back.task_id == error.task_id
    assert error.message in str(back.error)


def test_a_foreign_error_type_is_never_looked_up_outside_hailuo_errors():
    from prefect_hailuo.flows.fanout import FailedClip

    for name in ("SystemExit", "ClipsFailedError", "os.system", "ValueError"):
        back = FailedClip(number=1, error_type=name, message="boom", task_id="T9").failure()
        assert type(back.error) is HailuoError, name
        assert name in str(back.error) and back.task_id == "T9"


def test_a_chunk_that_failed_as_a_whole_fails_each_of_its_clips_with_the_reason():
    from types import SimpleNamespace

    from prefect.states import Failed

    from prefect_hailuo.flows.fanout import _chunk_outcome
    from prefect_hailuo.flows.models import ClipSpec

    run = SimpleNamespace(name="b-clips-011-020", state=Failed(message="worker died"))
    chunk = [(11, ClipSpec(prompt="a", name="clip-011")),
             (12, ClipSpec(prompt="b", name="clip-012"))]
    outcome = _chunk_outcome(run, chunk)
    assert outcome.done == []
    assert [f.number for f in outcome.failures] == [11, 12]
    assert all("worker died" in str(f.error) and "re-run" in str(f.error)
               for f in outcome.failures)
    # the batch's own error keeps working on these
    assert "clip 11 of 30 failed" in str(ClipsFailedError.of(outcome.failures, total=30))


# -- shared state: what setup writes into the pool, and the warning without it ----------
def test_local_results_and_a_lock_file_are_named_as_kept_on_this_machine(tmp_path):
    from prefect.filesystems import LocalFileSystem
    from prefect.locking.memory import MemoryLockManager

    from prefect_hailuo.flows.shared_state import local_state, warning_text
    from prefect_hailuo.tasks.submit_lock import FileLockManager

    kept = local_state(LocalFileSystem(basepath=str(tmp_path)), FileLockManager(tmp_path))
    assert len(kept) == 2 and "submit cache" in kept[0] and "FileLockManager" in kept[1]
    assert len(local_state(LocalFileSystem(basepath=str(tmp_path)), MemoryLockManager())) == 2
    text = warning_text("hailuo", ["w1", "w2"], kept)
    assert "PAYS AGAIN" in text and "--results-bucket" in text and "w1, w2" in text


def test_shared_storage_and_a_server_lock_are_not_warned_about():
    from prefect_aws import S3Bucket

    from prefect_hailuo.flows.shared_state import local_state

    assert local_state(S3Bucket(bucket_name="b"), object()) == []


def test_setup_with_a_results_bucket_makes_every_run_of_the_pool_share_results(
        prefect_harness, s3_bucket_block, monkeypatch):
    from prefect.client.orchestration import get_client

    from prefect_hailuo.deployments import setup
    from prefect_hailuo.tasks.inflight import inflight_limit_name

    monkeypatch.setenv("HAILUO_TEST_KEY", "hk-fanout-setup-key-123456")
    assert setup.main(["--pool", "hailuo-shared", "--results-bucket", s3_bucket_block,
                       "--api-key-env", "HAILUO_TEST_KEY", "--secret-block", "fanout-key",
                       "--credentials-block", "fanout-creds", "--in-flight", "3"]) == 0
    # re-running is safe, and keeps what another variable put there
    with get_client(sync_client=True) as client:
        pool = client.read_work_pool("hailuo-shared")
        env = pool.base_job_template["variables"]["properties"]["env"]["default"]
        assert env == {"PREFECT_RESULTS_PERSIST_BY_DEFAULT": "true",
                       "PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK": f"s3-bucket/{s3_bucket_block}",
                       "HAILUO_SUBMIT_LOCK_MANAGER": "prefect"}
    assert setup.main(["--pool", "hailuo-shared", "--results-bucket", s3_bucket_block,
                       "--credentials-block", "fanout-creds", "--secret-block", "fanout-key",
                       "--in-flight", "4"]) == 0
    from prefect_hailuo.blocks.credentials import account_of

    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name(
            inflight_limit_name(account_of("hk-fanout-setup-key-123456")))
        assert limit.limit == 4 and limit.slot_decay_per_second in (None, 0, 0.0)


def test_setup_refuses_a_results_bucket_block_that_does_not_exist(prefect_harness):
    from prefect_hailuo.deployments import setup

    with pytest.raises(SystemExit, match="no S3Bucket block named 'nope'"):
        setup.main(["--pool", "hailuo-shared-2", "--results-bucket", "nope",
                    "--credentials-block", ""])


# -- the in-flight cap --------------------------------------------------------------------
def _max_overlap(tasks: list[dict]) -> int:
    """Most tasks running at the provider at one moment (created .. completed)."""
    edges = sorted([(t["created_at"], 1) for t in tasks]
                   + [(t["completed_at"], -1) for t in tasks])
    running = peak = 0
    for _, step in edges:  # an end sorts before a start at the same instant
        running += step
        peak = max(peak, running)
    return peak


KEY = "hk-inflight-cap-key-0123456789"


@pytest.fixture()
def inflight_cap(prefect_harness):
    from prefect.client.orchestration import get_client

    from prefect_hailuo.blocks.credentials import account_of
    from prefect_hailuo.tasks.inflight import inflight_limit_name

    name = inflight_limit_name(account_of(KEY))
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(name, 2)
    yield name
    with get_client(sync_client=True) as client:
        client.delete_global_concurrency_limit_by_name(name)


def _capped_sim(render_seconds: float):
    return run_simulator(render_seconds=render_seconds, cheap=True, accepted_keys=[KEY])


def test_a_batch_never_has_more_tasks_in_flight_than_the_account_allows(
        inflight_cap, tmp_path):
    import httpx
    from prefect.client.orchestration import get_client

    from prefect_hailuo.flows import ClipSpec, Destination, GenerationOptions, generate_batch
    from prefect_hailuo.tasks import inflight

    with _capped_sim(1.0) as sim:
        result = generate_batch(
            clips=[ClipSpec(prompt=f"inflight cap clip {i}") for i in range(6)],
            options=GenerationOptions(resolution="512p", duration=5),
            destination=Destination(output_dir=str(tmp_path)),
            credentials_block=save_credentials("inflight-a", sim.base_url, KEY),
            max_concurrency=6, batch_name="cap")
        tasks = httpx.get(f"{sim.base_url}/_sim/tasks").json()
    assert len(result.clips) == 6 and len(tasks) == 6
    assert _max_overlap(tasks) <= 2
    assert inflight.held_count() == 0  # every slot given back
    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name(inflight_cap).active_slots == 0


def test_a_rerun_that_resumes_paid_tasks_takes_no_in_flight_slot(inflight_cap, tmp_path):
    from prefect.client.orchestration import get_client

    from prefect_hailuo.flows import ClipSpec, Destination, GenerationOptions, generate_batch

    with _capped_sim(0.2) as sim:
        kwargs = dict(
            clips=[ClipSpec(prompt=f"resume without slot {i}") for i in range(2)],
            options=GenerationOptions(resolution="512p", duration=5),
            destination=Destination(output_dir=str(tmp_path)),
            credentials_block=save_credentials("inflight-b", sim.base_url, KEY),
            batch_name="resume")
        generate_batch(**kwargs)
        with get_client(sync_client=True) as client:  # the cap full: nothing new may start
            client.upsert_global_concurrency_limit_by_name(inflight_cap, 2)
            client.increment_concurrency_slots_with_lease(
                names=[inflight_cap], slots=2, mode="concurrency", lease_duration=60)
        again = generate_batch(**kwargs)
        assert sim.simulator.state.accepted_submits() == 2
    assert len(again.clips) == 2  # resumed and finished while the cap was full


# -- the asyncio batch ------------------------------------------------------------------
def test_an_async_batch_keeps_many_clips_waiting_without_a_thread_each(prefect_harness,
                                                                       tmp_path):
    """24 clips wait at once (each render takes 3 s) while the process never holds a
    thread per clip; every clip is a verified file, the batch's table artifact is there,
    and a re-run pays nothing."""
    import asyncio
    import threading

    from prefect_hailuo.flows import ClipSpec, Destination, GenerationOptions
    from prefect_hailuo.flows.batch_async import agenerate_batch

    peak = {"threads": 0}
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.05):
            peak["threads"] = max(peak["threads"], threading.active_count())

    with _capped_sim(3.0) as sim:
        creds = save_credentials("async-batch", sim.base_url, KEY)
        kwargs = dict(clips=[ClipSpec(prompt=f"async batch clip {i}") for i in range(24)],
                      options=GenerationOptions(resolution="512p", duration=5),
                      destination=Destination(output_dir=str(tmp_path)),
                      credentials_block=creds, batch_name="async")
        before = threading.active_count()
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            result = asyncio.run(agenerate_batch(**kwargs))
        finally:
            stop.set()
            watcher.join()
        tasks = sim.simulator.state.accepted_submits()
        again = asyncio.run(agenerate_batch(**kwargs))
        assert sim.simulator.state.accepted_submits() == tasks == 24
    assert len(result.clips) == 24 and not result.failed
    assert all(Path(c.local_path).stat().st_size == c.size for c in result.clips)
    assert [c.task_id for c in again.clips] == [c.task_id for c in result.clips]
    # the thread pool of the blocking steps and Prefect's own threads, not one per clip
    assert peak["threads"] - before < 24, (before, peak)


# -- the ledger of verified clips ---------------------------------------------------------
def test_a_rerun_of_a_finished_batch_asks_the_provider_nothing_and_a_damaged_clip_is_redone(
        prefect_harness, tmp_path):
    from prefect_hailuo.flows import ClipSpec, Destination, GenerationOptions, generate_batch

    with _capped_sim(0.2) as sim:
        kwargs = dict(clips=[ClipSpec(prompt=f"ledger clip {i}") for i in range(3)],
                      options=GenerationOptions(resolution="512p", duration=5),
                      destination=Destination(output_dir=str(tmp_path)),
                      credentials_block=save_credentials("ledger", sim.base_url, KEY),
                      batch_name="ledger")
        first = generate_batch(**kwargs)
        seen = len(sim.simulator.state.request_log())
        again = generate_batch(**kwargs)
        assert len(sim.simulator.state.request_log()) == seen  # not even a status call
        assert again == first
        damaged = Path(first.clips[1].local_path)
        damaged.write_bytes(damaged.read_bytes()[:-100])
        third = generate_batch(**kwargs)
        log = sim.simulator.state.request_log()[seen:]
        assert sim.simulator.state.accepted_submits() == 3  # never paid again
    assert log and all(first.clips[1].task_id in str(entry) for entry in log
                       if "status" in str(entry.get("kind", "")))
    assert (third.clips[0], third.clips[2]) == (first.clips[0], first.clips[2])
    assert third.clips[1].task_id == first.clips[1].task_id  # the same paid task, fetched again
    assert damaged.stat().st_size == third.clips[1].size
