"""The submit lock on the Prefect server (``HAILUO_SUBMIT_LOCK_MANAGER=prefect``), for
workers on several machines: leased slots of striped global concurrency limits.

* against the session's test server (``prefect_harness``): exclusion between threads and
  between processes, stripes, re-entrancy, the wrapper's idempotent release, a stripe
  that cannot lock is refused, and two flow runs in two processes submitting the same
  request at once -> one paid task;
* against a real ``prefect server start`` (slow): a holder that dies, or never releases,
  frees the lock when its lease expires. The test harness's ephemeral server does not
  run the ``repossessor`` service that expires leases, so this needs a server of its own.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hailuo.simulator import run_simulator
from tests.conftest import save_credentials

ROOT = Path(__file__).resolve().parents[1]
KEY = "hk-SHARED-lock-3b4c5d6e7f8a9b0c1d2e3f4a"


def _manager(**kw):
    from prefect_hailuo.tasks.submit_lock import PrefectLockManager

    # a prefix of its own per test: stripes are server-wide, tests must not share them
    return PrefectLockManager(prefix=f"hailuo-lock-test-{uuid.uuid4().hex[:8]}-", **kw)


def _keys_in(manager, same_stripe: bool) -> tuple[str, str]:
    first = "key-0"
    for i in range(1, 10_000):
        other = f"key-{i}"
        if (manager.stripe_for(other) == manager.stripe_for(first)) is same_stripe:
            return first, other
    raise AssertionError("no such pair of keys")


def _env_for_child(api_url: str) -> dict[str, str]:
    return {**os.environ, "PREFECT_API_URL": api_url, "PYTHONPATH": str(ROOT)}


def _limit(name: str):
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return client.read_global_concurrency_limit_by_name(name)


# --------------------------------------------------------------------------- pure


def test_stripes_are_stable_bounded_and_hide_the_key():
    from prefect_hailuo.defaults import SUBMIT_LOCK_LIMIT_PREFIX, SUBMIT_LOCK_STRIPES
    from prefect_hailuo.tasks.submit_lock import PrefectLockManager

    locks = PrefectLockManager()
    key = "hailuo-submit-../../etc/passwd-abc"
    name = locks.stripe_for(key)
    assert name == PrefectLockManager().stripe_for(key)  # every process agrees
    assert name.startswith(SUBMIT_LOCK_LIMIT_PREFIX) and "passwd" not in name
    names = {locks.stripe_for(f"k{i}") for i in range(2000)}
    assert len(names) == SUBMIT_LOCK_STRIPES  # every stripe used, none beyond
    assert locks.stripe_for("x") in {f"hailuo-lock-{i:02d}" for i in range(64)}


def test_prefect_is_chosen_by_environment(monkeypatch):
    from prefect_hailuo.tasks import submit_lock

    monkeypatch.setenv("HAILUO_SUBMIT_LOCK_MANAGER", "prefect")
    monkeypatch.setenv("HAILUO_SUBMIT_LOCK_HOLD_SECONDS", "600")
    manager = submit_lock.configured_lock_manager()
    assert isinstance(manager, submit_lock.PrefectLockManager)
    assert manager.default_hold_seconds == 600.0


def test_a_busy_server_is_asked_again_and_a_full_stripe_is_not(monkeypatch):
    """503 (a SQLite-backed server's database was busy) rolls the ask back: ask again after
    a short pause; 423 (the stripe is taken) is an answer: wait and read again."""
    import httpx

    from prefect_hailuo.tasks import submit_lock

    monkeypatch.setattr(submit_lock.time, "sleep", lambda _s: None)
    request = httpx.Request("POST", "http://server/api/v2/concurrency_limits/increment")

    def refusal(code: int) -> httpx.HTTPStatusError:
        return httpx.HTTPStatusError(str(code), request=request,
                                     response=httpx.Response(code, request=request))

    lease = uuid.uuid4()

    class Server:
        def __init__(self, answers: list) -> None:
            self.answers, self.asked = answers, 0

        def increment_concurrency_slots_with_lease(self, **kw):
            assert kw["mode"] == "concurrency" and kw["lease_duration"] >= 60
            self.asked += 1
            answer = self.answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return httpx.Response(200, json={"lease_id": str(lease), "limits": [
                {"id": str(uuid.uuid4()), "name": "s-1", "limit": 1}]}, request=request)

    locks = submit_lock.PrefectLockManager()
    busy = Server([refusal(503), refusal(503), "granted"])
    assert locks._take(busy, "s-1", 120) == lease and busy.asked == 3
    full = Server([refusal(423)])
    assert locks._take(full, "s-1", 120) is None and full.asked == 1
    broken = Server([refusal(500)])
    with pytest.raises(httpx.HTTPStatusError):
        locks._take(broken, "s-1", 120)


# --------------------------------------------------------------------------- test server


@pytest.mark.prefect
def test_same_key_waits_for_the_holder_thread(prefect_harness):
    locks = _manager()
    assert locks.acquire_lock("k", "a")
    assert locks.acquire_lock("k", "a")  # the holder again: re-entrant
    assert locks.is_locked("k") and locks.is_lock_holder("k", "a")
    assert not locks.is_lock_holder("k", "b")
    assert _limit(locks.stripe_for("k")).active_slots == 1  # one slot, not two
    started = time.monotonic()
    assert not locks.acquire_lock("k", "b", acquire_timeout=0.5)
    assert time.monotonic() - started >= 0.45
    assert not locks.wait_for_lock("k", timeout=0.2)
    got: list[bool] = []
    waiter = threading.Thread(target=lambda: got.append(locks.acquire_lock("k", "b")))
    waiter.start()
    time.sleep(0.5)
    assert not got  # still waiting
    locks.release_lock("k", "a")
    waiter.join(10)
    assert got == [True] and locks.is_lock_holder("k", "b")
    with pytest.raises(ValueError):
        locks.release_lock("k", "a")  # not the holder
    locks.release_lock("k", "b")
    assert not locks.is_locked("k") and locks.wait_for_lock("k", timeout=1)
    assert _limit(locks.stripe_for("k")).active_slots == 0


@pytest.mark.prefect
def test_same_key_waits_for_the_holder_process(prefect_harness, tmp_path):
    """Another process (standing in for another machine: all it shares is the server)
    holds the key until told to release it; this process waits, then gets it."""
    import prefect.settings

    locks = _manager()
    go = tmp_path / "release"
    script = textwrap.dedent(f"""
        import pathlib, time
        from prefect_hailuo.tasks.submit_lock import PrefectLockManager
        locks = PrefectLockManager(prefix={locks.prefix!r})
        assert locks.acquire_lock("shared-key", "far-holder", acquire_timeout=30)
        print("HELD", flush=True)
        while not pathlib.Path({str(go)!r}).exists():
            time.sleep(0.05)
        locks.release_lock("shared-key", "far-holder")
        print("RELEASED", flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env=_env_for_child(prefect.settings.PREFECT_API_URL.value()))
    try:
        assert proc.stdout.readline().strip() == "HELD", proc.stdout.read()[-3000:]
        assert locks.is_locked("shared-key")
        assert not locks.acquire_lock("shared-key", "near", acquire_timeout=0.5)
        got: list[float] = []
        waiter = threading.Thread(target=lambda: got.append(
            locks.acquire_lock("shared-key", "near", acquire_timeout=60) and time.monotonic()))
        waiter.start()
        time.sleep(0.5)
        assert not got
        released_at = time.monotonic()
        go.write_text("go")
        waiter.join(60)
        assert got and got[0] >= released_at and locks.is_lock_holder("shared-key", "near")
        assert proc.wait(30) == 0, proc.stdout.read()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    locks.release_lock("shared-key", "near")


@pytest.mark.prefect
def test_keys_in_different_stripes_do_not_block_and_a_shared_stripe_only_waits(
        prefect_harness):
    locks = _manager()
    apart, other = _keys_in(locks, same_stripe=False)
    assert locks.acquire_lock(apart, "a")
    assert locks.acquire_lock(other, "b", acquire_timeout=0)  # at once
    locks.release_lock(other, "b")
    locks.release_lock(apart, "a")
    near, neighbour = _keys_in(locks, same_stripe=True)
    assert locks.acquire_lock(near, "c")
    # a key nobody holds, in a held stripe: reported locked and waited for, then free
    assert locks.is_locked(neighbour) and not locks.is_lock_holder(neighbour, "c")
    assert not locks.acquire_lock(neighbour, "d", acquire_timeout=0.3)
    locks.release_lock(near, "c")
    assert locks.acquire_lock(neighbour, "d", acquire_timeout=5)
    locks.release_lock(neighbour, "d")


@pytest.mark.prefect
def test_async_variants(prefect_harness):
    import asyncio

    locks = _manager()

    async def scenario() -> None:
        assert await locks.aacquire_lock("k", "a")
        assert not await locks.aacquire_lock("k", "b", acquire_timeout=0.3)
        assert not await locks.await_for_lock("k", timeout=0.2)
        later = asyncio.create_task(locks.aacquire_lock("k", "b", acquire_timeout=30))
        await asyncio.sleep(0.3)
        assert not later.done()
        await asyncio.to_thread(locks.release_lock, "k", "a")
        assert await later
        await asyncio.to_thread(locks.release_lock, "k", "b")
        assert await locks.await_for_lock("k", timeout=5)

    asyncio.run(scenario())


@pytest.mark.prefect
def test_wrapper_release_twice_is_a_no_op(prefect_harness, monkeypatch):
    """Prefect releases a nested SERIALIZABLE transaction's lock twice (child commit, then
    parent commit); the second must not fail, nor release anybody else's lock."""
    from prefect_hailuo.tasks.submit_lock import SubmitLockManager, configured_lock_manager

    monkeypatch.setenv("HAILUO_SUBMIT_LOCK_MANAGER", "prefect")
    wrapper = SubmitLockManager()
    inner = configured_lock_manager()
    key = f"wrapper-{uuid.uuid4().hex}"
    assert wrapper.acquire_lock(key, "h")
    assert wrapper.is_lock_holder(key, "h") and wrapper.is_locked(key)
    wrapper.release_lock(key, "h")
    wrapper.release_lock(key, "h")  # no error
    assert not wrapper.is_locked(key)
    assert wrapper.acquire_lock(key, "next")
    wrapper.release_lock(key, "h")  # a stale release leaves the new holder's lock alone
    assert wrapper.is_locked(key) and inner.is_lock_holder(key, "next")
    wrapper.release_lock(key, "next")
    assert not wrapper.is_locked(key)


@pytest.mark.prefect
def test_a_stripe_that_cannot_lock_is_refused(prefect_harness):
    from prefect import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate

    locks = _manager()
    stripe = locks.stripe_for("k")
    assert locks.acquire_lock("k", "a")  # creates the stripe
    locks.release_lock("k", "a")
    with get_client(sync_client=True) as client:
        client.update_global_concurrency_limit(stripe, GlobalConcurrencyLimitUpdate(limit=5))
        with pytest.raises(RuntimeError, match="not an active limit of 1"):
            locks.acquire_lock("k", "a", acquire_timeout=1)
        client.delete_global_concurrency_limit_by_name(stripe)  # deleted: created again
    assert locks.acquire_lock("k", "a", acquire_timeout=5)
    assert _limit(stripe).limit == 1
    locks.release_lock("k", "a")


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def sim():
    with run_simulator(render_seconds=0.4, accepted_keys=[KEY]) as handle:
        yield handle


@pytest.fixture(scope="module")
def creds(prefect_harness, sim) -> str:
    return save_credentials("shared-lock", sim.base_url, KEY)


@pytest.mark.prefect
def test_two_processes_with_the_prefect_lock_pay_once(sim, creds, tmp_path):
    """Two flow runs in two processes, released together, submit the same request with
    ``HAILUO_SUBMIT_LOCK_MANAGER=prefect``; each has a lock folder of its own, so only the
    server's lock can keep them apart. The provider takes 3 s to accept a submit and does
    not honour Idempotency-Key: without the lock both would pay."""
    import prefect.settings
    from prefect import get_client

    prompt = f"[Truck left] two machines race for one harbour crane at dusk {uuid.uuid4().hex}"
    go = tmp_path / "go"
    script = f"""
        import json, pathlib, sys, time
        from prefect_hailuo.flows import Destination, GenerationOptions, text_to_video
        from prefect_hailuo.tasks.submit_lock import configured_lock_manager
        me = sys.argv[1]
        print("MANAGER " + type(configured_lock_manager()).__name__, flush=True)
        (pathlib.Path({str(tmp_path)!r}) / ("ready-" + me)).write_text("ready")
        while not pathlib.Path({str(go)!r}).exists():
            time.sleep(0.01)
        clip = text_to_video(prompt={prompt!r}, credentials_block={creds!r},
                             options=GenerationOptions(resolution="512p", duration=5),
                             destination=Destination(
                                 output_dir={str(tmp_path)!r} + "/out-" + me))
        print("RESULT " + json.dumps({{"task_id": clip.task_id, "sha256": clip.sha256}}))
    """
    api = prefect.settings.PREFECT_API_URL.value()

    def start(name: str) -> subprocess.Popen:
        env = {**_env_for_child(api), "HAILUO_SUBMIT_LOCK_MANAGER": "prefect",
               "HAILUO_SUBMIT_LOCK_DIR": str(tmp_path / f"locks-{name}")}
        return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), name],
                                env=env, cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)

    sim.configure(model_idempotency="false", submit_seconds=3.0)
    before, logged = sim.submits(), len(sim.requests("submit"))
    procs = [start(name) for name in ("a", "b")]
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
        assert "MANAGER PrefectLockManager" in out
        line = next(x for x in out.splitlines() if x.startswith("RESULT "))
        results.append(json.loads(line.removeprefix("RESULT ")))
    assert sim.submits() == before + 1
    assert len(sim.requests("submit")) == logged + 1  # the second never even asked
    assert results[0] == results[1]
    with get_client(sync_client=True) as client:  # the lock was taken, and given back
        stripes = [x for x in client.read_global_concurrency_limits(limit=200)
                   if x.name.startswith("hailuo-lock-") and "test" not in x.name]
    assert stripes and all(x.active_slots == 0 for x in stripes)


