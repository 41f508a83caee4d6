"""Typed errors survive the multi-clip flows: ``ClipsFailedError`` holds each failed clip's
own exception (task id included), pickles, maps to the exit code of its representative
clip, and reaches ``hailuo continuity --json`` with the task id.

Unit checks first (no Prefect), then the batch and continuity flows against the simulator
over HTTP (one clip forced to time out or be refused), then the CLI as a subprocess.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import cloudpickle
import pytest
import yaml

from hailuo import errors
from hailuo.errors import ClipFailure, ClipsFailedError
from hailuo.simulator import run_simulator
from hailuo.simulator.faults import MINIMAX_MESSAGES
from prefect_hailuo.cli import (
    EXIT_ACCOUNT,
    EXIT_AMBIGUOUS,
    EXIT_FAILED,
    EXIT_REFUSED,
    EXIT_TIMEOUT,
    _fail,
    error_line,
    exit_code_for,
)
from tests.conftest import save_credentials

KEY = "hk-clip-errors-test-4d2a91c7e0"
ROOT = Path(__file__).resolve().parents[1]
HAILUO = Path(sys.executable).parent / "hailuo"


def _group() -> ClipsFailedError:
    return ClipsFailedError.of([
        ClipFailure(2, "harbour", errors.TimedOutError("waited 2 s", task_id="task_slow")),
        ClipFailure(4, "storm", errors.GenerationFailedError("failed", code=1000,
                                                              task_id="task_bad")),
        ClipFailure(5, None, RuntimeError("a bug")),
    ], total=5, kept=[1, 3])


# --------------------------------------------------------------------------- unit


def test_clips_failed_error_is_a_typed_group_that_pickles():
    exc = _group()
    assert isinstance(exc, errors.HailuoError) and isinstance(exc, ExceptionGroup)
    assert exc.retryable is False
    text = str(exc)
    for needle in ("clip 2 of 5 failed (harbour): TimedOutError", "task_id=task_slow",
                   "clip 4 of 5 failed (storm): GenerationFailedError", "task_id=task_bad",
                   "clip 5 of 5 failed: RuntimeError: a bug",
                   "Done and kept for a re-run: clips 1, 3."):
        assert needle in text, text
    for dumps, loads in ((pickle.dumps, pickle.loads), (cloudpickle.dumps, cloudpickle.loads)):
        back = loads(dumps(exc))
        assert type(back) is ClipsFailedError and str(back) == text
        assert [type(e) for e in back.exceptions] == [errors.TimedOutError,
                                                     errors.GenerationFailedError, RuntimeError]
        assert [(f.number, f.name, f.task_id) for f in back.failures] == [
            (2, "harbour", "task_slow"), (4, "storm", "task_bad"), (5, None, None)]
        assert back.kept == [1, 3] and back.total == 5 and back.task_id == "task_bad"
    caught = []  # except* sees each clip's own error
    try:
        raise exc
    except* errors.TimedOutError as group:
        caught.append([e.task_id for e in group.exceptions])
    except* Exception as rest:
        caught.append([type(e).__name__ for e in rest.exceptions])
    assert caught == [["task_slow"], ["GenerationFailedError", "RuntimeError"]]


def test_representative_clip_decides_the_exit_code():
    def run(*errs: Exception) -> ClipsFailedError:
        return ClipsFailedError.of([ClipFailure(i, f"c{i}", e)
                                    for i, e in enumerate(errs, start=1)], total=len(errs))

    timed_out = errors.TimedOutError("slow", task_id="t-slow")
    failed = errors.GenerationFailedError("failed", code=1000, task_id="t-failed")
    rejected = errors.ContentRejectedError("no", code=1026, task_id="t-rejected")
    account = errors.InsufficientBalanceError("money", code=1008)
    ambiguous = errors.AmbiguousSubmitError("maybe", idempotency_key="k")
    assert exit_code_for(run(timed_out)) == EXIT_TIMEOUT
    assert exit_code_for(run(timed_out, failed)) == EXIT_FAILED
    assert exit_code_for(run(timed_out, failed, rejected)) == EXIT_REFUSED
    assert exit_code_for(run(rejected, account, timed_out)) == EXIT_ACCOUNT
    assert exit_code_for(run(timed_out, ambiguous, account)) == EXIT_AMBIGUOUS
    # a bug outranks the retryable kinds, a failed generation outranks a bug
    assert run(timed_out, RuntimeError("bug")).representative.number == 2
    assert run(RuntimeError("bug"), failed).representative.number == 2
    # ties go to the first clip; the group's task id is the representative's
    two = run(timed_out, errors.TimedOutError("slow too", task_id="t-2"))
    assert two.representative.number == 1 and two.task_id == "t-slow"


def test_fail_reports_every_clip_in_json_and_one_line_on_stderr():
    exc = ClipsFailedError.of([
        ClipFailure(2, "rise", errors.TimedOutError("waited\n2 s", task_id="task_2"))],
        total=3, kept=[1])
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        assert _fail(exc, True) == EXIT_TIMEOUT
    line = err.getvalue().strip()
    assert "\n" not in line and line == error_line(exc)
    assert "task_id=task_2" in line and "resume" in line
    doc = json.loads(out.getvalue())
    assert doc["ok"] is False and doc["exit_code"] == EXIT_TIMEOUT
    assert doc["error"] == "ClipsFailedError" and doc["task_id"] == "task_2"
    assert doc["clips"] == [{"clip": 2, "name": "rise", "error": "TimedOutError",
                             "message": "waited 2 s (task_id=task_2)", "task_id": "task_2",
                             "exit_code": EXIT_TIMEOUT}]
    assert doc["kept"] == [1]


# --------------------------------------------------------------------------- the flows

SLOW, REFUSED = "slow-clip-marker", "refused-clip-marker"


@pytest.fixture(scope="module")
def sim():
    with run_simulator(render_seconds=0.4, cheap=True, accepted_keys=[KEY]) as handle:
        yield handle


@pytest.fixture(scope="module")
def creds(prefect_harness, sim) -> str:
    return save_credentials("clip-errors-test", sim.base_url, KEY)


@pytest.fixture
def doomed(sim, monkeypatch):
    """Tasks whose prompt says so never finish in time (SLOW) or are refused (REFUSED)."""
    create = sim.simulator.create_task

    def create_task(sub, **kw):
        task = create(sub, **kw)
        with sim.simulator.state.lock:
            if SLOW in sub.prompt:
                task.render_seconds = 600
            if REFUSED in sub.prompt:
                task.fail_code, task.fail_message = 1026, MINIMAX_MESSAGES[1026]
        return task

    monkeypatch.setattr(sim.simulator, "create_task", create_task)


def _task_for(sim, needle: str) -> str:
    [task] = [t for t in sim.tasks() if needle.lower() in t["prompt"].lower()]
    return task["id"]


def _options(**kw):
    from prefect_hailuo.flows import GenerationOptions

    return GenerationOptions(resolution="512p", duration=5, **kw)


@pytest.mark.prefect
def test_batch_raises_typed_clip_errors_with_their_task_ids(sim, creds, doomed, tmp_path):
    from prefect_hailuo.flows import ClipSpec, Destination, generate_batch

    clips = [ClipSpec(name="fine", prompt="a quiet pond, batch errors test"),
             ClipSpec(name="slow", prompt=f"a glacier, {SLOW}, batch errors test"),
             ClipSpec(name="refused", prompt=f"a cat, {REFUSED}, batch errors test")]
    state = generate_batch(clips=clips, options=_options(timeout_seconds=2),
                           destination=Destination(output_dir=str(tmp_path)),
                           credentials_block=creds, return_state=True)
    assert state.is_failed()
    with pytest.raises(ClipsFailedError) as info:
        state.result()
    exc = info.value
    by_name = {f.name: f for f in exc.failures}
    assert set(by_name) == {"slow", "refused"} and exc.kept == [1]
    slow, refused = by_name["slow"], by_name["refused"]
    assert isinstance(slow.error, errors.TimedOutError) and slow.number == 2
    assert slow.task_id == _task_for(sim, SLOW)
    assert isinstance(refused.error, errors.ContentRejectedError)
    assert refused.task_id == _task_for(sim, REFUSED)
    assert f"task_id={slow.task_id}" in str(exc) and f"task_id={refused.task_id}" in str(exc)
    # a refusal must be dealt with before re-running; the timeout only needs a re-run
    assert exc.representative is refused and exit_code_for(exc) == EXIT_REFUSED
    back = pickle.loads(pickle.dumps(exc))
    assert [f.task_id for f in back.failures] == [f.task_id for f in exc.failures]


@pytest.mark.prefect
def test_batch_allowing_failures_names_the_task_in_the_result(sim, creds, doomed, tmp_path):
    from prefect_hailuo.flows import ClipSpec, Destination, generate_batch

    result = generate_batch(
        clips=[ClipSpec(name="no", prompt=f"a dog, {REFUSED}, allowed failure test")],
        options=_options(), destination=Destination(output_dir=str(tmp_path)),
        credentials_block=creds, allow_failures=True)
    assert result.clips == [] and list(result.failed) == ["no"]
    task_id = _task_for(sim, "allowed failure test")
    assert result.failed["no"].startswith("ContentRejectedError: ")
    assert f"task_id={task_id}" in result.failed["no"]


@pytest.mark.prefect
def test_continuity_film_keeps_the_failed_clips_typed_error(sim, creds, doomed, tmp_path):
    from hailuo.storyboard import Storyboard
    from prefect_hailuo.flows import Destination
    from prefect_hailuo.flows.continuity import multi_clip_continuity

    board = Storyboard(title="Typed film", segments=[
        {"prompt": "a lantern is lit on a jetty, typed film test"},
        {"prompt": f"the lantern swings in the wind, {REFUSED}, typed film test"}])
    state = multi_clip_continuity(storyboard=board, options=_options(),
                                  destination=Destination(output_dir=str(tmp_path)),
                                  credentials_block=creds, return_state=True)
    assert state.is_failed()
    exc = state.result(raise_on_failure=False)
    assert isinstance(exc, ClipsFailedError), repr(exc)
    [failure] = exc.failures
    assert failure.number == 2 and failure.name == "typed-film-02"
    assert isinstance(failure.error, errors.ContentRejectedError)
    assert failure.task_id == _task_for(sim, f"swings in the wind, {REFUSED}")
    assert exc.kept == [1] and exc.task_id == failure.task_id
    assert "clip 2 of 2 failed (typed-film-02): ContentRejectedError" in str(exc)
    assert "Done and kept for a re-run: clips 1." in str(exc)
    assert exit_code_for(exc) == EXIT_REFUSED


@pytest.mark.prefect
def test_cli_continuity_timeout_exits_5_with_the_task_id(sim, creds, tmp_path):
    import prefect.settings

    board = tmp_path / "film.yaml"
    board.write_text(yaml.safe_dump({"title": "CLI timeout film", "resolution": "512p",
                                     "duration": 5, "segments": [
                                         {"prompt": "a slow tide, cli typed errors test"},
                                         {"prompt": "the tide turns, cli typed errors test"}]}))
    env = {**os.environ, "PYTHONPATH": str(ROOT),
           "PREFECT_API_URL": prefect.settings.PREFECT_API_URL.value()}
    env.pop("HAILUO_CREDENTIALS_BLOCK", None)
    sim.configure(render_seconds=120)
    try:
        proc = subprocess.run(
            [str(HAILUO), "continuity", str(board), "--credentials-block", creds,
             "--out", str(tmp_path / "out"), "--timeout", "2", "--json"],
            env=env, cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=180)
    finally:
        sim.configure(render_seconds=0.4)
    assert proc.returncode == EXIT_TIMEOUT, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    task_id = _task_for(sim, "a slow tide, cli typed errors test")
    assert doc["error"] == "ClipsFailedError" and doc["task_id"] == task_id
    assert doc["clips"] == [{"clip": 1, "name": "cli-timeout-film-01", "error": "TimedOutError",
                             "message": doc["clips"][0]["message"], "task_id": task_id,
                             "exit_code": EXIT_TIMEOUT}]
    assert doc["kept"] == []
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("hailuo: error: ") and f"task_id={task_id}" in last
    assert "resume" in last
