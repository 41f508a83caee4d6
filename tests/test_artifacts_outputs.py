"""What a person finds after a run (issue 17, items 1-4): files named after the clip in a
folder per batch or film, keyed artifacts with a preview the UI shows without S3, links
that open the file they name, Prefect events the server receives, and credentials chosen
as a block.

The flows run under the session's Prefect test server against the simulator over HTTP,
with S3 on moto's server. Tests run in file order (the events test reads what the runs
before it emitted)."""

from __future__ import annotations

import base64
import re
import socket
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from hailuo import events as progress_events
from hailuo.files import clip_path, short_task_id, slug
from hailuo.simulator import run_simulator
from tests.conftest import save_credentials

KEY = "hk-artifacts-test-7c6b5a49382716"
PROMPT = "[Pan left] A barn owl glides over a frosty meadow at dawn, mist, soft light"
HOST = socket.gethostname()
DATA_JPEG = re.compile(r"\]\((data:image/jpeg;base64,([A-Za-z0-9+/=]+))\)")

# -- pure checks -----------------------------------------------------------------------
def test_clip_files_are_named_after_the_clip_and_sanitised(tmp_path):
    task = "task_01K8SGYNNNVBQTXNR4MM964S7K"
    assert short_task_id(task) == "mm964s7k" and short_task_id("106916112212032") == "12212032"
    assert clip_path(tmp_path, None, "Owl", task) == tmp_path / "clips" / "owl-mm964s7k.mp4"
    assert clip_path(tmp_path, "Night Birds", slug(PROMPT), task) == (
        tmp_path / "night-birds" / "a-barn-owl-glides-over-a-frosty-meadow-mm964s7k.mp4")
    # path characters, dots, unicode, emptiness: never a way out of the folder
    for group, label in [("../..", "../../etc/passwd"), ("/abs", "a/b\\c"), ("", ""),
                         ("Ünïcode ☃", "..."), ("x" * 300, "y" * 300)]:
        path = clip_path(tmp_path, group, label, task)
        assert path.resolve().is_relative_to(tmp_path.resolve())
        assert path.parent.parent == tmp_path
        assert re.fullmatch(r"[a-z0-9-]+-mm964s7k\.mp4", path.name), path.name
        assert re.fullmatch(r"[a-z0-9-]+", path.parent.name), path.parent.name
    assert slug("[Push in] ") == "clip" and len(slug("word " * 50)) <= 40
    from hailuo.errors import UnsafeIdError

    with pytest.raises(UnsafeIdError):
        clip_path(tmp_path, None, "owl", "../task")


def test_preview_is_a_small_jpeg_data_url(tmp_path):
    from prefect_hailuo.flows.publish import PREVIEW_MAX_BYTES, preview_data_url

    noisy = tmp_path / "noisy.png"  # the worst case for JPEG: noise at full HD
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (1080, 1920, 3), dtype=np.uint8)).save(noisy)
    url = preview_data_url(noisy)
    assert url and url.startswith("data:image/jpeg;base64,")
    raw = base64.b64decode(url.split(",", 1)[1])
    assert raw[:3] == b"\xff\xd8\xff" and len(raw) <= PREVIEW_MAX_BYTES == 40_000
    assert preview_data_url(tmp_path / "missing.jpg") is None


def test_prefect_ui_renders_data_image_urls_in_markdown():
    """Why an embedded ``data:`` preview shows: the installed UIs let it through. The V2
    UI (Prefect 3.9's default) passes ``data:image/`` on ``img src`` past react-markdown's
    ``urlTransform`` and adds ``data`` to rehype-sanitize's ``src`` protocols; the V1 UI
    renders a markdown image token as ``img`` with its ``src`` unchanged."""
    import prefect

    v2 = Path(prefect.__file__).parent / "server" / "ui-v2" / "assets"
    v1 = Path(prefect.__file__).parent / "server" / "ui" / "assets"
    if not v2.is_dir() or not v1.is_dir():
        pytest.skip("this Prefect install ships no UI bundles")
    v2_text = "".join(p.read_text(errors="ignore") for p in v2.glob("*markdown*.js"))
    assert "/^data:image\\//" in v2_text, "V2 UI: no data:image allowance in urlTransform"
    assert re.search(r"protocols:\{.{0,80}src:\[\.\.\..{0,80}?`data`\]", v2_text), (
        "V2 UI: rehype-sanitize drops data: URLs")
    v1_text = "".join(p.read_text(errors="ignore") for p in v1.glob("index-*.js"))
    assert re.search(r"Wo\(`img`,\{src:t,alt:n", v1_text) or "`img`,{src:" in v1_text


