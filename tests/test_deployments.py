"""Deployments against a real Prefect server with real workers.

One ``prefect server start`` (SQLite, its own PREFECT_HOME) serves the whole module. The
operator path is followed exactly: ``deployments.setup`` (pool, rate limit, key and
credentials blocks), ``prefect --no-prompt deploy --all`` from the repository, process
workers, runs triggered through the API. Flow runs execute in the workers' subprocesses
after the deployment's pull step changed into the repository; they talk to a simulator
and a moto S3 server running in this test process. Everything started is stopped at the
end (each server/worker runs in its own process group, killed as a group).

Tests run in file order and build on each other (deploy, then run, then serve).
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from collections.abc import Iterator

import pytest

from hailuo.simulator import run_simulator
from prefect_hailuo.deployments.limits import SUBMIT_LIMIT_NAME, submit_limit
from prefect_hailuo.deployments.serve import deployment_specs
from tests.conftest import s3_client
from tests.prefect_servers import (
    PREFECT,
    Server,
    _api,
    _trigger,
    _wait_final,
    running_server,
)

pytestmark = [pytest.mark.slow]

KEY = "hk-DEPLOY-TEST-0b9a8c7d6e5f"
RPM = 10
BUCKET = "hailuo-deploy"


# -- pure checks (no server) -----------------------------------------------------------
@pytest.mark.parametrize("headroom", [0.0, 0.1, 0.25])
def test_submit_limit_never_lets_more_than_the_budget_through_a_minute(headroom):
    """Replays the bucket's fastest possible schedule and counts every 60 s window."""
    for rpm in [1, 2, 3, 5, 9, 10, 11, 20, 59, 60, 61, 120, 600, 1000]:
        sized = submit_limit(rpm, headroom)
        assert 1 <= sized.limit <= sized.budget <= rpm and sized.slot_decay_per_second > 0
        if rpm > 1 and headroom:
            assert sized.budget < rpm
        # greedy: `limit` slots at once, then one each time a slot has decayed
        times = [0.0] * sized.limit + [k / sized.slot_decay_per_second
                                       for k in range(1, 3 * rpm + 1)]
        busiest = max(sum(1 for t in times if start <= t < start + 60 - 1e-9)
                      for start in times)
        assert busiest <= sized.budget == sized.max_in_window(), (rpm, sized)
        # and the bucket is not needlessly slow: over ten minutes it reaches the budget
        assert len([t for t in times if t < 600]) >= min(len(times), 10 * sized.budget)


def test_submit_limit_refuses_nonsense():
    with pytest.raises(ValueError):
        submit_limit(0)
    with pytest.raises(ValueError):
        submit_limit(10, headroom=1.0)


def test_prefect_yaml_deploys_every_flow_with_an_inactive_example_schedule():
    import importlib

    from prefect import Flow

    specs = deployment_specs()
    deployed = {tuple(s["entrypoint"].split(":")) for s in specs}
    modules = [f"prefect_hailuo.flows.{m}"
               for m in ("generation", "batch", "continuity", "storyboard", "film")]
    for module in modules:
        mod = importlib.import_module(module)
        for attr, value in vars(mod).items():
            if isinstance(value, Flow) and value.__module__ == module:
                assert (module, attr) in deployed, attr
    for spec in specs:
        assert spec["description"] and "hailuo" in spec["tags"]
        assert spec["work_pool"]["name"] == "hailuo"
        assert spec["parameters"]["credentials_block"] == "hailuo"
    schedules = [s for spec in specs for s in spec.get("schedules") or []]
    assert schedules and all(s["active"] is False for s in schedules)


def test_serve_builds_one_deployment_per_prefect_yaml_entry():
    from prefect_hailuo.deployments.serve import build_deployments

    built = build_deployments()
    specs = deployment_specs()
    assert [d.name for d in built] == [s["name"] for s in specs]
    for deployment, spec in zip(built, specs, strict=True):
        assert deployment.parameters == spec["parameters"]
        assert deployment.tags == spec["tags"]
        for schedule in deployment.schedules:
            assert schedule.active is False


# -- a real server ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("prefect-server")) as srv:
        yield srv


@pytest.fixture(scope="module")
def sim():
    with run_simulator(render_seconds=0.5, cheap=True, rpm=RPM, accepted_keys=[KEY]) as handle:
        yield handle


