"""MiniMax-H3 through the flows and the command line, over real HTTP against the simulator
(a saved credentials block with provider minimax), under the session's Prefect test server:
every flow takes H3 (text, first frame, last frame alone, first+last, references - s3://
ones fetched - batch, storyboard, continuity), clips and films record ratio and sound, and
a three-clip H3 continuity film keeps each clip's sound on its own picture, the sound and
the picture lasting the same within one frame."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hailuo import h3, media
from hailuo.simulator import run_simulator
from hailuo.simulator.h3render import H3Spec, chord
from hailuo.storyboard import Storyboard
from tests.conftest import s3_client, save_credentials
from tests.h3_helpers import audio_track, peak_frequencies, textured_png, wav

KEY = "hk-h3-flows-test-key-0123456789"
FRAME = 1 / 24


@pytest.fixture(scope="module")
def sim():
    with run_simulator(render_seconds=0.2, accepted_keys=[KEY]) as handle:
        yield handle


@pytest.fixture(scope="module")
def creds(prefect_harness, sim) -> str:
    return save_credentials("h3-flows-test", sim.base_url, KEY, provider="minimax")


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("h3-inputs")
    return {"wide": textured_png(folder / "wide.png", (800, 450), seed=1),
            "end": textured_png(folder / "end.png", (800, 450), seed=2),
            "square": textured_png(folder / "square.png", (600, 600), seed=3),
            "portrait": textured_png(folder / "portrait.png", (450, 800), seed=4),
            "voice": wav(folder / "voice.wav", seconds=2.5, freq=440.0)}


def _options(**kw):
    from prefect_hailuo.flows import GenerationOptions

    return GenerationOptions(**{"model": "MiniMax-H3", "duration": 4, "ratio": "16:9",
                                "provider": "minimax", **kw})


def _destination(out: Path, bucket: str | None = None):
    from prefect_hailuo.flows import Destination

    return Destination(output_dir=str(out), s3_bucket_block=bucket)


def _manifest(clip) -> dict:
    return json.loads(Path(clip.manifest_path).read_text())


def _task(sim, task_id: str) -> dict:
    return sim.task(task_id)


def _has_sound(path: str | Path, duration: int) -> np.ndarray:
    """The clip is H3-shaped and its sound is real: AAC 32 kHz stereo, as long as the
    picture within a frame, not silent."""
    info = media.probe(path)
    assert info.fps == 24 and info.frames == h3.frame_count(duration)
    codec, rate, channels, samples = audio_track(Path(path))
    assert (codec, rate, channels) == ("aac", 32_000, 2)
    assert abs(samples.shape[1] / rate - info.frames / 24) <= FRAME + 0.04
    assert np.abs(samples).max() > 0.05
    return samples


# -- the command line ---------------------------------------------------------------------------
def _cli(capsys, *args: str) -> tuple[int, dict]:
    from prefect_hailuo.cli import main

    code = main(list(args))
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else {}


def test_cli_generate_h3_text_to_video_with_a_ratio(sim, creds, tmp_path, capsys):
    """The command that used to stop at "ratio is required" inside the flow."""
    code, doc = _cli(capsys, "generate", "--model", "MiniMax-H3", "--provider", "minimax",
                     "--ratio", "9:16", "--duration", "4", "--credentials-block", creds,
                     "--out", str(tmp_path), "--json", "a lighthouse keeper climbs the stairs")
    assert code == 0, doc
    clip = doc["result"]
    assert (clip["width"], clip["height"]) == h3.frame_size("768p", "9:16") == (768, 1344)
    assert clip["ratio"] == "9:16" and clip["has_audio"] is True
    assert clip["model"] == "MiniMax-H3" and clip["provider"] == "minimax"
    _has_sound(clip["local_path"], 4)
    manifest = json.loads(Path(clip["manifest_path"]).read_text())
    assert manifest["mode"] == "text-to-video" and manifest["requested_ratio"] == "9:16"
    assert manifest["audio"]["sample_rate"] == 32_000 and manifest["audio"]["channels"] == 2
    assert manifest["request"]["ratio"] == "9:16"
    assert _task(sim, clip["task_id"])["model"] == "MiniMax-H3"


def test_cli_generate_h3_references_and_last_frame_alone(sim, creds, images, tmp_path,
                                                         capsys):
    code, doc = _cli(capsys, "generate", "--model", "MiniMax-H3", "--provider", "minimax",
                     "--duration", "4", "--credentials-block", creds, "--out", str(tmp_path),
                     "--json", "--reference-image", str(images["square"]),
                     "--reference-audio", str(images["voice"]), "--ratio", "1:1",
                     "the figure from the picture sings along")
    assert code == 0, doc
    clip = doc["result"]
    assert _manifest_mode(clip) == "reference" and clip["ratio"] == "1:1"
    assert (clip["width"], clip["height"]) == (768, 768) and clip["has_audio"]

    code, doc = _cli(capsys, "generate", "--model", "MiniMax-H3", "--provider", "minimax",
                     "--duration", "4", "--credentials-block", creds, "--out", str(tmp_path),
                     "--json", "--last-frame", str(images["portrait"]),
                     "the camera settles on the tower")
    assert code == 0, doc
    clip = doc["result"]
    assert _manifest_mode(clip) == "last-frame"
    assert clip["ratio"] == "9:16"  # adaptive: the last image's aspect


def _manifest_mode(clip: dict) -> str:
    return json.loads(Path(clip["manifest_path"]).read_text())["mode"]


def test_cli_h3_film_takes_a_ratio(sim, creds, tmp_path, capsys):
    board = tmp_path / "board.yaml"
    board.write_text("title: Tiny H3\nsegments:\n  - prompt: a kite rises\n"
                     "  - prompt: the kite dips\n")
    code, doc = _cli(capsys, "continuity", str(board), "--model", "MiniMax-H3", "--provider",
                     "minimax", "--ratio", "4:3", "--duration", "4", "--resolution", "768p",
                     "--credentials-block", creds, "--out", str(tmp_path), "--json")
    assert code == 0, doc
    film = doc["result"]
    assert (film["width"], film["height"]) == (1024, 768) and film["ratio"] == "4:3"
    assert film["has_audio"] and film["audio_method"] in ("copied", "re-encoded")


# -- the single-clip flows ---------------------------------------------------------------------
def test_image_to_video_follows_the_image_and_ignores_the_runs_ratio(creds, images, tmp_path):
    from prefect_hailuo.flows import image_to_video

    clip = image_to_video(first_frame_image=str(images["portrait"]), prompt="she turns",
                          options=_options(), destination=_destination(tmp_path),
                          credentials_block=creds)
    assert (clip.width, clip.height) == (768, 1344) and clip.ratio == "9:16"
    assert _manifest(clip)["requested_ratio"] == "adaptive"
    _has_sound(clip.local_path, 4)


def test_first_last_frame_and_last_frame_alone(sim, creds, images, tmp_path):
    from prefect_hailuo.flows import first_last_frame

    both = first_last_frame(first_frame_image=str(images["wide"]),
                            last_frame_image=str(images["end"]), prompt="dusk becomes night",
                            options=_options(), destination=_destination(tmp_path),
                            credentials_block=creds)
    assert _manifest(both)["mode"] == "first-last-frame" and both.ratio == "16:9"
    alone = first_last_frame(first_frame_image="", last_frame_image=str(images["end"]),
                             prompt="the lights come on", options=_options(),
                             destination=_destination(tmp_path), credentials_block=creds)
    assert _manifest(alone)["mode"] == "last-frame"
    assert (alone.width, alone.height) == (1344, 768)
    # the last frame IS the image (the simulator pins it, as H3 does)
    from PIL import Image

    last = media.last_frame(alone.local_path)
    with Image.open(images["end"]) as img:
        from hailuo.simulator.render import fit_cover

        want = fit_cover(img, (1344, 768))
    assert media.psnr(np.asarray(want), np.asarray(last.convert("RGB"))) > 25
    with pytest.raises(Exception, match="first_frame_image"):  # 02 still needs both
        first_last_frame(first_frame_image="", last_frame_image=str(images["end"]),
                         options=_options(model="MiniMax-Hailuo-02", ratio=None),
                         destination=_destination(tmp_path), credentials_block=creds)


def test_reference_to_video_flow(sim, creds, images, tmp_path):
    from prefect_hailuo.flows import reference_to_video

    clip = reference_to_video(prompt="the product spins on a turntable",
                              reference_images=[str(images["wide"]), str(images["square"])],
                              reference_audios=[str(images["voice"])],
                              options=_options(ratio=None, duration=5),
                              destination=_destination(tmp_path), credentials_block=creds)
    manifest = _manifest(clip)
    assert manifest["mode"] == "reference" and clip.ratio == "16:9"  # adaptive: 1st image
    assert manifest["request"]["reference_images"] and clip.has_audio
    task = _task(sim, clip.task_id)
    assert task["mode"] == "reference"
    _has_sound(clip.local_path, 5)


# -- batch: H3 clips of every kind, s3:// references fetched ------------------------------------
def test_batch_of_h3_clips_with_s3_references(sim, creds, images, tmp_path, s3_bucket_block,
                                              s3_endpoint):
    from prefect_hailuo.flows import ClipSpec, generate_batch

    s3 = s3_client(s3_endpoint)
    s3.upload_file(str(images["square"]), "hailuo-test", "refs/square.png")
    s3.upload_file(str(images["voice"]), "hailuo-test", "refs/voice.wav")
    clips = [
        ClipSpec(name="from-text", prompt="gulls over the harbour"),
        ClipSpec(name="from-image", prompt="the boat leaves",
                 first_frame_image=str(images["wide"])),
        ClipSpec(name="from-refs", prompt="the singer from the photo",
                 reference_images=["s3://hailuo-test/refs/square.png"],
                 reference_audios=["s3://hailuo-test/refs/voice.wav"], ratio="1:1"),
    ]
    result = generate_batch(clips=clips, options=_options(),
                            destination=_destination(tmp_path, s3_bucket_block),
                            credentials_block=creds)
    by_name = {c.name: c for c in result.clips}
    assert by_name["from-text"].ratio == "16:9"  # the run's ratio
    assert by_name["from-image"].ratio == "16:9"  # the image's (the run's not applied)
    assert _manifest(by_name["from-image"])["requested_ratio"] == "adaptive"
    refs = by_name["from-refs"]
    assert refs.ratio == "1:1" and _manifest(refs)["mode"] == "reference"
    assert all(c.has_audio and c.s3_uri for c in result.clips)


# -- storyboard: last frame alone, first+last, first frame ----------------------------------------
def test_storyboard_h3_uses_the_frame_modes_that_fit(sim, creds, images, tmp_path):
    from prefect_hailuo.flows import storyboard

    board = Storyboard(title="H3 keys", model="MiniMax-H3", resolution="768P", duration=4,
                       segments=[
                           {"prompt": "a tower rises from the fog",
                            "keyframe": str(images["wide"])},
                           {"prompt": "the fog clears", "keyframe": str(images["end"])},
                           {"prompt": "birds cross the sky"}])
    film = storyboard(storyboard=board, options=_options(ratio=None),
                      destination=_destination(tmp_path), credentials_block=creds)
    modes = [_manifest(c)["mode"] for c in film.clips]
    assert modes == ["last-frame", "first-last-frame", "image-to-video"]
    assert [_task(sim, c.task_id)["mode"] for c in film.clips] == modes
    manifest = json.loads(Path(film.manifest_path).read_text())
    assert [s["ratio"] for s in manifest["segments"]] == ["16:9"] * 3
    assert film.has_audio and manifest["audio"]["clips_with_audio"] == 3


# -- the done-when film ----------------------------------------------------------------------------
PROMPTS = ["a brass band marches along the quay at dawn",
           "rain starts to fall on the tin roofs",
           "the sun breaks through over the bay"]


@pytest.fixture(scope="module")
def h3_film(sim, creds, tmp_path_factory):
    from prefect_hailuo.flows import multi_clip_continuity

    out = tmp_path_factory.mktemp("h3-film")
    board = Storyboard(title="Quay at dawn", segments=[{"prompt": p} for p in PROMPTS])
    film = multi_clip_continuity(storyboard=board, options=_options(duration=4),
                                 destination=_destination(out), credentials_block=creds)
    return board, film


def test_three_clip_h3_continuity_film_keeps_each_clips_sound_in_sync(h3_film, sim):
    board, film = h3_film
    info = media.probe(film.video_path)
    assert (info.width, info.height) == (1344, 768) and info.fps == 24
    # the clips: text (with the run's ratio), then each on the last frame of the one before
    modes = [json.loads(Path(c.manifest_path).read_text())["mode"] for c in film.clips]
    assert modes == ["text-to-video", "image-to-video", "image-to-video"]
    frames = [media.probe(c.local_path).frames for c in film.clips]
    assert frames == [h3.frame_count(4)] * 3
    # picture: every clip minus the frame each chained clip repeats
    assert info.frames == sum(frames) - 2
    # sound: present, as long as the picture within one frame (1/24 s)
    assert info.has_audio and film.has_audio
    assert abs(info.audio_duration - info.duration) <= FRAME
    assert abs(film.audio_duration - film.duration) <= FRAME
    codec, rate, channels, samples = audio_track(Path(film.video_path))
    assert (codec, rate, channels) == ("aac", 32_000, 2)
    assert abs(samples.shape[1] / rate - info.duration) <= FRAME + 0.04
    # each clip's sound sits at its clip's start: the chord heard in the middle of each
    # clip's span of the film is that clip's own chord (prompt-seeded, so all differ)
    starts = np.cumsum([0, *[(f - 1) / 24 for f in frames[:-1]]])
    chords = []
    for clip, start, count in zip(film.clips, starts, frames, strict=True):
        mid = start + count / 48
        window = samples[:, int((mid - 0.5) * rate): int((mid + 0.5) * rate)]
        assert np.sqrt(np.mean(window ** 2)) > 0.02  # not silent anywhere in the film
        heard = [peak_frequencies(window[ch], rate) for ch in (0, 1)]
        left, right = chord(H3Spec(1344, 768, count, prompt=clip.prompt, model="MiniMax-H3"))
        assert heard[0] == pytest.approx(sorted(left), abs=2)
        assert heard[1] == pytest.approx(sorted(right), abs=2)
        own = audio_track(Path(clip.local_path))[3]
        clip_mid = own[:, int((count / 48 - 0.5) * rate): int((count / 48 + 0.5) * rate)]
        assert peak_frequencies(clip_mid[0], rate) == pytest.approx(heard[0], abs=2)
        chords.append(tuple(heard[0]))
    assert len(set(chords)) == 3


def test_h3_film_manifest_poster_and_contact_sheet_record_ratio_and_sound(h3_film):
    _, film = h3_film
    manifest = json.loads(Path(film.manifest_path).read_text())
    assert manifest["video"]["ratio"] == "16:9" and manifest["video"]["has_audio"] is True
    audio = manifest["audio"]
    assert audio["source"] == "clips" and audio["clips_with_audio"] == 3
    assert audio["drift_seconds"] <= FRAME and audio["sample_rate"] == 32_000
    assert [s["has_audio"] for s in manifest["segments"]] == [True] * 3
    assert [s["ratio"] for s in manifest["segments"]] == ["16:9"] * 3
    assert all(s["audio"]["channels"] == 2 for s in manifest["segments"])
    stills = manifest["stills"]
    assert stills["ratio"] == "16:9" and stills["has_audio"] is True
    assert all(label.endswith("(4 s, 16:9, sound)") for label in stills["contact_sheet_labels"])
    assert Path(film.poster_path).stat().st_size and Path(film.contact_sheet_path).stat().st_size
    assert film.ratio == "16:9"