def test_artifact_keys_are_what_prefect_accepts():
    from prefect_hailuo.flows.publish import artifact_key

    assert artifact_key("clip", None, "Owl At Night!") == "hailuo-clip-owl-at-night"
    assert artifact_key("clip", "Night Birds", "clip-001") == "hailuo-clip-night-birds-clip-001"
    assert artifact_key("film", "Lighthouse at dusk") == "hailuo-film-lighthouse-at-dusk"
    assert re.fullmatch(r"[a-z0-9-]+", artifact_key("clip", "../Ü/..", "|x|" * 99))


# -- flows -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sim():
    with run_simulator(render_seconds=0.3, accepted_keys=[KEY]) as handle:
        yield handle


@pytest.fixture(scope="module")
def creds(prefect_harness, sim) -> str:
    return save_credentials("artifacts-test", sim.base_url, KEY)


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("named-out")


@pytest.fixture(scope="module")
def seen() -> dict:
    """Task ids and run ids the tests below produced, for the events test at the end."""
    return {"completed": [], "failed": [], "film": []}


def _opts(**kw):
    from prefect_hailuo.flows import GenerationOptions

    return GenerationOptions(resolution="512p", duration=5, **kw)


def _dest(out: Path, bucket: str | None = None):
    from prefect_hailuo.flows import Destination

    return Destination(output_dir=str(out), s3_bucket_block=bucket)


def _artifacts(**filters) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )

    parts = {}
    if "flow_run_id" in filters:
        parts["flow_run_id"] = ArtifactFilterFlowRunId(any_=[filters["flow_run_id"]])
    if "key" in filters:
        parts["key"] = ArtifactFilterKey(any_=[filters["key"]])
    with get_client(sync_client=True) as client:
        return client.read_artifacts(artifact_filter=ArtifactFilter(**parts))


def _preview_bytes(markdown: str) -> bytes:
    match = DATA_JPEG.search(markdown)
    assert match, markdown[:500]
    return base64.b64decode(match.group(2))


@pytest.mark.prefect
def test_clip_named_in_its_folder_keyed_artifact_with_preview_and_rerun_reuses_it(
        sim, creds, out, seen):
    from prefect_hailuo.flows import text_to_video

    state = text_to_video(prompt=PROMPT, options=_opts(), destination=_dest(out),
                          credentials_block=creds, return_state=True)
    clip = state.result()
    video = Path(clip.local_path)
    assert video == clip_path(out, None, slug(PROMPT), clip.task_id)
    assert video.parent == out / "clips"
    assert video.name == f"a-barn-owl-glides-over-a-frosty-meadow-{short_task_id(clip.task_id)}.mp4"
    stem = video.name[:-4]
    assert Path(clip.manifest_path) == video.with_name(f"{stem}.manifest.json")
    assert Path(clip.thumbnail_path) == video.with_name(f"{stem}.thumb.jpg")
    assert clip.host == HOST and clip.label == slug(PROMPT)

    key = "hailuo-clip-a-barn-owl-glides-over-a-frosty-meadow"
    [art] = [a for a in _artifacts(flow_run_id=state.state_details.flow_run_id)
             if a.key == key]
    assert art.type == "markdown"
    preview = _preview_bytes(art.data)
    assert preview[:3] == b"\xff\xd8\xff" and len(preview) <= 40_000
    assert video.name in art.data and HOST in art.data and str(video.resolve()) in art.data
    assert "file://" not in art.data
    [table] = [a for a in _artifacts(flow_run_id=state.state_details.flow_run_id)
               if a.type == "table"]
    assert "file://" not in str(table.data)
    assert all(f'"{column}"' in table.data for column in
               ("clip", "status", "duration", "resolution", "cost", "file", "where"))
    seen["completed"].append(clip.task_id)

    # a re-run: same task, same path, the verified download reused, a second version
    got: list[progress_events.Event] = []
    mtime = video.stat().st_mtime_ns
    before = sim.submits()
    with progress_events.subscribe(got.append):
        again = text_to_video(prompt=PROMPT, options=_opts(), destination=_dest(out),
                              credentials_block=creds)
    assert sim.submits() == before and again.local_path == clip.local_path
    assert video.stat().st_mtime_ns == mtime
    downloaded = [e for e in got if e.kind == progress_events.DOWNLOADED]
    assert downloaded and all(e.get("reused") for e in downloaded)
    assert len(_artifacts(key=key)) == 2  # the key's history across runs