@pytest.fixture(scope="module")
def deployed(server, sim) -> Server:
    """The operator's steps, as the README gives them."""
    setup = server.run(sys.executable, "-m", "prefect_hailuo.deployments.setup",
                       "--rpm", str(RPM), "--api-key-env", "HAILUO_API_KEY",
                       "--base-url", sim.base_url,
                       HAILUO_API_KEY=KEY)
    assert setup.returncode == 0, setup.stderr[-3000:]
    assert KEY not in setup.stdout + setup.stderr
    deploy = server.run(str(PREFECT), "--no-prompt", "deploy", "--all")
    assert deploy.returncode == 0, (deploy.stdout + deploy.stderr)[-3000:]
    return server


@pytest.fixture(scope="module")
def bucket_block(deployed, s3_endpoint) -> str:
    from prefect_aws import AwsCredentials, S3Bucket
    from prefect_aws.client_parameters import AwsClientParameters

    s3_client(s3_endpoint).create_bucket(Bucket=BUCKET)
    creds = AwsCredentials(aws_access_key_id="testing", aws_secret_access_key="testing",
                           region_name="us-east-1",
                           aws_client_parameters=AwsClientParameters(endpoint_url=s3_endpoint))
    with deployed.settings():
        S3Bucket(bucket_name=BUCKET, credentials=creds).save("deploy-test", overwrite=True)
    return "deploy-test"


def _worker_logs(server: Server) -> str:
    return "\n".join(server.log(n)[-4000:] for n in server.logs if n.startswith("worker"))


def test_setup_and_deploy_create_pool_limit_blocks_and_deployments(deployed, sim):
    sized = submit_limit(RPM)
    gcl = _api("GET", f"{deployed.url}/v2/concurrency_limits/{SUBMIT_LIMIT_NAME}").json()
    assert gcl["limit"] == sized.limit
    assert math.isclose(gcl["slot_decay_per_second"], sized.slot_decay_per_second)
    pool = _api("GET", f"{deployed.url}/work_pools/hailuo").json()
    assert pool["type"] == "process"
    found = _api("POST", f"{deployed.url}/deployments/filter", json={}).json()
    assert {d["name"] for d in found} == {s["name"] for s in deployment_specs()}
    for d in found:
        assert d["work_pool_name"] == "hailuo"
        # module entrypoints: workers import the installed package, no clone to step into
        assert d["pull_steps"] == [] and d["entrypoint"].startswith("prefect_hailuo.flows.")
    with deployed.settings():
        from prefect_hailuo.blocks import HailuoCredentials

        block = HailuoCredentials.load("hailuo")
        assert block.base_url == sim.base_url
        with block.get_client() as client:  # the key came through the Secret block
            assert client.base_url == sim.base_url
    # the Secret is encrypted at rest: the key is nowhere in the server's files
    needle = KEY.encode()
    assert not [p for p in deployed.home.rglob("*") if p.is_file()
                and needle in p.read_bytes()]


def test_worker_runs_text_to_video_deployment_into_s3(deployed, sim, bucket_block,
                                                      s3_endpoint, tmp_path_factory):
    from hailuo import media

    deployed.start("worker-1", str(PREFECT), "worker", "start", "--pool", "hailuo",
                   "--name", "worker-1", "--limit", "1")
    out = tmp_path_factory.mktemp("deploy-out")
    before = sim.submits()
    run_id = _trigger(deployed, "hailuo-text-to-video/text-to-video", {
        "prompt": "[Truck left] a tram crossing a bridge in fog, morning light",
        "options": {"resolution": "512p", "duration": 5},
        "destination": {"output_dir": str(out), "s3_bucket_block": bucket_block,
                        "s3_prefix": "e2e"},
    })
    run = _wait_final(deployed, [run_id])[run_id]
    assert run["state"]["type"] == "COMPLETED", (run["state"], _worker_logs(deployed))
    assert sim.submits() == before + 1
    s3 = s3_client(s3_endpoint)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="e2e/")["Contents"]]
    video_key = next(k for k in keys if k.endswith("/video.mp4"))
    manifest_key = video_key.replace("video.mp4", "manifest.json")
    assert manifest_key in keys
    body = s3.get_object(Bucket=BUCKET, Key=video_key)["Body"].read()
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=manifest_key)["Body"].read())
    assert hashlib.sha256(body).hexdigest() == manifest["sha256"]
    assert manifest["prefect_flow_run_id"] == run_id and manifest["simulated"] is True
    local = out / "from-s3.mp4"
    local.write_bytes(body)
    info = media.probe(local)
    assert (info.width, info.height) == (912, 512)
    assert f"/{manifest['task_id']}/" in video_key
    assert run_id in deployed.log("worker-1")


