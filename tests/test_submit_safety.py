"""Issue 13 D: the submit cache under concurrency and across accounts.

* the lock around a submit (``tasks/submit_lock.py``): its file lock manager on its own,
  then two real processes submitting the same request at the same moment -> one paid
  task, the same task id for both;
* the account in the cache key: two keys -> two tasks, one key under two block names ->
  one task, and no key anywhere in cache keys, result storage or lock files;
* a submit whose cache key cannot be computed refuses to pay;
* two clips of one batch (or two shots of one film) that are the same request are refused
  up front, naming both; a distinct ``take`` makes them two paid tasks.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from hailuo.errors import ConfigurationError, InvalidRequestError
from hailuo.simulator import run_simulator
from tests.conftest import make_png, save_credentials

ROOT = Path(__file__).resolve().parents[1]
KEY = "hk-SAFETY-one-7c1d2e3f4a5b6c7d8e9f0a1b"
KEY2 = "hk-SAFETY-two-0f9e8d7c6b5a4f3e2d1c0b9a"


# --------------------------------------------------------------------------- the lock


def _manager(tmp_path: Path, **kw):
    from prefect_hailuo.tasks.submit_lock import FileLockManager

    return FileLockManager(tmp_path / "locks", **kw)


def test_file_lock_excludes_other_holders_until_released(tmp_path):
    locks = _manager(tmp_path)
    assert locks.acquire_lock("k", "a")
    assert locks.acquire_lock("k", "a")  # the holder again: re-entrant
    assert locks.is_locked("k") and locks.is_lock_holder("k", "a")
    assert not locks.is_lock_holder("k", "b")
    started = time.monotonic()
    assert not locks.acquire_lock("k", "b", acquire_timeout=0.3)
    assert time.monotonic() - started >= 0.25
    got: list[bool] = []
    waiter = threading.Thread(target=lambda: got.append(locks.acquire_lock("k", "b")))
    waiter.start()
    time.sleep(0.2)
    assert not got  # still waiting
    locks.release_lock("k", "a")
    waiter.join(5)
    assert got == [True] and locks.is_lock_holder("k", "b")
    with pytest.raises(ValueError):
        locks.release_lock("k", "a")  # not the holder
    locks.release_lock("k", "b")
    assert not locks.is_locked("k")


def test_lock_of_a_killed_process_is_broken_at_once(tmp_path):
    """A worker SIGKILLed while it held the lock must not block the request forever."""
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from prefect_hailuo.tasks.submit_lock import FileLockManager
        assert FileLockManager(Path({str(tmp_path / 'locks')!r})).acquire_lock("k", "dead")
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    locks = _manager(tmp_path)
    path = locks.path_for("k")
    assert json.loads(path.read_text())["holder"] == "dead"
    assert not locks.is_locked("k")
    assert locks.acquire_lock("k", "alive", acquire_timeout=1)
    assert locks.is_lock_holder("k", "alive")


def test_lock_from_another_machine_holds_until_it_expires(tmp_path):
    from datetime import UTC, datetime, timedelta

    locks = _manager(tmp_path)
    path = locks.path_for("k")
    path.parent.mkdir(parents=True)

    def write(seconds: float) -> None:
        path.write_text(json.dumps({
            "holder": "far", "host": "another-machine", "pid": 1, "boot": "x", "pidns": "y",
            "expiration": (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()}))

    write(600)
    assert locks.is_locked("k") and not locks.acquire_lock("k", "near", acquire_timeout=0.2)
    write(-1)
    assert not locks.is_locked("k") and locks.acquire_lock("k", "near", acquire_timeout=0.2)


def test_lock_file_names_hide_the_key(tmp_path):
    locks = _manager(tmp_path)
    path = locks.path_for("hailuo-submit-../../etc/passwd")
    assert path.parent == locks.directory and ".." not in path.name


def test_lock_manager_is_chosen_by_environment(tmp_path, monkeypatch):
    from prefect.locking.memory import MemoryLockManager

    from prefect_hailuo.tasks import submit_lock

    monkeypatch.setenv("HAILUO_SUBMIT_LOCK_DIR", str(tmp_path / "here"))
    monkeypatch.delenv("HAILUO_SUBMIT_LOCK_MANAGER", raising=False)
    default = submit_lock.configured_lock_manager()
    assert isinstance(default, submit_lock.FileLockManager)
    assert default.directory == tmp_path / "here"
    monkeypatch.setenv("HAILUO_SUBMIT_LOCK_MANAGER", "memory")
    assert isinstance(submit_lock.configured_lock_manager(), MemoryLockManager)
    # "module:attribute": an instance, or a class called without arguments (how
    # prefect-redis's RedisLockManager is plugged in on several machines)
    monkeypatch.setenv("HAILUO_SUBMIT_LOCK_MANAGER",
                       "prefect.locking.memory:MemoryLockManager")
    assert isinstance(submit_lock.configured_lock_manager(), MemoryLockManager)
    monkeypatch.setenv("HAILUO_SUBMIT_LOCK_MANAGER", "json:dumps")
    with pytest.raises(ValueError, match="LockManager"):
        submit_lock.configured_lock_manager()
    monkeypatch.setenv("HAILUO_SUBMIT_LOCK_MANAGER", "redis-please")
    with pytest.raises(ValueError, match="module:attribute"):
        submit_lock.configured_lock_manager()


def test_wrapper_gives_a_hold_timeout_and_tolerates_a_second_release(tmp_path, monkeypatch):
    """Prefect releases a nested SERIALIZABLE transaction's lock twice (child commit, then
    parent commit); every bundled manager raises on the second release."""
    from prefect_hailuo.tasks.submit_lock import SubmitLockManager

    monkeypatch.setenv("HAILUO_SUBMIT_LOCK_DIR", str(tmp_path / "w"))
    monkeypatch.setenv("HAILUO_SUBMIT_LOCK_HOLD_SECONDS", "90")
    monkeypatch.delenv("HAILUO_SUBMIT_LOCK_MANAGER", raising=False)
    wrapper = SubmitLockManager()
    assert wrapper.acquire_lock("k", "h")
    written = json.loads(next((tmp_path / "w").glob("*.lock")).read_text())
    assert written["holder"] == "h" and written["expiration"]
    wrapper.release_lock("k", "h")
    wrapper.release_lock("k", "h")  # no error
    assert not wrapper.is_locked("k")


# --------------------------------------------------------------------------- flows

@pytest.fixture(scope="module")
def sim():
    with run_simulator(render_seconds=0.4, accepted_keys=[KEY, KEY2]) as handle:
        yield handle


@pytest.fixture(scope="module")
def creds(prefect_harness, sim) -> str:
    return save_credentials("safety-one", sim.base_url, KEY)


def _opts(**kw):
    from prefect_hailuo.flows import GenerationOptions

    return GenerationOptions(resolution="512p", duration=5, **kw)


def _dest(out: Path):
    from prefect_hailuo.flows import Destination

    return Destination(output_dir=str(out))


def _run_flow_process(script: str, *args: str) -> subprocess.Popen:
    import prefect.settings

    env = {**os.environ, "PREFECT_API_URL": prefect.settings.PREFECT_API_URL.value(),
           "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *args], env=env,
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@pytest.mark.prefect
def test_two_processes_submitting_the_same_request_at_once_pay_once(sim, creds, tmp_path):
    """Two flow runs in two processes, released together by a file barrier, submit the same
    request; the provider takes 3 s to accept a submit and does not honour
    Idempotency-Key, so without the lock both would pay."""
    prompt = "[Pedestal up] two workers race for one lighthouse at dawn, soft fog"
    go = tmp_path / "go"
    script = f"""
        import json, pathlib, sys, time
        from prefect_hailuo.flows import Destination, GenerationOptions, text_to_video
        me = sys.argv[1]
        (pathlib.Path({str(tmp_path)!r}) / ("ready-" + me)).write_text("ready")
        while not pathlib.Path({str(go)!r}).exists():
            time.sleep(0.01)
        clip = text_to_video(prompt={prompt!r}, credentials_block={creds!r},
                             options=GenerationOptions(resolution="512p", duration=5),
                             destination=Destination(
                                 output_dir={str(tmp_path)!r} + "/out-" + me))
        print("RESULT " + json.dumps({{"task_id": clip.task_id, "sha256": clip.sha256}}))
    """
    sim.configure(model_idempotency="false", submit_seconds=3.0)
    before, logged = sim.submits(), len(sim.requests("submit"))
    procs = [_run_flow_process(script, name) for name in ("a", "b")]
    try:
        deadline = time.monotonic() + 180
        while not all((tmp_path / f"ready-{n}").exists() for n in ("a", "b")):
            for proc in procs:
                assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the processes never reached the barrier"
            time.sleep(0.05)
        go.write_text("go")
        outputs = [proc.communicate(timeout=300)[0].decode() for proc in procs]
    finally:
        sim.configure(model_idempotency="true", submit_seconds=0.0)
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    results = []
    for proc, out in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, out[-4000:]
        line = next(x for x in out.splitlines() if x.startswith("RESULT "))
        results.append(json.loads(line.removeprefix("RESULT ")))
    assert sim.submits() == before + 1
    assert len(sim.requests("submit")) == logged + 1  # the second never even asked
    assert results[0] == results[1]


@pytest.mark.prefect
def test_cache_key_holds_the_account_never_the_key(sim, creds, tmp_path, prefect_home,
                                                   caplog):
    """Another key never receives a task it cannot see; the same key under another block
    name is the same account and reuses the task."""
    from prefect_hailuo.blocks.credentials import account_of
    from prefect_hailuo.flows import text_to_video

    other = save_credentials("safety-two", sim.base_url, KEY2)
    alias = save_credentials("safety-one-alias", sim.base_url, KEY)
    prompt = "[Truck left] a tram crosses a bridge in the rain, neon reflections"
    before = sim.submits()
    one = text_to_video(prompt=prompt, options=_opts(), credentials_block=creds,
                        destination=_dest(tmp_path))
    two = text_to_video(prompt=prompt, options=_opts(), credentials_block=other,
                        destination=_dest(tmp_path))
    again = text_to_video(prompt=prompt, options=_opts(), credentials_block=alias,
                          destination=_dest(tmp_path))
    assert sim.submits() == before + 2
    assert one.task_id != two.task_id and again.task_id == one.task_id
    # the submit lock was taken and released cleanly, cached or not (Prefect releases a
    # nested SERIALIZABLE transaction's lock twice; the second release must be a no-op)
    assert not [r for r in caplog.records if "committing transaction" in r.getMessage()]
    # the keys that submitted were the blocks' own
    by_task = {r["task_id"]: r for r in sim.requests("submit") if r.get("task_id")}
    assert by_task[one.task_id] and by_task[two.task_id]

    accounts = {account_of(KEY), account_of(KEY2)}
    assert len(accounts) == 2
    assert all(a.startswith("acct-") and len(a) == 21 for a in accounts)
    for key in (KEY, KEY2):  # salted: not the plain sha256 of the key either
        assert hashlib.sha256(key.encode()).hexdigest()[:16] not in account_of(key)
    # Prefect 3 keeps cache records in the result storage, named by the cache key
    storage = Path(os.environ["PREFECT_LOCAL_STORAGE_PATH"])
    keys = [p.name for p in storage.iterdir() if p.name.startswith("hailuo-submit-")]
    assert {a for a in accounts if any(a in k for k in keys)} == accounts
    for key in (KEY, KEY2):
        assert not any(key in k for k in keys)
    # nothing Prefect persisted (results, cache records, lock files) holds a key
    scanned = [p for p in storage.rglob("*") if p.is_file()]
    assert scanned, "no result storage to scan"
    for path in [*scanned, *(p for p in prefect_home.rglob("*") if p.is_file())]:
        data = path.read_bytes()
        assert KEY.encode() not in data and KEY2.encode() not in data, path


@pytest.mark.prefect
def test_a_key_that_changed_under_a_resolved_connection_is_refused(sim, creds):
    """Tasks are keyed on the account resolved at the start of the run; a client with
    another key would pay or look up under the wrong account."""
    from prefect_hailuo.blocks.credentials import HailuoConnection, account_of

    conn = HailuoConnection(credentials_block=creds, base_url=sim.base_url,
                            account=account_of(KEY2))
    with pytest.raises(ConfigurationError, match="changed during this run"):
        conn.client()
    with conn.model_copy(update={"account": account_of(KEY)}).client():
        pass


@pytest.mark.prefect
def test_a_submit_without_its_cache_key_refuses_to_pay(sim, creds, tmp_path):
    """Prefect runs a task uncached when its cache key cannot be computed (here: an image
    that vanished after preflight); a submit must then refuse, not pay unrecorded."""
    from prefect import flow

    from hailuo.models import VideoRequest
    from prefect_hailuo.blocks.credentials import resolve_connection
    from prefect_hailuo.tasks.generation import submit_generation

    gone = str(tmp_path / "vanished.png")

    @flow
    def submit_directly():
        connection = resolve_connection(creds)
        return submit_generation(VideoRequest(prompt="x moves", first_frame_image=gone),
                                 connection)

    before = len(sim.requests())
    with pytest.raises(ConfigurationError, match="refusing to submit"):
        submit_directly()
    assert len(sim.requests()) == before


@pytest.mark.prefect
def test_same_request_twice_in_a_batch_is_refused_naming_both(sim, creds, tmp_path):
    from prefect_hailuo.flows import ClipSpec, generate_batch

    prompt = "[Zoom out] a kite festival over dunes, bright afternoon"
    clips = [ClipSpec(name="opening", prompt=prompt),
             ClipSpec(name="dusk", prompt=prompt + ", dusk"),
             ClipSpec(name="reprise", prompt=prompt)]
    before = len(sim.requests())
    with pytest.raises(InvalidRequestError) as info:
        generate_batch(clips=clips, options=_opts(), credentials_block=creds,
                       destination=_dest(tmp_path))
    text = str(info.value)
    assert "'opening' and 'reprise'" in text and "take" in text and "dusk" not in text
    assert len(sim.requests()) == before  # nothing sent, not even a status call
    # two versions on purpose: a distinct take is a second, separately paid task
    before = sim.submits()
    result = generate_batch(clips=[clips[0], clips[2].model_copy(update={"take": 2})],
                            options=_opts(), credentials_block=creds,
                            destination=_dest(tmp_path))
    assert sim.submits() == before + 2
    assert len({c.task_id for c in result.clips}) == 2
    assert [c.name for c in result.clips] == ["opening", "reprise"]


@pytest.mark.prefect
def test_same_request_twice_in_a_storyboard_is_refused(sim, creds, tmp_path):
    from prefect_hailuo.flows import storyboard

    k0, k1 = make_png(tmp_path / "k0.png"), make_png(tmp_path / "k1.png", color=(9, 9, 200))
    board = {"title": "echo", "first_image": str(k0), "segments": [
        {"name": "there", "prompt": "the light sweeps across", "keyframe": str(k1)},
        {"name": "back", "prompt": "the light sweeps back", "keyframe": str(k0)},
        {"name": "there-again", "prompt": "the light sweeps across", "keyframe": str(k1)}]}
    before = len(sim.requests())
    with pytest.raises(InvalidRequestError, match="segments 'there' and 'there-again'"):
        storyboard(storyboard=board, options=_opts(),
                   credentials_block=creds, destination=_dest(tmp_path))
    assert len(sim.requests()) == before
