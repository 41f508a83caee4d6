"""Cancelling a flow run cancels its queued MiniMax-H3 tasks (queued tasks are not charged).

The real thing: a flow served by a Prefect runner in another process (``prefect.serve``),
started with ``run_deployment``, its H3 task queued at the simulator (a real HTTP server in
this process, reached through a saved credentials block); the run is then cancelled
through Prefect's API (``set_flow_run_state(..., Cancelling())``, as the UI's Cancel
button does). The runner kills the flow's process and runs the flow's ``on_cancellation``
hook, which cancels the task at MiniMax (``DELETE /v2/video_generation/{id}``): the
simulator shows it cancelled, never rendered, cost 0. The registry and the hook are also
checked directly.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from hailuo.simulator import run_simulator
from tests.conftest import save_credentials
from tests.prefect_servers import _stop

KEY = "sim-key-h3-cancel-0123456789"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sim():
    with run_simulator(render_seconds=0.5, accepted_keys=[KEY]) as handle:
        yield handle


@pytest.fixture(scope="module")
def creds(prefect_harness, sim) -> str:
    return save_credentials("h3-cancel-test", sim.base_url, KEY, provider="minimax")


@pytest.fixture
def registry(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "active"
    monkeypatch.setenv("HAILUO_ACTIVE_TASKS_DIR", str(folder))
    return folder


def _query(sim, task_id: str) -> dict:
    answer = httpx.get(f"{sim.base_url}/v2/query/video_generation/{task_id}",
                       headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
    return answer.json()["task"]


def _submit(sim, prompt: str) -> str:
    body = {"model": "MiniMax-H3", "content": [{"type": "text", "text": prompt}],
            "resolution": "768P", "duration": 4, "ratio": "16:9"}
    answer = httpx.post(f"{sim.base_url}/v2/video_generation", json=body,
                        headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
    return answer.json()["task_id"]


def _cancelled_unpaid(sim, task_id: str) -> None:
    assert _query(sim, task_id)["status"] == "cancelled"
    admin = sim.task(task_id)
    assert admin["cost"] == 0.0 and admin["render_started_at"] is None  # never rendered


# -- the registry and the hook, directly -----------------------------------------------------
def test_hook_cancels_the_runs_queued_tasks_only(sim, creds, registry):
    from hailuo.models import Job
    from prefect_hailuo.blocks.credentials import resolve_connection
    from prefect_hailuo.tasks.cancellation import (
        cancel_queued_tasks,
        track,
        tracked,
        untrack,
    )

    sim.configure(queue_seconds=120)
    try:
        connection = resolve_connection(creds)
        run, other = str(uuid.uuid4()), str(uuid.uuid4())
        queued, finished_with, elsewhere = (_submit(sim, p) for p in ("a", "b", "c"))
        for task_id, run_id in ((queued, run), (finished_with, run), (elsewhere, other)):
            job = Job(task_id=task_id, provider="minimax", model="MiniMax-H3")
            assert track(connection, job, flow_run_id=run_id) is not None
        untrack(connection, finished_with, flow_run_id=run)
        assert [t for _, t, _ in tracked(run)] == [queued]
        # 02 tasks (and APIMart ones) cannot be cancelled: never recorded
        legacy = Job(task_id="9", provider="minimax", model="MiniMax-Hailuo-02")
        assert track(connection, legacy, flow_run_id=run) is None

        cancel_queued_tasks(SimpleNamespace(name="f"), SimpleNamespace(id=run, name="r",
                                                                       flow_id=None),
                            SimpleNamespace(name="Cancelling"))
        _cancelled_unpaid(sim, queued)
        assert _query(sim, finished_with)["status"] == "queued"
        assert _query(sim, elsewhere)["status"] == "queued"
        assert tracked(run) == [] and not (registry / run).exists()
        assert [t for _, t, _ in tracked(other)] == [elsewhere]
    finally:
        sim.configure(queue_seconds=0.0)


def test_a_running_task_is_left_alone(sim, creds, registry):
    from hailuo.models import Job, JobStatus
    from prefect_hailuo.blocks.credentials import resolve_connection
    from prefect_hailuo.tasks.cancellation import cancel_tracked, track

    connection = resolve_connection(creds)
    sim.configure(queue_seconds=0.0, render_seconds=60)
    try:
        task_id = _submit(sim, "busy")
        deadline = time.monotonic() + 10
        while _query(sim, task_id)["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        run = str(uuid.uuid4())
        track(connection, Job(task_id=task_id, provider="minimax", model="MiniMax-H3"),
              flow_run_id=run)
        outcome = cancel_tracked(run)
        assert outcome[task_id].status is JobStatus.PROCESSING  # running: not cancellable
        assert _query(sim, task_id)["status"] == "running"
    finally:
        sim.configure(render_seconds=0.5)


# -- a real cancellation through Prefect ------------------------------------------------------
# Module entrypoint, as prefect.yaml and deployments/serve.py use (the runner loads the
# flow again by it, for the flow's process and for the cancellation hooks).
SERVE = """
    from prefect import serve
    from prefect.flows import load_flow_from_entrypoint

    if __name__ == "__main__":
        flow = load_flow_from_entrypoint("prefect_hailuo.flows.generation:text_to_video")
        serve(flow.to_deployment(name="h3-cancel-test"))
