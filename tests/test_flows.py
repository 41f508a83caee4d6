"""The Prefect layer end to end: one Prefect test server for the session, the simulator over
real HTTP, S3 on moto's server over real HTTP. Tests run in file order; the last one scans
everything produced for the API key."""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlparse

import httpx
import numpy as np
import pytest
from PIL import Image, ImageFilter

from hailuo import media
from hailuo.errors import CostLimitExceededError
from hailuo.simulator import run_simulator
from tests.conftest import kill_python_when, s3_client, save_credentials

pytestmark = pytest.mark.prefect

KEY = "hk-DISTINCTIVE-5ecr3t-9f8e7d6c5b4a3921"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sim():
    with run_simulator(render_seconds=0.4, accepted_keys=[KEY]) as handle:
        yield handle


@pytest.fixture(scope="module")
def creds(prefect_harness, sim) -> str:
    return save_credentials("hailuo-test", sim.base_url, KEY)


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("out")


def opts(**kw):
    from prefect_hailuo.flows import GenerationOptions

    return GenerationOptions(resolution="512p", duration=5, **kw)


def dest(out_dir: Path, bucket: str | None = None):
    from prefect_hailuo.flows import Destination

    return Destination(output_dir=str(out_dir), s3_bucket_block=bucket)


def _object(endpoint: str, uri: str) -> bytes:
    parsed = urlparse(uri)
    return s3_client(endpoint).get_object(Bucket=parsed.netloc,
                                          Key=parsed.path.lstrip("/"))["Body"].read()


def _artifacts(flow_run_id) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        return client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))


def _image(path: Path, size=(800, 600), color=(30, 120, 200)) -> Path:
    """A smooth, photo-like picture (hard synthetic edges would dominate any PSNR)."""
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.array(color, np.float32)
    wave = (np.sin(x / 37.0) + np.cos(y / 23.0))[..., None] * 40
    arr = np.clip(base + wave + (x / w * 60)[..., None], 0, 255).astype(np.uint8)
    Image.fromarray(arr).filter(ImageFilter.GaussianBlur(2)).save(path)
    return path


def _reference(path: Path, size: tuple[int, int]) -> Image.Image:
    from hailuo.simulator.render import fit_cover

    return fit_cover(Image.open(path).convert("RGB"), size)


PROMPT = "[Pan left] A lighthouse on a cliff at dusk, waves crashing, warm light, cinematic"


def test_text_to_video_lands_in_s3_with_manifest_and_artifacts(
        sim, creds, s3_bucket_block, s3_endpoint, out_dir):
    from prefect_hailuo.flows import text_to_video

    before = sim.submits()
    state = text_to_video(prompt=PROMPT, options=opts(), destination=dest(out_dir,
                          s3_bucket_block), credentials_block=creds, return_state=True)
    result = state.result()
    assert sim.submits() == before + 1
    body = _object(s3_endpoint, result.s3_uri)
    assert hashlib.sha256(body).hexdigest() == result.sha256
    local = out_dir / "from-s3.mp4"
    local.write_bytes(body)
    info = media.probe(local)
    assert (info.width, info.height) == (912, 512) and abs(info.duration - 5) < 0.1
    manifest = json.loads(_object(s3_endpoint, result.manifest_uri))
    assert manifest["task_id"] == result.task_id and manifest["sha256"] == result.sha256
    assert manifest["provider"] == "apimart"
    assert Decimal(manifest["cost_estimate_usd"]) == Decimal("0.20")  # 5 s x $0.04
    assert result.presigned_url.startswith(s3_endpoint)
    assert httpx.get(result.presigned_url).content == body
    kinds = sorted(str(a.type) for a in _artifacts(state.state_details.flow_run_id))
    assert {"table", "markdown", "progress", "image"} <= set(kinds), kinds