@pytest.mark.prefect
def test_a_renamed_clip_or_an_old_flat_download_is_reused_not_fetched(sim, creds, out):
    """An older version wrote ``<output_dir>/<task_id>.mp4``: a re-run finds it by its
    verification record and copies it to the new name (its link may have expired)."""
    import shutil

    from prefect_hailuo.flows import text_to_video

    prompt = "[Zoom in] an old lantern on a windowsill, rain outside"
    flat = out / "flat"
    first = text_to_video(prompt=prompt, options=_opts(), destination=_dest(flat),
                          credentials_block=creds)
    video = Path(first.local_path)
    legacy = flat / f"{first.task_id}.mp4"
    shutil.move(video, legacy)
    shutil.move(f"{video}.verified.json", f"{legacy}.verified.json")
    downloads = len(sim.requests("download"))
    again = text_to_video(prompt=prompt, options=_opts(), destination=_dest(flat),
                          credentials_block=creds)
    assert len(sim.requests("download")) == downloads  # copied, not fetched
    assert again.local_path == first.local_path and again.sha256 == first.sha256
    assert Path(again.local_path).is_file() and legacy.is_file()


@pytest.mark.prefect
def test_with_s3_links_are_presigned_and_open_the_file_they_name(
        sim, creds, out, s3_bucket_block, s3_endpoint, seen):
    from prefect_hailuo.flows import text_to_video

    state = text_to_video(prompt="[Push in] a red fox in deep snow, blue hour",
                          options=_opts(), destination=_dest(out / "s3", s3_bucket_block),
                          credentials_block=creds, return_state=True)
    clip = state.result()
    name = Path(clip.local_path).name
    arts = _artifacts(flow_run_id=state.state_details.flow_run_id)
    [card] = [a for a in arts if a.key == "hailuo-clip-a-red-fox-in-deep-snow-blue-hour"]
    assert f"[{name}]({clip.presigned_url})" in card.data
    assert f"]({clip.thumbnail_url})" in card.data and "file://" not in card.data
    [link] = [a for a in arts if a.key == f"{card.key}-link"]
    assert link.data == f"[{name}]({clip.presigned_url})"
    assert any(a.type == "image" and a.data == clip.thumbnail_url for a in arts)
    answer = httpx.get(clip.presigned_url)
    assert answer.status_code == 200 and len(answer.content) == clip.size
    assert f'filename="{name}"' in answer.headers.get("content-disposition", "")
    thumb = httpx.get(clip.thumbnail_url)
    assert thumb.status_code == 200 and thumb.content[:3] == b"\xff\xd8\xff"
    seen["completed"].append(clip.task_id)


