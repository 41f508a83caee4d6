"""Scale-out end to end (issue 16): one batch spread over two workers, re-run elsewhere.

What runs, as an operator would set it up on several machines:

- a ``prefect server start`` on PostgreSQL: a throwaway cluster started here from the
  installed binaries, on loopback (``tests/prefect_servers.throwaway_postgres``); on
  SQLite where PostgreSQL is not installed (or with ``HAILUO_TEST_POSTGRES=0``), the same
  test otherwise;
- the simulator with a per-key rate limit below the batch's size (so a minute's submits
  must be spread: without the shared ``hailuo-submit`` limit the two workers' submits
  would get rate-limited answers), and moto's S3 as the pool's shared result store;
- ``deployments.setup --results-bucket`` (the pool's flow runs persist their results,
  the submit cache of paid task ids above all, in that bucket and lock submits on the
  server) and ``prefect --no-prompt deploy --all``;
- two process workers, each with its own PREFECT_HOME, its own local result storage, its
  own temporary folder (where each flow run's working folder is made, so clips are
  written there with the relative ``out`` folder and thrown away with it) and its own
  empty working folder. No clone: the deployments' entrypoints are module paths of the
  installed package and their pull step is empty, so a worker needs the package, not the
  repository; what makes the two "machines" separate is that they share nothing but the
  Prefect server and the bucket. Each runs at most two flow runs (``--limit 2``): the
  batch run holds one slot while it waits, so its three chunk runs cannot all land on
  one worker, and both must take clips.

The second test stops the worker that ran the batch and runs the same batch again: it
lands on the other worker alone, which finds every paid task id (those the stopped worker
paid for included) in the bucket, so nothing is submitted again.

Time: about 2 min 20 s, of which a bit over a minute is the rate limit by design (30
submits under 29 a minute cannot all go within one minute); with RPM at 30 or more the
"no rate-limited answer" check could not fail, and would prove nothing.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

from hailuo.simulator import run_simulator
from prefect_hailuo.flows.models import BatchResult
from tests.conftest import s3_client
from tests.prefect_servers import (
    PREFECT,
    Server,
    _api,
    _trigger,
    _wait_final,
    running_server,
    throwaway_postgres,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

KEY = "hk-SCALE-OUT-TEST-7c6b5a4d3e2f"
#: Provider submits per minute for the key, below CLIPS: the shared limit has to hold.
RPM = 29
CLIPS = 30
CLIPS_PER_RUN = 10
BUCKET = "hailuo-scale-out"
BLOCK = "scale-out-results"
BATCH = "scale-out"
WORKERS = ("worker-a", "worker-b")


@pytest.fixture(scope="module")
def database_url() -> Iterator[str | None]:
    with throwaway_postgres() as url:
        yield url


@pytest.fixture(scope="module")
def server(database_url, tmp_path_factory) -> Iterator[Server]:
    extra = {"PREFECT_API_DATABASE_CONNECTION_URL": database_url} if database_url else {}
    with running_server(tmp_path_factory.mktemp("scale-out-server"), **extra) as srv:
        yield srv


@pytest.fixture(scope="module")
def sim():
    with run_simulator(render_seconds=0.3, cheap=True, rpm=RPM,
                       accepted_keys=[KEY]) as handle:
        yield handle


@pytest.fixture(scope="module")
def results_block(server, s3_endpoint) -> str:
    from prefect_aws import AwsCredentials, S3Bucket
    from prefect_aws.client_parameters import AwsClientParameters

    s3_client(s3_endpoint).create_bucket(Bucket=BUCKET)
    creds = AwsCredentials(aws_access_key_id="testing", aws_secret_access_key="testing",
                           region_name="us-east-1",
                           aws_client_parameters=AwsClientParameters(endpoint_url=s3_endpoint))
    with server.settings():
        S3Bucket(bucket_name=BUCKET, credentials=creds).save(BLOCK, overwrite=True)
    return BLOCK


@pytest.fixture(scope="module")
def pool(server, sim, results_block) -> Server:
    """The operator's one-time setup: pool (sharing results through the bucket), rate
    limit, key and credentials blocks."""
    setup = server.run(sys.executable, "-m", "prefect_hailuo.deployments.setup",
                       "--rpm", str(RPM), "--results-bucket", results_block,
                       "--api-key-env", "HAILUO_API_KEY", "--base-url", sim.base_url,
                       HAILUO_API_KEY=KEY)
    assert setup.returncode == 0, (setup.stdout + setup.stderr)[-3000:]
    return server


@pytest.fixture(scope="module")
def workers(pool, tmp_path_factory) -> dict[str, Path]:
    """Two process workers sharing nothing on disk (started while the deployments are
    being deployed); returns each one's folder."""
    folders: dict[str, Path] = {}
    for name in WORKERS:
        folder = tmp_path_factory.mktemp(name)
        for sub in ("home", "storage", "tmp", "work"):
            (folder / sub).mkdir()
        env = {**pool.env, "PREFECT_HOME": str(folder / "home"),
               "PREFECT_LOCAL_STORAGE_PATH": str(folder / "storage"),
               "TMPDIR": str(folder / "tmp")}
        env.pop("PYTHONPATH", None)  # the installed package, not the repository
        pool.start(name, str(PREFECT), "worker", "start", "--pool", "hailuo",
                   "--name", name, "--limit", "2", cwd=folder / "work", env=env)
        folders[name] = folder
    return folders


