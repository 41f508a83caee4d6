"""Long videos: the storyboard format, the continuity flow (chained clips, resume after a
failed clip) and the storyboard flow (clips between keyframes generated in parallel),
against the simulator over HTTP, under the session's Prefect test server, S3 on moto."""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlparse

import av
import httpx
import numpy as np
import pytest
import yaml
from PIL import Image, ImageFilter

from hailuo import media
from hailuo.files import short_task_id
from hailuo.simulator import run_simulator
from hailuo.simulator.faults import MINIMAX_MESSAGES
from hailuo.storyboard import Storyboard, load_storyboard
from tests.conftest import s3_client, save_credentials

ROOT = Path(__file__).resolve().parents[1]
KEY = "hk-continuity-test-key-0123456789abcdef"
STYLE = "soft evening light, cinematic"


# --------------------------------------------------------------------------- the format


def test_example_storyboard_loads_and_plans_a_chain():
    board = load_storyboard(ROOT / "examples" / "storyboard.yaml")
    assert board.title == "Lighthouse at dusk" and len(board.segments) == 4
    shots = board.shots(chain_all=True)
    assert [s.chained for s in shots] == [False, True, True, True]
    assert shots[0].prompt.startswith("[Push in] A lone lighthouse")
    assert all(s.prompt.endswith(board.style_suffix) for s in shots)
    assert shots[3].duration == 10 and shots[1].name == "rise"


def test_keyframes_and_prompts_mix_into_parallel_chains(tmp_path):
    from prefect_hailuo.flows.continuity import chains

    data = {"title": "Mixed Board!", "first_image": "k0.png", "style_suffix": STYLE,
            "segments": [{"prompt": "one", "keyframe": "k1.png"}, {"prompt": "two"},
                         {"prompt": "three", "keyframe": "k3.png", "camera": "Pan left"},
                         {"prompt": "four"}]}
    path = tmp_path / "board.json"
    path.write_text(json.dumps(data))
    board = load_storyboard(path)
    assert board.first_image == str(tmp_path / "k0.png")  # relative to the file
    assert board.keyframes == [str(tmp_path / f"k{i}.png") if i in (0, 1, 3) else None
                               for i in range(5)]
    shots = board.shots(chain_all=False)
    assert [s.first_frame_source for s in shots] == [
        "first_image", "keyframe of segment 1", "last frame of clip 2", "keyframe of segment 3"]
    assert [s.last_frame_image is not None for s in shots] == [True, False, True, False]
    assert shots[2].prompt == f"[Pan left] Three, {STYLE}"
    assert shots[0].name == "mixed-board-01"
    assert [[s.index for s in c] for c in chains(shots)] == [[1], [2, 3], [4]]
    assert [[s.index for s in c] for c in chains(board.shots(chain_all=True))] == [[1, 2, 3, 4]]


def test_storyboard_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="did you mean 'Pan left'"):
        Storyboard(segments=[{"prompt": "x", "camera": "pan-left"}])
    with pytest.raises(ValueError, match="segments"):
        Storyboard(segments=[])
    with pytest.raises(ValueError, match="Extra inputs"):
        Storyboard(segments=[{"prompt": "x", "keyframes": "typo.png"}])
    bad = tmp_path / "board.txt"
    bad.write_text("segments: []")
    with pytest.raises(ValueError, match=r"\.yaml"):
        load_storyboard(bad)


# --------------------------------------------------------------------------- the flows


@pytest.fixture(scope="module")
def sim():
    with run_simulator(render_seconds=0.4, accepted_keys=[KEY]) as handle:
        yield handle


@pytest.fixture(scope="module")
def creds(prefect_harness, sim) -> str:
    return save_credentials("continuity-test", sim.base_url, KEY)


def _options():
    from prefect_hailuo.flows import GenerationOptions

    return GenerationOptions(resolution="512p", duration=5)