@pytest.mark.prefect
def test_batch_folder_numbered_task_runs_and_readable_table(sim, creds, out, seen):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from prefect_hailuo.flows import ClipSpec, generate_batch

    state = generate_batch(
        clips=[ClipSpec(name="Owl / at night?", prompt="[Static shot] an owl on a branch"),
               ClipSpec(prompt="[Truck right] bats leave a cave at dusk"),
               ClipSpec(name="", prompt="[Zoom out] a moth circles a lamp")],
        options=_opts(), destination=_dest(out), credentials_block=creds,
        batch_name="Night Birds", return_state=True)
    result = state.result()
    folder = out / "night-birds"
    names = sorted(p.name.rsplit("-", 1)[0] for p in folder.glob("*.mp4"))
    assert names == ["clip-002", "clip-003", "owl-at-night"]
    for clip in result.clips:
        assert Path(clip.local_path).parent == folder
        assert Path(clip.manifest_path).parent == folder
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(
            id=FlowRunFilterId(any_=[state.state_details.flow_run_id])))
    clip_runs = sorted(r.name for r in runs if r.name.startswith("clip-"))
    assert clip_runs == ["clip-001", "clip-002", "clip-003"]
    [table] = _artifacts(key="hailuo-batch-night-birds")
    rows = __import__("json").loads(table.data)
    assert [r["clip"] for r in rows] == ["Owl / at night?", "clip-002", "clip-003"]
    assert {tuple(r) for r in rows} == {("clip", "status", "duration", "resolution", "cost",
                                         "file", "where")}
    assert all(r["status"] == "completed" and r["file"].endswith(".mp4") and
               r["where"].startswith(f"{HOST}:") for r in rows)
    assert _artifacts(key="hailuo-clip-night-birds-owl-at-night")
    seen["completed"] += [c.task_id for c in result.clips]


@pytest.mark.prefect
def test_a_film_has_a_keyed_artifact_with_its_poster(sim, creds, out, seen):
    from hailuo.storyboard import Storyboard
    from prefect_hailuo.flows.continuity import multi_clip_continuity

    board = Storyboard(title="Tide Pool", segments=[
        {"prompt": "a crab in a tide pool", "name": "crab"},
        {"prompt": "a wave floods the pool"}])
    state = multi_clip_continuity(storyboard=board, options=_opts(), destination=_dest(out),
                                  credentials_block=creds, return_state=True)
    film = state.result()
    assert [Path(c.local_path).parent for c in film.clips] == [out / "tide-pool"] * 2
    assert Path(film.clips[0].local_path).name.startswith("crab-")
    [art] = _artifacts(key="hailuo-film-tide-pool")
    assert len(_preview_bytes(art.data)) <= 40_000
    assert "video.mp4" in art.data and HOST in art.data and "file://" not in art.data
    assert _artifacts(key="hailuo-film-tide-pool-clips")
    seen["film"].append(("tide-pool", film.film_id))


@pytest.mark.prefect
def test_failures_emit_failed_events(sim, creds, out, seen):
    from hailuo.storyboard import Storyboard
    from prefect_hailuo.flows import text_to_video
    from prefect_hailuo.flows.continuity import multi_clip_continuity

    sim.configure(fail_rate=1.0, fail_codes=[1026])
    try:
        with pytest.raises(Exception) as failure:
            text_to_video(prompt="[Pan right] a refused clip, for the record",
                          options=_opts(), destination=_dest(out), credentials_block=creds)
        with pytest.raises(Exception, match="clip 1 of 1 failed"):
            multi_clip_continuity(storyboard=Storyboard(title="Doomed", segments=[
                {"prompt": "a refused film clip"}]), options=_opts(),
                destination=_dest(out), credentials_block=creds)
    finally:
        sim.configure(fail_rate=0.0)
    assert failure.value.task_id
    seen["failed"].append(failure.value.task_id)


def _events(name: str, timeout: float = 60) -> list:
    """The server's events of that name (persisted in batches: polled), every page."""
    import datetime

    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all()
    since = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            page = client.read_events(EventFilter(
                event=EventNameFilter(name=[name]),
                occurred=EventOccurredFilter(since=since)), limit=50)
            found = list(page.events)
            while page.next_page:
                page = client.read_events_page(str(page.next_page))
                found += page.events
            if found or time.monotonic() > deadline:
                return found
            time.sleep(1)