def test_rerun_of_finished_flow_submits_nothing_and_returns_the_same(
        sim, creds, s3_bucket_block, out_dir):
    from prefect_hailuo.flows import text_to_video

    first = text_to_video(prompt=PROMPT, options=opts(), credentials_block=creds,
                          destination=dest(out_dir, s3_bucket_block))
    before = sim.submits()
    again = text_to_video(prompt=PROMPT, options=opts(), credentials_block=creds,
                          destination=dest(out_dir, s3_bucket_block))
    assert sim.submits() == before
    assert (again.task_id, again.sha256, again.s3_uri) == (first.task_id, first.sha256,
                                                          first.s3_uri)


def test_two_takes_make_two_submits(sim, creds, out_dir):
    from prefect_hailuo.flows import text_to_video

    before = sim.submits()
    one = text_to_video(prompt="[Zoom in] a red kite over a beach", options=opts(take=1),
                        credentials_block=creds, destination=dest(out_dir))
    two = text_to_video(prompt="[Zoom in] a red kite over a beach", options=opts(take=2),
                        credentials_block=creds, destination=dest(out_dir))
    assert sim.submits() == before + 2 and one.task_id != two.task_id


def test_cost_guard_refuses_before_any_request(sim, creds, out_dir):
    from prefect_hailuo.flows import text_to_video

    before = len(sim.requests())
    with pytest.raises(CostLimitExceededError, match="max_cost_usd"):
        text_to_video(prompt="a very expensive sunset", options=opts(max_cost_usd=0.05),
                      credentials_block=creds, destination=dest(out_dir))
    assert len(sim.requests()) == before


def test_invalid_request_rejected_locally_naming_the_field(sim, creds, out_dir):
    from prefect_hailuo.flows import GenerationOptions, text_to_video

    before = len(sim.requests())
    with pytest.raises(Exception, match="duration"):
        text_to_video(prompt="a sunset", credentials_block=creds, destination=dest(out_dir),
                      options=GenerationOptions(resolution="1080p", duration=10))
    assert len(sim.requests()) == before


def test_image_to_video_from_s3_uri_and_first_last_frame(
        sim, creds, s3_bucket_block, s3_endpoint, out_dir, tmp_path):
    from prefect_hailuo.flows import first_last_frame, image_to_video

    first = _image(tmp_path / "first.png")
    s3_client(s3_endpoint).upload_file(str(first), "hailuo-test", "inputs/first.png")
    i2v = image_to_video(first_frame_image="s3://hailuo-test/inputs/first.png",
                         prompt="[Push in] the tiles shimmer", options=opts(),
                         credentials_block=creds, destination=dest(out_dir, s3_bucket_block))
    frame0 = media.first_frame(Path(i2v.local_path))
    assert frame0.size == (682, 512)  # follows the 4:3 input
    assert media.psnr(frame0, _reference(first, frame0.size)) >= 30
    last = _image(tmp_path / "last.png", color=(200, 40, 60))
    fl = first_last_frame(first_frame_image=str(first), last_frame_image=str(last),
                          prompt="the tiles turn red", options=opts(),
                          credentials_block=creds, destination=dest(out_dir, s3_bucket_block))
    end = media.last_frame(Path(fl.local_path))
    assert media.psnr(end, _reference(last, end.size)) >= 30
    assert fl.s3_uri and _object(s3_endpoint, fl.manifest_uri)


def test_batch_generates_every_clip(sim, creds, out_dir):
    from prefect_hailuo.flows import ClipSpec, generate_batch

    before = sim.submits()
    result = generate_batch(
        clips=[ClipSpec(prompt=f"[Truck right] scene number {i}, soft light") for i in range(3)],
        options=opts(), credentials_block=creds, destination=dest(out_dir), max_concurrency=3)
    assert len(result.clips) == 3 and sim.submits() == before + 3
    assert len({c.task_id for c in result.clips}) == 3
    for clip in result.clips:
        assert media.sha256_file(Path(clip.local_path)) == clip.sha256
    assert result.total_cost_usd == pytest.approx(0.6)