def test_two_workers_share_the_submit_rate_limit(deployed, sim, tmp_path_factory):
    """12 submits from two workers at once against a provider allowing 10 per minute:
    only the shared hailuo-submit limit can keep every one of them below the provider's
    limit, so a single 429 means it did not hold."""
    deployed.start("worker-2", str(PREFECT), "worker", "start", "--pool", "hailuo",
                   "--name", "worker-2", "--limit", "1")
    sim.reset()  # clean request log and rate-limit windows (the earlier test submitted)
    out = tmp_path_factory.mktemp("batch-out")
    per_batch = 6
    run_ids = [
        _trigger(deployed, "hailuo-generate-batch/batch", {
            "clips": [{"prompt": f"[Pan right] batch {b} clip {i}: a lantern festival, "
                                 "night, slow drift"} for i in range(per_batch)],
            "options": {"resolution": "512p", "duration": 5, "max_cost_usd": 5},
            "destination": {"output_dir": str(out)},
            "max_concurrency": per_batch,
        }) for b in range(2)]
    runs = _wait_final(deployed, run_ids, timeout=400)
    for run in runs.values():
        assert run["state"]["type"] == "COMPLETED", (run["state"], _worker_logs(deployed))
    assert sim.submits() == 2 * per_batch > RPM  # more than a minute's worth: the limit bit
    limited = [r for r in sim.requests() if r["status"] == 429 or r.get("code") == 1002
               or "rate_limited" in str(r.get("fault"))]
    assert not limited, limited[:3]
    # each worker ran one batch, and the two runs overlapped in time
    a, b = runs.values()
    assert a["start_time"] < b["end_time"] and b["start_time"] < a["end_time"]
    # Both workers may try the same scheduled run: the loser logs "submitting flow run
    # '<id>'" and then "Aborted submission of flow run '<id>'" (the server refused it), so a
    # run counts for the worker that did not abort it.
    def ran(name: str) -> list[str]:
        log = deployed.log(name)
        aborted = {rid for line in log.splitlines() if "Aborted submission" in line
                   for rid in run_ids if rid in line}
        return [rid for rid in run_ids if rid in log and rid not in aborted]

    placed = {name: ran(name) for name in ("worker-1", "worker-2")}
    assert sorted(len(v) for v in placed.values()) == [1, 1], placed


def test_serve_runs_deployments_without_a_worker(deployed, sim, tmp_path_factory):
    """``deployments.serve`` alone: workers stopped and the deployed deployments removed
    first (serve is the alternative to deploy + workers, not an addition to them)."""
    for name in ("worker-1", "worker-2"):
        deployed.stop(name)
    for d in _api("POST", f"{deployed.url}/deployments/filter", json={}).json():
        _api("DELETE", f"{deployed.url}/deployments/{d['id']}").raise_for_status()
    serve = deployed.start("serve", sys.executable, "-m", "prefect_hailuo.deployments.serve")
    out = tmp_path_factory.mktemp("serve-out")
    deadline = time.monotonic() + 120
    while "being served" not in deployed.log("serve"):
        assert serve.poll() is None, deployed.log("serve")[-3000:]
        assert time.monotonic() < deadline, deployed.log("serve")[-3000:]
        time.sleep(0.5)
    before = sim.submits()
    run_id = _trigger(deployed, "hailuo-text-to-video/text-to-video", {
        "prompt": "[Pedestal up] a lighthouse keeper climbing stairs, lamp light",
        "options": {"resolution": "512p", "duration": 5},
        "destination": {"output_dir": str(out)}})
    run = _wait_final(deployed, [run_id], timeout=180)[run_id]
    assert run["state"]["type"] == "COMPLETED", deployed.log("serve")[-3000:]
    assert sim.submits() == before + 1
    [video] = out.rglob("*.mp4")  # named after the clip, in the default group's folder
    assert video.parent == out / "clips" and video.name.startswith("a-lighthouse-keeper")