SEGMENTS = [
    {"prompt": "a fishing boat leaves a small harbour at dawn", "camera": "Truck left"},
    {"prompt": "the boat passes the lighthouse at the harbour mouth", "camera": "Pan right"},
    {"prompt": "the storm breaks over the open sea", "camera": "Zoom in"},
    {"prompt": "waves wash over the deck as the crew holds on", "camera": "Shake"},
    {"prompt": "the sky clears and the boat turns for home", "camera": "Pull out"},
]
REJECTED = "storm breaks"  # the simulator rejects this clip's prompt (code 1026) in run 1


def _new_tasks(sim, known: set[str]) -> list[dict]:
    return sorted((t for t in sim.tasks() if t["id"] not in known),
                  key=lambda t: t["created_at"])


@pytest.fixture(scope="module")
def continuity_runs(sim, creds, tmp_path_factory, monkeypatch_module):
    """Run 1 fails at clip 3 (content rejected); run 2, unchanged, finishes the film."""
    from prefect_hailuo.flows.continuity import multi_clip_continuity

    out = tmp_path_factory.mktemp("continuity")
    board = Storyboard(title="Harbour storm", style_suffix=STYLE, segments=SEGMENTS)
    destination = _destination(out)
    known = {t["id"] for t in sim.tasks()}
    before = sim.submits()
    create = sim.simulator.create_task

    def reject_clip_3(sub, **kw):
        task = create(sub, **kw)
        if REJECTED in sub.prompt:
            with sim.simulator.state.lock:
                task.fail_code, task.fail_message = 1026, MINIMAX_MESSAGES[1026]
        return task

    monkeypatch_module.setattr(sim.simulator, "create_task", reject_clip_3)
    with pytest.raises(Exception, match="clip 3 of 5 failed") as failure:
        multi_clip_continuity(storyboard=board, options=_options(), destination=destination,
                              credentials_block=creds)
    monkeypatch_module.undo()
    first = _new_tasks(sim, known)
    first_submits = sim.submits() - before
    pngs = {t["id"]: next((out / board.slug).glob(f"*-{short_task_id(t['id'])}.last.png"))
            for t in first[:2]}  # beside each clip: <film>/<segment>-<task id short>
    png_sha = {k: media.sha256_file(p) for k, p in pngs.items()}
    for path in pngs.values():  # the re-run must rebuild them, byte for byte
        path.unlink()
    known |= {t["id"] for t in first}
    before = sim.submits()
    film = multi_clip_continuity(storyboard=board, options=_options(), destination=destination,
                                 credentials_block=creds)
    return {"failure": str(failure.value), "first": first, "first_submits": first_submits,
            "second": _new_tasks(sim, known), "second_submits": sim.submits() - before,
            "png_sha": png_sha, "pngs": pngs, "film": film}


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def _destination(out: Path, bucket: str | None = None):
    from prefect_hailuo.flows import Destination

    return Destination(output_dir=str(out), s3_bucket_block=bucket, s3_prefix="films-test")


@pytest.mark.prefect
def test_failed_clip_3_of_5_then_rerun_pays_only_for_the_rest(continuity_runs):
    runs = continuity_runs
    assert "Done and kept for a re-run: clips 1, 2" in runs["failure"]
    first, second = runs["first"], runs["second"]
    assert runs["first_submits"] == 3 == len(first)
    assert first[2]["fail_code"] == 1026 and first[0]["fail_code"] is None
    # The re-run: exactly one new submit for each of clips 3, 4, 5, none for clips 1-2.
    assert runs["second_submits"] == 3 == len(second)
    for task, segment in zip(second, SEGMENTS[2:], strict=True):
        assert segment["prompt"] in task["prompt"].lower()
    film = runs["film"]
    assert [c.task_id for c in film.clips[:2]] == [t["id"] for t in first[:2]]
    assert [c.task_id for c in film.clips[2:]] == [t["id"] for t in second]
    # Clip 3's unchanged request came back from the cache with the failed task, which was
    # resubmitted (its idempotency key names the failed task) ...
    assert second[0]["idempotency_key"].endswith(f"-{first[2]['id']}")
    # ... and the last frames the chain is built on were re-extracted byte for byte.
    assert {k: media.sha256_file(p) for k, p in runs["pngs"].items()} == runs["png_sha"]