def test_killed_flow_resumes_the_same_task_id(sim, creds, out_dir):
    """SIGKILL a flow process while it waits; the re-run waits for the same task."""

    from prefect_hailuo.flows import text_to_video

    prompt = "[Tilt up] a crane lifts a container at a night harbour, sodium lights"
    sim.configure(render_seconds=120)
    before = sim.submits()
    state: dict[str, str] = {}

    def polling() -> bool:  # submitted, and the flow is waiting (its submit is persisted)
        submits = [r for r in sim.requests(kind="submit") if r.get("task_id")]
        if sim.submits() == before or not submits:
            return False
        state["task_id"] = submits[-1]["task_id"]
        return any(r.get("task_id") == state["task_id"] for r in sim.requests(kind="status"))

    kill_python_when(f"""
        from prefect_hailuo.flows import text_to_video, Destination, GenerationOptions
        text_to_video(prompt={prompt!r}, credentials_block={creds!r},
                      options=GenerationOptions(resolution="512p", duration=5),
                      destination=Destination(output_dir={str(out_dir)!r}))
    """, polling)
    task_id = state["task_id"]
    assert sim.task(task_id)["status"] != "completed"
    sim.configure(render_seconds=0.4)
    httpx.post(f"{sim.base_url}/_sim/tasks/{task_id}/complete-now").raise_for_status()
    result = text_to_video(prompt=prompt, credentials_block=creds, options=opts(),
                           destination=dest(out_dir))
    assert result.task_id == task_id
    assert sim.submits() == before + 1


def test_api_key_appears_nowhere(sim, creds, s3_bucket_block, s3_endpoint, out_dir, prefect_home,
                                capfd):
    """Runs last: everything the flows above produced is scanned for the key."""
    import prefect.settings
    from prefect.client.orchestration import get_client

    from prefect_hailuo.flows import text_to_video

    # a failing run too, so exception texts and failed states are covered
    sim.configure(fail_rate=1.0, fail_codes=[1026])
    try:
        with pytest.raises(Exception) as info:
            text_to_video(prompt="a rejected prompt, for the record", options=opts(),
                          credentials_block=creds, destination=dest(out_dir))
    finally:
        sim.configure(fail_rate=0.0)
    assert KEY not in str(info.value) and KEY not in repr(info.value)
    needle = KEY.encode()
    hits = []
    db_url = prefect.settings.PREFECT_SERVER_DATABASE_CONNECTION_URL.value()
    roots = [prefect_home, out_dir]
    if db_url and "sqlite" in db_url:
        roots.append(Path(db_url.split("///", 1)[1]).parent)
    scanned: list[Path] = []
    for root in roots:
        for path in Path(root).rglob("*"):
            if path.is_file():
                scanned.append(path)
                data = path.read_bytes()
                if needle in data:
                    hits.append(str(path))
    # Prefect encrypts block documents (the Secret) at rest, so even the database is clean.
    assert not hits, hits
    with get_client(sync_client=True) as client:
        for art in client.read_artifacts():
            assert KEY not in json.dumps(art.model_dump(mode="json"), default=str)
        for run in client.read_flow_runs():
            assert KEY not in json.dumps(run.model_dump(mode="json"), default=str)
        logs = client.read_logs()
        assert logs and all(KEY not in (log.message or "") for log in logs)
    s3 = s3_client(s3_endpoint)
    for obj in s3.list_objects_v2(Bucket="hailuo-test").get("Contents", []):
        assert needle not in s3.get_object(Bucket="hailuo-test", Key=obj["Key"])["Body"].read()
    assert not any(needle in r.get("raw", "").encode() for r in sim.requests())
    out, err = capfd.readouterr()
    assert KEY not in out and KEY not in err
    assert any(p.suffix == ".db" for p in scanned), "the Prefect database was not scanned"
    assert any(p.suffix == ".mp4" for p in scanned) and len(scanned) > 10