@pytest.fixture(scope="module")
def deployed(pool, workers) -> Server:
    """``prefect --no-prompt deploy --all`` from the repository, then both workers
    polling the pool."""
    deploy = pool.run(str(PREFECT), "--no-prompt", "deploy", "--all")
    assert deploy.returncode == 0, (deploy.stdout + deploy.stderr)[-3000:]
    deadline = time.monotonic() + 90
    while True:
        found = _api("POST", f"{pool.url}/work_pools/hailuo/workers/filter", json={}).json()
        if {w["name"] for w in found if w.get("status") == "ONLINE"} >= set(WORKERS):
            return pool
        assert time.monotonic() < deadline, (found, _worker_logs(pool))
        time.sleep(0.5)


@pytest.fixture(scope="module")
def first_run() -> dict:
    """What the first test saw, for the re-run test."""
    return {}


def _worker_logs(server: Server) -> str:
    return "\n".join(f"--- {n} ---\n{server.log(n)[-6000:]}" for n in server.logs
                     if n.startswith("worker"))


def _parameters() -> dict:
    return {
        "clips": [{"prompt": f"[Truck left] shot {i}: a paper boat drifting down a gutter "
                             "after rain, reflections", "name": f"shot-{i:02d}"}
                  for i in range(1, CLIPS + 1)],
        "options": {"resolution": "512p", "duration": 5, "max_cost_usd": 20},
        "destination": {"output_dir": "out", "s3_bucket_block": BLOCK,
                        "s3_prefix": "scale-out"},
        "batch_name": BATCH,
        "clips_per_run": CLIPS_PER_RUN,
    }


def _run_batch(server: Server) -> tuple[str, BatchResult]:
    """Run the batch deployment once; it must complete with every clip and none failed."""
    run_id = _trigger(server, "hailuo-generate-batch/batch", _parameters())
    run = _wait_final(server, [run_id], timeout=240)[run_id]
    assert run["state"]["type"] == "COMPLETED", (run["state"], _worker_logs(server))
    result = _batch_result(server, run_id)
    assert len(result.clips) == CLIPS and not result.failed, result.failed
    return run_id, result


def _batch_result(server: Server, run_id: str) -> BatchResult:
    """The batch run's persisted result, read here as any API caller would."""
    from uuid import UUID

    from prefect.client.orchestration import get_client

    with server.settings(), get_client(sync_client=True) as client:
        result = client.read_flow_run(UUID(run_id)).state.result()
    return BatchResult.model_validate(result if isinstance(result, dict)
                                      else result.model_dump())


def _chunk_runs(server: Server, parent_id: str) -> list[dict]:
    found = _api("POST", f"{server.url}/flow_runs/filter", json={
        "flow_runs": {"parent_flow_run_id": {"any_": [parent_id]}}}).json()
    return sorted(found, key=lambda r: r["name"])


def _placed(server: Server, run_ids: list[str]) -> dict[str, list[str]]:
    """Which worker ran which run. Both workers may try the same scheduled run: the loser
    logs "submitting flow run '<id>'" and then "Aborted submission of flow run '<id>'", so
    a run counts for the worker that did not abort it."""
    placed: dict[str, list[str]] = {}
    for name in WORKERS:
        log = server.log(name)
        aborted = {rid for line in log.splitlines() if "Aborted submission" in line
                   for rid in run_ids if rid in line}
        placed[name] = [rid for rid in run_ids
                        if f"submitting flow run '{rid}'" in log and rid not in aborted]
    return placed


def _rate_limited(sim) -> list[dict]:
    return [r for r in sim.requests() if r["status"] == 429 or r.get("code") == 1002
            or "rate_limited" in str(r.get("fault"))]