@pytest.mark.prefect
def test_each_clip_starts_on_the_exact_last_frame_of_the_one_before(continuity_runs):
    clips = continuity_runs["film"].clips
    for k in range(len(clips) - 1):
        previous, following = Path(clips[k].local_path), Path(clips[k + 1].local_path)
        png = previous.with_suffix(".last.png")
        manifest = json.loads(Path(clips[k + 1].manifest_path).read_text())
        assert manifest["mode"] == "image-to-video"
        assert manifest["request"]["first_frame_image"] == f"sha256:{media.sha256_file(png)}"
        with Image.open(png) as img:  # lossless, full resolution
            assert np.array_equal(np.asarray(img.convert("RGB")),
                                  np.asarray(media.last_frame(previous)))
        assert media.psnr(media.first_frame(following), media.last_frame(previous)) >= 35
        assert (clips[k].width, clips[k].height) == (clips[k + 1].width, clips[k + 1].height)


@pytest.mark.prefect
def test_continuity_film_is_remuxed_with_one_manifest(continuity_runs):
    film = continuity_runs["film"]
    clips = film.clips
    assert film.mode == "continuity" and film.stitch_method == "remux"
    frames = [media.probe(c.local_path).frames for c in clips]
    assert film.frames == sum(frames) - (len(clips) - 1)
    with av.open(film.video_path) as container:
        assert sum(1 for _ in container.decode(video=0)) == film.frames
    assert media.sha256_file(film.video_path) == film.sha256
    manifest = json.loads(Path(film.manifest_path).read_text())
    assert manifest["kind"] == "hailuo-film" and manifest["film_id"] == film.film_id
    assert [s["task_id"] for s in manifest["segments"]] == [c.task_id for c in clips]
    assert [s["sha256"] for s in manifest["segments"]] == [c.sha256 for c in clips]
    assert manifest["segments"][1]["first_frame"]["source"] == "last frame of clip 1"
    assert manifest["segments"][0]["first_frame"]["source"] is None  # text-to-video
    assert Decimal(manifest["total_cost_usd"]) == Decimal("1.00")  # 5 x 5 s x $0.04
    assert film.total_cost_usd == pytest.approx(1.0)
    assert manifest["stitch"]["dropped_boundary_frames"] == 4
    assert manifest["video"]["sha256"] == film.sha256
    for still in (film.poster_path, film.contact_sheet_path):
        with Image.open(still) as img:
            assert img.format == "JPEG"


def _keyframe(path: Path, color: tuple[int, int, int], phase: float) -> Path:
    """A smooth, photo-like 16:9 picture (hard synthetic edges would dominate PSNR)."""
    w, h = 1280, 720
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    wave = (np.sin(x / 41.0 + phase) + np.cos(y / 29.0 - phase))[..., None] * 40
    arr = np.clip(np.array(color, np.float32) + wave + (x / w * 50)[..., None], 0, 255)
    Image.fromarray(arr.astype(np.uint8)).filter(ImageFilter.GaussianBlur(2)).save(path)
    return path


def _tone(path: Path, seconds: float, rate: int = 48000) -> Path:
    n = int(seconds * rate)
    wave = (0.25 * np.sin(2 * np.pi * 330 * np.arange(n) / rate)).astype(np.float32)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=rate, layout="mono")
        for start in range(0, n, 1024):
            frame = av.AudioFrame.from_ndarray(wave[None, start:start + 1024].copy(),
                                               format="fltp", layout="mono")
            frame.sample_rate, frame.pts = rate, start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def _s3_object(endpoint: str, uri: str) -> bytes:
    parsed = urlparse(uri)
    return s3_client(endpoint).get_object(Bucket=parsed.netloc,
                                          Key=parsed.path.lstrip("/"))["Body"].read()


