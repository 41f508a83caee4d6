"""The Prefect asset tasks (issue 15): generate_image, synthesize_speech, compose_music.

One Prefect test server for the session, the simulator over real HTTP with a MiniMax
credentials block (key in a Secret block), S3 on moto. "Pays nothing" is proven by the
simulator's request log: ``paid_media_calls`` counts every call that produced something
billable.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from urllib.parse import urlparse

import pytest

from hailuo.errors import ConfigurationError
from hailuo.simulator import run_simulator
from hailuo.simulator.media_apis import MediaConfig, configure_media, paid_media_calls
from tests.conftest import s3_client, save_credentials

pytestmark = pytest.mark.prefect

KEY = "mk-ASSETS-s3cr3t-1f2e3d4c5b6a79801"
TEXT = "Night falls on the harbour. The last boat turns for home."


@pytest.fixture(scope="module")
def sim():
    with run_simulator(render_seconds=0.2, accepted_keys=[KEY]) as handle:
        yield handle


@pytest.fixture(autouse=True)
def fresh_knobs(sim):
    yield
    configure_media(sim, **MediaConfig().model_dump())


@pytest.fixture(scope="module")
def conn(prefect_harness, sim):
    from prefect_hailuo.blocks.credentials import resolve_connection

    save_credentials("hailuo-media", sim.base_url, KEY, provider="minimax")
    return resolve_connection("hailuo-media")


@pytest.fixture(scope="module")
def apimart_conn(prefect_harness, sim):
    from prefect_hailuo.blocks.credentials import resolve_connection

    save_credentials("hailuo-media-apimart", sim.base_url, KEY, provider="apimart")
    return resolve_connection("hailuo-media-apimart")


@pytest.fixture(scope="module")
def assets_flow():
    from prefect import flow

    from hailuo.imagegen import ImageRequest
    from hailuo.music import MusicRequest
    from hailuo.speech import SpeechRequest
    from prefect_hailuo.tasks.assets import compose_music, generate_image, synthesize_speech

    @flow(name="asset-tasks-test")
    def make(conn, out: str, bucket: str | None = None, text: str = TEXT):
        speech = synthesize_speech(SpeechRequest(text=text), conn, output_dir=out,
                                   name="narration-1", s3_bucket_block=bucket)
        music = compose_music(MusicRequest(prompt="a 6 second calm bed", instrumental=True),
                              conn, output_dir=out, name="bed", s3_bucket_block=bucket)
        image = generate_image(ImageRequest(prompt="a lighthouse at dusk", aspect_ratio="16:9"),
                               conn, output_dir=out, name="k0", s3_bucket_block=bucket)
        return speech, music, image

    return make


def paid_kinds(sim, since: int) -> list[str]:
    return [e["kind"] for e in sim.requests()[since:]
            if e["kind"] in ("speech", "music", "image", "image_submit")]


def test_assets_are_made_verified_and_described(sim, conn, assets_flow, tmp_path):
    before = paid_media_calls(sim)
    speech, music, image = assets_flow(conn, str(tmp_path))
    assert paid_media_calls(sim) == before + 3
    assert (speech.paid, music.paid, image.paid) == (True, True, True)
    assert speech.path == tmp_path / "narration-1.mp3" and speech.path.exists()
    assert 1500 < speech.audio_length_ms < 8000
    assert speech.subtitles[0].text == "Night falls on the harbour."
    assert all(0 <= s.start < s.end <= speech.duration for s in speech.subtitles)
    assert music.path.name == "bed.mp3" and music.audio_length_ms == 6000
    assert [(i.width, i.height) for i in image.images] == [(1280, 720)]
    manifest = json.loads(Path(speech.manifest_path).read_text())
    assert Path(speech.manifest_path).name == "narration-1.manifest.json"
    assert manifest["fingerprint"] == speech.fingerprint
    assert manifest["request"]["text"] == TEXT and manifest["paid_by_this_run"] is True
    assert manifest["result"]["audio_length_ms"] == speech.audio_length_ms
    assert manifest["result"]["subtitles"][0]["start"] == speech.subtitles[0].start
    assert json.loads(Path(music.manifest_path).read_text())["result"]["cost_usd"] == 0.15
    assert json.loads(Path(image.manifest_path).read_text())["result"]["images"][0][
        "width"] == 1280


def test_a_rerun_pays_nothing_even_without_the_files(sim, conn, assets_flow, tmp_path):
    first = assets_flow(conn, str(tmp_path))
    mark, before = len(sim.requests()), paid_media_calls(sim)
    # 1. the same run again: the verified files are found, no API call at all
    again = assets_flow(conn, str(tmp_path))
    assert paid_media_calls(sim) == before and paid_kinds(sim, mark) == []
    assert all(a.reused and not a.paid for a in again)
    assert [a.fingerprint for a in again] == [a.fingerprint for a in first]
    # 2. the folder moved: its manifests still vouch for the files beside them
    moved = tmp_path.with_name(tmp_path.name + "-moved")
    shutil.move(tmp_path, moved)
    there = assets_flow(conn, str(moved))
    assert paid_kinds(sim, mark) == [] and all(a.reused for a in there)
    assert there[0].path == moved / "narration-1.mp3"
    # 3. the files are gone (another machine, a cleaned folder): made again from the
    #    persisted answers - the audio bytes, the image links - still without paying
    shutil.rmtree(moved)
    restored = assets_flow(conn, str(tmp_path))
    assert paid_media_calls(sim) == before and paid_kinds(sim, mark) == []
    assert all(not a.reused and not a.paid for a in restored)
    assert restored[0].sha256 == first[0].sha256 and restored[1].sha256 == first[1].sha256
    assert restored[2].images[0].sha256 == first[2].images[0].sha256
    # 4. a changed narration is a new request: paid once
    changed = assets_flow(conn, str(tmp_path), text=TEXT + " Then silence.")
    assert paid_media_calls(sim) == before + 1 and changed[0].paid
    assert changed[0].audio_length_ms > first[0].audio_length_ms


def test_identical_requests_in_parallel_pay_once(sim, conn, tmp_path):
    from prefect import flow

    from hailuo.speech import SpeechRequest
    from prefect_hailuo.tasks.assets import synthesize_speech

    @flow(name="asset-parallel-test")
    def twice(out: str):
        request = SpeechRequest(text="Said twice, paid once.")
        futures = [synthesize_speech.submit(request, conn, output_dir=out, name="same")
                   for _ in range(2)]
        return [f.result() for f in futures]

    before = paid_media_calls(sim)
    one, two = twice(str(tmp_path))
    assert paid_media_calls(sim) == before + 1
    assert one.sha256 == two.sha256 and sorted([one.paid, two.paid]) == [False, True]


def test_s3_upload_with_manifest_skips_identical_objects(sim, conn, assets_flow, tmp_path,
                                                         s3_bucket_block, s3_endpoint):
    speech, music, image = assets_flow(conn, str(tmp_path), bucket=s3_bucket_block)
    s3 = s3_client(s3_endpoint)
    for asset, sha in ((speech, speech.sha256), (music, music.sha256),
                       (image, image.images[0].sha256)):
        uri = urlparse(asset.s3_uris[0])
        head = s3.head_object(Bucket=uri.netloc, Key=uri.path.lstrip("/"))
        assert head["Metadata"]["sha256"] == sha
        manifest_uri = urlparse(asset.manifest_uri)
        body = s3.get_object(Bucket=manifest_uri.netloc,
                             Key=manifest_uri.path.lstrip("/"))["Body"].read()
        assert json.loads(body)["fingerprint"] == asset.fingerprint
        assert asset.presigned_url.startswith(s3_endpoint)
    again = assets_flow(conn, str(tmp_path), bucket=s3_bucket_block)
    assert again[0].s3_uris == speech.s3_uris and again[0].reused


def test_music_unavailable_stops_before_anything_is_paid(sim, conn, tmp_path):
    from prefect import flow

    from hailuo.mediaclient import ModelUnavailableError
    from hailuo.music import MusicRequest
    from prefect_hailuo.tasks.assets import compose_music

    @flow(name="asset-music-unavailable-test")
    def bed(out: str):
        return compose_music(MusicRequest(prompt="strings", instrumental=True), conn,
                             output_dir=out)

    configure_media(sim, music_available=False)
    before = paid_media_calls(sim)
    with pytest.raises(ModelUnavailableError, match="music: none"):
        bed(str(tmp_path))
    assert paid_media_calls(sim) == before


def test_images_on_apimart_and_audio_needs_minimax(sim, apimart_conn, tmp_path):
    from prefect import flow

    from hailuo.capabilities import Provider
    from hailuo.imagegen import ImageRequest
    from prefect_hailuo.blocks.credentials import HailuoConnection
    from prefect_hailuo.tasks.assets import generate_image, speech_client

    @flow(name="asset-apimart-test")
    def keyframe(out: str):
        return generate_image(ImageRequest(prompt="a harbour crane", aspect_ratio="9:16"),
                              apimart_conn, output_dir=out, name="k1")

    before = paid_media_calls(sim, "image_submit")
    asset = keyframe(str(tmp_path))
    assert asset.provider is Provider.APIMART and asset.task_id.startswith("task_")
    assert asset.images[0].height > asset.images[0].width
    assert paid_media_calls(sim, "image_submit") == before + 1
    remote = HailuoConnection(credentials_block="nowhere", provider=Provider.APIMART,
                              base_url="https://api.apimart.ai")
    with pytest.raises(ConfigurationError, match="provider 'minimax'"):
        speech_client(remote)


def test_a_file_from_another_endpoint_is_not_reused(sim, conn, assets_flow, tmp_path):
    first = assets_flow(conn, str(tmp_path))
    manifest_path = Path(first[0].manifest_path)
    manifest = json.loads(manifest_path.read_text())
    manifest["endpoint"] = "made-elsewhere"  # e.g. by the simulator, now a real API
    manifest_path.write_text(json.dumps(manifest))
    before = paid_media_calls(sim)
    again = assets_flow(conn, str(tmp_path))
    assert not again[0].reused and again[1].reused  # re-made, from the cached answer
    assert paid_media_calls(sim) == before


def test_nothing_written_holds_the_key(tmp_path_factory):
    root = Path(tmp_path_factory.getbasetemp())
    for path in root.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".mp3", ".png", ".wav"):
            assert KEY.encode() not in path.read_bytes(), path