def _flow_runs_stored_in(database_url: str) -> int:
    """Flow runs in the PostgreSQL database itself (the server really runs on it)."""
    import asyncpg

    async def count() -> int:
        conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"),
                                     ssl=False)
        try:
            return await conn.fetchval("SELECT count(*) FROM flow_run")
        finally:
            await conn.close()

    return asyncio.run(count())


def _check_uploads(s3_endpoint: str, result: BatchResult) -> dict[str, str]:
    """Every clip's video and manifest are in the bucket; returns clip name -> the flow
    run (a chunk run) whose worker made it, from its manifest."""
    s3 = s3_client(s3_endpoint)
    made_by: dict[str, str] = {}
    for clip in result.clips:
        assert clip.s3_uri and clip.manifest_uri, clip
        video, manifest = urlparse(clip.s3_uri), urlparse(clip.manifest_uri)
        assert video.netloc == manifest.netloc == BUCKET
        head = s3.head_object(Bucket=BUCKET, Key=video.path.lstrip("/"))
        assert head["ContentLength"] == clip.size
        body = s3.get_object(Bucket=BUCKET, Key=manifest.path.lstrip("/"))["Body"].read()
        record = json.loads(body)
        assert record["task_id"] == clip.task_id and record["sha256"] == clip.sha256
        made_by[str(clip.name)] = record["prefect_flow_run_id"]
    return made_by


def test_a_batch_fans_out_over_both_workers_under_the_shared_rate_limit(
        deployed, workers, sim, s3_endpoint, database_url, first_run):
    """30 clips, 3 chunk runs, two workers: every clip done once, paid once, no
    rate-limited answer although the provider allows fewer submits a minute than the
    batch has clips, and nothing persisted on a worker's own disk."""
    before = sim.submits()
    run_id, result = _run_batch(deployed)
    assert sorted(c.name for c in result.clips) == [f"shot-{i:02d}"
                                                     for i in range(1, CLIPS + 1)]
    assert len({c.task_id for c in result.clips}) == CLIPS
    assert sim.submits() - before == CLIPS
    assert not _rate_limited(sim), _rate_limited(sim)[:3]

    chunks = _chunk_runs(deployed, run_id)
    assert [c["name"] for c in chunks] == [f"{BATCH}-clips-{a:03d}-{a + 9:03d}"
                                           for a in (1, 11, 21)]
    assert all(c["state"]["type"] == "COMPLETED" for c in chunks), chunks
    chunk_ids = [c["id"] for c in chunks]
    placed = _placed(deployed, [run_id, *chunk_ids])
    assert sorted(rid for runs in placed.values() for rid in runs) == sorted(
        [run_id, *chunk_ids]), placed  # each run on exactly one worker
    by_worker = {name: [rid for rid in runs if rid in chunk_ids]
                 for name, runs in placed.items()}
    assert all(by_worker.values()), by_worker  # both workers took clips

    made_by = _check_uploads(s3_endpoint, result)
    assert set(made_by.values()) == set(chunk_ids)
    # the results went to the bucket, not to a worker's local result storage
    for folder in workers.values():
        assert not [p for p in (folder / "storage").rglob("*") if p.is_file()], folder

    if database_url:
        assert _flow_runs_stored_in(database_url) == 1 + len(chunks)

    first_run.update(task_ids={c.name: c.task_id for c in result.clips},
                     parent_worker=next(n for n, runs in placed.items() if run_id in runs),
                     by_worker=by_worker)
    print(f"database: {'PostgreSQL' if database_url else 'SQLite'}; chunks: {by_worker}")


def test_a_rerun_on_the_other_worker_pays_nothing(deployed, workers, sim, s3_endpoint,
                                                  first_run):
    """The worker that ran the batch is stopped; the same batch again runs on the other
    worker alone, which finds all 30 paid task ids (also those the stopped worker paid
    for) in the shared bucket: the same clips, no submit at all."""
    assert first_run, "needs the first test's batch"
    gone = first_run["parent_worker"]
    [left] = [name for name in WORKERS if name != gone]
    deployed.stop(gone)
    before = sim.submits()
    run_id, result = _run_batch(deployed)
    assert {c.name: c.task_id for c in result.clips} == first_run["task_ids"]
    assert sim.submits() == before
    assert not _rate_limited(sim), _rate_limited(sim)[:3]

    chunk_ids = [c["id"] for c in _chunk_runs(deployed, run_id)]
    assert len(chunk_ids) == CLIPS // CLIPS_PER_RUN
    placed = _placed(deployed, [run_id, *chunk_ids])
    assert sorted(placed[left]) == sorted([run_id, *chunk_ids]), placed
    assert set(_check_uploads(s3_endpoint, result).values()) == set(chunk_ids)