# --------------------------------------------------------------------------- lease expiry


@pytest.fixture(scope="module")
def real_server(tmp_path_factory) -> Iterator[str]:
    """``prefect server start`` in a subprocess, with its services (the repossessor that
    expires leases, looking every second) and a database of its own."""
    home = tmp_path_factory.mktemp("real-prefect")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home}/prefect.db",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_REPOSSESSOR_LOOP_SECONDS": "1",
        "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_FOREMAN_ENABLED": "false",
    })
    log = (home / "server.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host",
                             "127.0.0.1", "--port", str(port)], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    try:
        import httpx

        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (home / "server.log").read_text()[-3000:]
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "prefect server start never answered"
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@pytest.mark.slow
def test_a_dead_or_silent_holder_frees_the_lock_when_its_lease_expires(real_server,
                                                                         tmp_path):
    """Two holders that never release: a process SIGKILLed while holding (its renewals
    stop with it) and one that took the lock with a hold timeout shorter than the
    server's minimum lease (60 s) and went silent. Both locks free themselves once the
    leases expire and the server's repossessor runs, without anybody releasing them. A
    third holder, alive, keeps renewing its lease and keeps its lock past that expiry."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    prefix = f"hailuo-lock-expiry-{uuid.uuid4().hex[:6]}-"
    script = textwrap.dedent(f"""
        import os, signal
        from prefect_hailuo.tasks.submit_lock import PrefectLockManager
        locks = PrefectLockManager(prefix={prefix!r}, lease_seconds=60)
        assert locks.acquire_lock("killed-key", "doomed", acquire_timeout=30,
                                  hold_timeout=1800)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          timeout=120, env=_env_for_child(real_server))
    assert proc.returncode == -9, proc.stderr.decode()[-3000:]
    with temporary_settings(updates={PREFECT_API_URL: real_server}):
        from prefect_hailuo.tasks.submit_lock import PrefectLockManager

        silent = PrefectLockManager(prefix=prefix)
        key = next(f"silent-{i}" for i in range(1000) if silent.stripe_for(f"silent-{i}")
                   != silent.stripe_for("killed-key"))
        assert silent.acquire_lock(key, "silent", hold_timeout=1)  # and never released
        silent._held.clear()  # forgotten: as if its process had gone too
        renewing = PrefectLockManager(prefix=prefix, lease_seconds=60)
        taken = {silent.stripe_for(k) for k in ("killed-key", key)}
        kept = next(f"kept-{i}" for i in range(1000)
                    if silent.stripe_for(f"kept-{i}") not in taken)
        assert renewing.acquire_lock(kept, "living", hold_timeout=1800)
        kept_at = time.monotonic()
        locks = PrefectLockManager(prefix=prefix)
        started = time.monotonic()
        assert locks.is_locked("killed-key") and locks.is_locked(key)
        assert not locks.acquire_lock("killed-key", "alive", acquire_timeout=5)
        assert locks.acquire_lock("killed-key", "alive", acquire_timeout=150)
        assert locks.acquire_lock(key, "alive", acquire_timeout=30)
        waited = time.monotonic() - started
        assert 40 < waited < 150  # the lease (60 s from the take), not at once
        # past its first lease (60 s) and a repossessor pass: still held, renewed
        time.sleep(max(0.0, kept_at + 66 - time.monotonic()))
        assert renewing._held[(kept, "living")].expires > kept_at + 66
        assert locks.is_locked(kept) and renewing.is_lock_holder(kept, "living")
        assert not locks.acquire_lock(kept, "alive", acquire_timeout=0)
        renewing.release_lock(kept, "living")
        assert not locks.is_locked(kept)
        locks.release_lock("killed-key", "alive")
        locks.release_lock(key, "alive")
        assert not locks.is_locked("killed-key") and not locks.is_locked(key)