@pytest.mark.prefect
def test_storyboard_generates_clips_in_parallel_and_publishes_the_film(
        sim, creds, s3_bucket_block, s3_endpoint, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from prefect_hailuo.flows.storyboard import storyboard

    colors = [(40, 90, 160), (160, 70, 40), (60, 150, 80), (150, 140, 40)]
    (tmp_path / "keys").mkdir()
    for i, color in enumerate(colors):
        _keyframe(tmp_path / "keys" / f"k{i}.png", color, phase=i)
    _tone(tmp_path / "theme.m4a", 30.0)  # longer than the film: trimmed
    board_file = tmp_path / "board.yaml"
    board_file.write_text(yaml.safe_dump({
        "title": "Four colours", "style_suffix": STYLE, "first_image": "keys/k0.png",
        "audio": "theme.m4a", "resolution": "512p", "duration": 5,
        "segments": [{"prompt": f"the colours drift into shade {i}", "keyframe": f"keys/k{i}.png"}
                     for i in (1, 2, 3)]}))
    known = {t["id"] for t in sim.tasks()}
    before = sim.submits()
    sim.configure(render_seconds=4.0)  # long enough that sequential runs could not overlap
    try:
        state = storyboard(storyboard=str(board_file), credentials_block=creds,
                           destination=_destination(tmp_path / "out", s3_bucket_block),
                           max_concurrency=4, return_state=True)
        film = state.result()
    finally:
        sim.configure(render_seconds=0.4)
    tasks = _new_tasks(sim, known)
    assert sim.submits() - before == 3 == len(tasks)
    assert {t["mode"] for t in tasks} == {"first-last-frame"}
    # Concurrent, not one after another: every task was created before any finished.
    # clips run side by side: at least two were rendering at once (sequential runs never
    # overlap; a loaded machine may stagger the submits, so not all three need to)
    spans = sorted((t["created_at"], t["completed_at"]) for t in tasks)
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:], strict=False)), spans
    clips = film.clips
    for k in range(2):  # clip k ends on keyframe k+1, on which clip k+1 starts
        previous, following = Path(clips[k].local_path), Path(clips[k + 1].local_path)
        assert media.psnr(media.first_frame(following), media.last_frame(previous)) >= 35
    assert film.mode == "storyboard" and film.stitch_method == "remux"
    info = media.probe(film.video_path)
    assert info.has_audio and info.frames == 3 * 5 * 24 - 2
    with av.open(film.video_path) as container:
        audio = container.streams.audio[0]
        assert float(audio.duration * audio.time_base) == pytest.approx(info.duration, abs=0.05)
    body = _s3_object(s3_endpoint, film.s3_uri)
    assert hashlib.sha256(body).hexdigest() == film.sha256
    manifest = json.loads(_s3_object(s3_endpoint, film.manifest_uri))
    assert manifest["mode"] == "storyboard" and manifest["stitch"]["audio"]["sha256"]
    assert [s["task_id"] for s in manifest["segments"]] == [c.task_id for c in clips]
    assert [s["first_frame"]["source"] for s in manifest["segments"]] == [
        "first_image", "keyframe of segment 1", "keyframe of segment 2"]
    assert all(s["s3_uri"] for s in manifest["segments"])  # every clip went to S3 too
    assert Decimal(manifest["total_cost_usd"]) == Decimal("0.60")
    for url in (film.poster_url, film.contact_sheet_url):
        answer = httpx.get(url)
        assert answer.status_code == 200 and answer.content[:3] == b"\xff\xd8\xff"  # JPEG
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))
    kinds = [a.type for a in artifacts]
    assert kinds.count("image") >= 2 and "markdown" in kinds and "table" in kinds