@pytest.mark.prefect
def test_the_server_received_clip_and_film_events(seen):
    completed = {e.resource.id: e for e in _events("hailuo.clip.completed")}
    for task_id in seen["completed"]:
        deadline = time.monotonic() + 30
        while f"hailuo.clip.{task_id}" not in completed and time.monotonic() < deadline:
            time.sleep(1)
            completed = {e.resource.id: e for e in _events("hailuo.clip.completed")}
        event = completed[f"hailuo.clip.{task_id}"]
        payload = event.payload
        assert payload["task_id"] == task_id and payload["cost_usd"] == pytest.approx(0.2)
        assert payload["uri"] and payload["host"] == HOST and payload["sha256"]
        assert {r.role for r in event.related} >= {"flow-run", "flow"}
        text = event.model_dump_json()
        assert KEY not in text and "X-Amz-Signature" not in text  # no key, no presigned URL
    failed = {e.resource.id: e for e in _events("hailuo.clip.failed")}
    for task_id in seen["failed"]:
        event = failed[f"hailuo.clip.{task_id}"]
        assert event.payload["error_type"] == "ContentRejectedError"
        assert KEY not in event.model_dump_json()
    [film] = [e for e in _events("hailuo.film.completed")
              if e.resource.id == "hailuo.film.tide-pool"]
    assert film.payload["film_id"] == seen["film"][0][1] and len(film.payload["task_ids"]) == 2
    assert film.payload["cost_usd"] == pytest.approx(0.4) and film.payload["uri"]
    deadline = time.monotonic() + 30  # other films' failures may be stored first
    while not [e for e in _events("hailuo.film.failed") if e.resource.id == "hailuo.film.doomed"]:
        assert time.monotonic() < deadline, "no hailuo.film.failed event for the doomed film"
        time.sleep(1)


# -- run-form semantics ------------------------------------------------------------------
@pytest.mark.prefect
def test_credentials_as_a_block_picked_saved_or_built_in_code(sim, creds, out):
    from prefect_hailuo.blocks import HailuoCredentials
    from prefect_hailuo.blocks.credentials import account_of, resolve_connection
    from prefect_hailuo.flows import text_to_video

    saved = HailuoCredentials.load(creds)
    by_block = resolve_connection(saved)
    by_name = resolve_connection(creds)
    assert by_block == by_name and by_block.credentials_block == creds
    # what the run form sends for a block picker, resolved the way a deployment run does
    ref = {"$ref": {"block_document_id": str(saved._block_document_id)}}
    params = text_to_video.validate_parameters({"prompt": "x", "credentials": ref})
    assert isinstance(params["credentials"], HailuoCredentials)
    assert resolve_connection(params["credentials"]) == by_name
    # a block built in code and never saved: used in process, its account from its key
    unsaved = HailuoCredentials(api_key=KEY, base_url=sim.base_url, api_key_secret_block=None)
    conn = resolve_connection(unsaved)
    assert conn.account == account_of(KEY) == by_name.account
    assert KEY not in conn.model_dump_json()
    before = sim.submits()
    clip = text_to_video(prompt="[Tilt up] a kite over a hill, picked block",
                         options=_opts(), destination=_dest(out), credentials=saved,
                         credentials_block="no-such-block")  # the picked block wins
    assert sim.submits() == before + 1  # this simulator, through the block: not the embedded one
    again = text_to_video(prompt="[Tilt up] a kite over a hill, picked block",
                          options=_opts(), destination=_dest(out), credentials=unsaved)
    assert again.task_id == clip.task_id  # same account: the submit cache answered


@pytest.mark.prefect
def test_prompt_and_elements_are_mutually_exclusive(sim, creds, out):
    from hailuo.errors import InvalidRequestError
    from prefect_hailuo.flows import text_to_video

    before = len(sim.requests())
    with pytest.raises(InvalidRequestError, match="prompt or elements, not both"):
        text_to_video(prompt="a prompt", elements={"subject": "a heron"},
                      credentials_block=creds, destination=_dest(out))
    with pytest.raises(InvalidRequestError, match="give a prompt or the prompt elements"):
        text_to_video(prompt="", elements={"subject": "", "camera": []},  # an empty form
                      credentials_block=creds, destination=_dest(out))
    assert len(sim.requests()) == before
    submits = sim.submits()
    clip = text_to_video(elements={"subject": "a heron", "action": "stands in a river",
                                   "camera": ["Pan left"]}, options=_opts(),
                         credentials_block="", credentials=None, destination=_dest(out))
    assert clip.prompt.startswith("[Pan left] A heron stands in a river")
    # an empty credentials_block is "not set": with HAILUO_SIMULATE=1 (this test session)
    # that is the embedded simulator, not this one
    assert clip.simulated and sim.submits() == submits