"""


@pytest.fixture
def runner(prefect_harness, tmp_path) -> Iterator[tuple[subprocess.Popen, Path, Path]]:
    """``text_to_video.serve`` in its own process (and session), with its own registry
    folder; stopped (with the flow processes it started) at the end."""
    import prefect.settings

    registry = tmp_path / "active"
    log = tmp_path / "runner.log"
    env = {**os.environ, "PREFECT_API_URL": prefect.settings.PREFECT_API_URL.value(),
           "PYTHONPATH": str(ROOT), "HAILUO_ACTIVE_TASKS_DIR": str(registry),
           "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    env.pop("HAILUO_SIMULATE", None)
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(SERVE)], cwd=ROOT,
                                env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        yield proc, registry, log
    finally:
        _stop(proc)


def _until(what: str, check, proc, log: Path, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert proc.poll() is None, log.read_text(errors="replace")[-4000:]
        assert time.monotonic() < deadline, (
            f"timed out waiting for {what}\n" + log.read_text(errors="replace")[-4000:])
        time.sleep(0.2)


def test_cancelling_a_flow_run_cancels_its_queued_h3_task(sim, creds, runner, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.states import Cancelling

    proc, registry, log = runner
    sim.configure(queue_seconds=600)  # the task stays queued until cancelled
    try:
        def deployed():
            with get_client(sync_client=True) as client, contextlib.suppress(Exception):
                return client.read_deployment_by_name("hailuo-text-to-video/h3-cancel-test")
            return None

        _until("the served deployment", deployed, proc, log)
        known = {t["id"] for t in sim.tasks()}
        run = run_deployment(
            "hailuo-text-to-video/h3-cancel-test", timeout=0, parameters={
                "prompt": "a lighthouse keeper climbs the stairs at dusk",
                "options": {"model": "MiniMax-H3", "ratio": "16:9", "duration": 4,
                            "provider": "minimax"},
                "destination": {"output_dir": str(tmp_path / "out")},
                "credentials_block": creds})

        def submitted():
            new = [t for t in sim.tasks() if t["id"] not in known]
            return new[0]["id"] if new else None

        task_id = _until("the H3 submit", submitted, proc, log)
        record = registry / str(run.id)
        _until("the task to be recorded", lambda: list(record.glob("*.json")), proc, log)
        assert _query(sim, task_id)["status"] == "queued"

        with get_client(sync_client=True) as client:
            client.set_flow_run_state(run.id, Cancelling(message="cancelled by the test"))

            def cancelled():
                state = client.read_flow_run(run.id).state
                return state if state is not None and state.is_cancelled() else None

            _until("the run to be cancelled", cancelled, proc, log)
        _until("the task to be cancelled at MiniMax",
               lambda: _query(sim, task_id)["status"] == "cancelled", proc, log, timeout=30)
        _cancelled_unpaid(sim, task_id)
        deletes = [e for e in sim.requests("cancel") if e["task_id"] == task_id]
        assert [e["status"] for e in deletes] == [200]
        assert not list(record.glob("*.json"))  # the registry is cleaned up
        text = log.read_text(errors="replace")
        assert "cancelled 1 queued MiniMax-H3 task(s)" in text, text[-4000:]
    finally:
        sim.configure(queue_seconds=0.0)
