"""The narrated film (issue 15): ``examples/narrated.yaml`` end to end on the simulator, checked
with measurements of our own.

The film is made once by the flow (video on an APIMart credentials block, speech, music and
images on a MiniMax one, both pointing at one simulator over HTTP), then made again by
``hailuo film --json`` in a subprocess: the re-run must pay for nothing (the simulator's
counters of video submits and billed media calls do not move) and its JSON names the video,
with the ``.srt``/``.vtt`` beside it.

Everything is measured here, not taken from the product's figures: the final MP4's audio is
decoded with PyAV, its integrated loudness measured with pyloudnorm (ITU-R BS.1770) and its
true peak with this file's own FFT oversampling; each narration is found in the mix by
cross-correlating it with its own file; each segment's start is computed from the clips'
frame counts; the ducking is read off the music stem after checking that the stems add up
to what is in the MP4.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pyloudnorm
import pysubs2
import pytest
import yaml

from hailuo.errors import CostLimitExceededError, InvalidRequestError
from hailuo.mediaclient import ModelUnavailableError
from hailuo.simulator import run_simulator
from hailuo.simulator.media_apis import configure_media, paid_media_calls
from tests.conftest import save_credentials

pytestmark = pytest.mark.prefect

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "narrated.yaml"
HAILUO = Path(sys.executable).parent / "hailuo"
KEY = "hk-FILM-test-5e4d3c2b1a09"
RATE = 48000


# -- independent measurements -----------------------------------------------------------
def decode(path: Path, layout: str = "stereo") -> np.ndarray:
    """Every sample of the first audio stream, float64 (channels, n) at 48 kHz."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=RATE)
        chunks = [out.to_ndarray() for frame in container.decode(stream)
                  for out in resampler.resample(frame)]
        chunks += [out.to_ndarray() for out in resampler.resample(None)]
    return np.concatenate(chunks, axis=1).astype(np.float64)


def fft_true_peak_db(x: np.ndarray, factor: int = 4) -> float:
    """True peak by band-limited (FFT zero-padding) 4x oversampling."""
    n = x.shape[1]
    up = np.fft.irfft(np.fft.rfft(x, axis=1), n * factor, axis=1) * factor
    return 20 * math.log10(float(np.max(np.abs(up))))


def offset_in(needle: np.ndarray, hay: np.ndarray, around: float, search: float = 1.0
              ) -> float:
    """Where ``needle`` sits in ``hay`` (seconds), looked for within ``search`` of
    ``around``: the peak of their cross-correlation."""
    lo = max(0, int((around - search) * RATE))
    hi = min(len(hay), int((around + search) * RATE) + len(needle))
    seg = hay[lo:hi]
    size = 1 << math.ceil(math.log2(len(seg) + len(needle)))
    corr = np.fft.irfft(np.fft.rfft(seg, size) * np.conj(np.fft.rfft(needle, size)), size)
    return (lo + int(np.argmax(corr[:len(seg) - len(needle) + 1]))) / RATE


def frame_rms(x: np.ndarray, hop: int) -> np.ndarray:
    usable = len(x) - len(x) % hop
    return np.sqrt(np.mean(x[:usable].reshape(-1, hop) ** 2, axis=1))


def clip_starts(paths: list[str]) -> list[float]:
    """Each clip's start in the stitched film: frames counted by demuxing, one boundary
    frame dropped per join (chained/keyframed clips share it)."""
    starts, t = [], 0.0
    for path in paths:
        with av.open(path) as container:
            stream = container.streams.video[0]
            frames = sum(1 for p in container.demux(stream) if p.size)
            fps = float(stream.average_rate)
        starts.append(t)
        t += (frames - 1) / fps
    return starts


# -- fixtures ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sim():
    with run_simulator(render_seconds=0.3, cheap=True, accepted_keys=[KEY]) as handle:
        yield handle


@pytest.fixture(scope="module")
def blocks(prefect_harness, sim) -> tuple[str, str]:
    video = save_credentials("film-video", sim.base_url, KEY, provider="apimart")
    audio = save_credentials("film-audio", sim.base_url, KEY, provider="minimax")
    return video, audio


def counters(sim) -> tuple[int, int]:
    return sim.submits(), paid_media_calls(sim)


@pytest.fixture(scope="module")
def made(sim, blocks, tmp_path_factory):
    """The example made by the flow, then again by the CLI (a re-run)."""
    import prefect.settings

    from prefect_hailuo.flows import Destination, GenerationOptions
    from prefect_hailuo.flows.film import film

    out = tmp_path_factory.mktemp("narrated")
    video, audio = blocks
    before = counters(sim)
    result = film(str(EXAMPLE), GenerationOptions(), Destination(output_dir=str(out)),
                  credentials_block=video, audio_credentials_block=audio)
    first = counters(sim)
    env = {**os.environ, "PYTHONPATH": str(ROOT),
           "PREFECT_API_URL": prefect.settings.PREFECT_API_URL.value()}
    proc = subprocess.run(
        [str(HAILUO), "film", str(EXAMPLE), "--json", "--credentials-block", video,
         "--audio-credentials-block", audio, "--out", str(out)],
        env=env, cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=300)
    return {"result": result, "before": before, "first": first, "after": counters(sim),
            "proc": proc, "out": out}


# -- the example, end to end ------------------------------------------------------------
def test_first_run_pays_for_each_asset_once(made):
    (s0, m0), (s1, m1) = made["before"], made["first"]
    assert s1 - s0 == 4  # one clip per segment
    assert m1 - m0 == 5 + 4 + 1  # K0..K4, four narrations, one music bed
    film = made["result"]
    assert film.music_source == "composed" and len(film.narrations) == 4
    assert all(k and Path(k).exists() for k in film.keyframes)


def test_rerun_through_the_cli_pays_nothing_and_puts_subtitles_beside_the_video(made):
    proc = made["proc"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert made["after"] == made["first"]  # no video submit, no billed media call
    doc = json.loads(proc.stdout)
    assert doc["ok"] is True and doc["command"] == "film"
    video = Path(doc["result"]["video_path"])
    assert video.is_file() and video == Path(made["result"].video_path)
    for suffix in (".srt", ".vtt"):
        assert video.with_suffix(suffix).is_file()
    assert doc["result"]["srt_path"] == str(video.with_suffix(".srt"))


def test_loudness_and_true_peak_of_the_final_film(made):
    mix = decode(Path(made["result"].video_path))
    meter = pyloudnorm.Meter(RATE)
    lufs = meter.integrated_loudness(mix.T)
    assert abs(lufs - (-16.0)) <= 1.0, lufs
    peak = fft_true_peak_db(mix)
    assert peak <= -1.0, peak
    # the film's sound lasts as long as its picture
    with av.open(made["result"].video_path) as container:
        video = container.streams.video[0]
        seconds = float(video.duration * video.time_base)
    assert abs(mix.shape[1] / RATE - seconds) < 0.05


def test_each_narration_starts_at_its_segment(made):
    film = made["result"]
    expected = clip_starts([c.local_path for c in film.clips])
    mix = decode(Path(film.video_path)).mean(axis=0)
    for entry in film.narrations:
        voice = decode(Path(entry.path)).mean(axis=0)
        at = offset_in(voice, mix, expected[entry.segment - 1])
        assert abs(at - expected[entry.segment - 1]) <= 0.1, (entry.segment, at, expected)


def test_the_stems_add_up_to_the_film_and_the_music_ducks_under_speech(made):
    film = made["result"]
    mix = decode(Path(film.video_path))
    stems = {name: decode(Path(path)) for name, path in film.stems.items()}
    n = min(mix.shape[1], *(s.shape[1] for s in stems.values()))
    residual = mix[:, :n] - sum(s[:, :n] for s in stems.values())
    ratio_db = 10 * math.log10(np.mean(residual ** 2) / np.mean(mix[:, :n] ** 2))
    assert ratio_db < -20, ratio_db  # what is left is AAC's coding error
    hop = RATE // 20  # 50 ms
    voice = frame_rms(stems["narration"].mean(axis=0), hop)
    music = frame_rms(stems["music"].mean(axis=0), hop)
    speaking = voice > voice.max() * 10 ** (-40 / 20)
    near = np.convolve(speaking.astype(float), np.ones(25), mode="same") > 0  # +-0.6 s
    frames = np.arange(len(music))
    body = (frames > 30) & (frames < len(music) - 50)  # not the fade in / fade out
    under = music[speaking & body]
    free = music[~near & body]
    assert len(under) > 40 and len(free) > 5, (len(under), len(free))
    drop = 20 * math.log10(np.sqrt(np.mean(under ** 2)) / np.sqrt(np.mean(free ** 2)))
    assert drop <= -6.0, drop
    # The gain the bed went through, frame by frame: the stem over the composed track.
    # It dips by about 12 dB under speech and moves smoothly (a hard cut would jump the
    # whole depth from one 50 ms frame to the next).
    track = frame_rms(decode(Path(film.music_path)).mean(axis=0)[:n], hop)
    gain = 20 * np.log10(np.maximum(music[:len(track)], 1e-12) / np.maximum(track, 1e-9))
    steady = body[:len(track)] & (track > track.max() * 10 ** (-50 / 20))
    depth = np.median(gain[speaking[:len(track)] & steady]) - np.median(
        gain[~near[:len(track)] & steady])
    assert -14.0 <= depth <= -10.0, depth
    jumps = np.abs(np.diff(gain))[steady[1:] & steady[:-1]]
    assert jumps.max() < 4.0, jumps.max()


def test_subtitles_match_the_narration_in_text_and_time(made):
    film = made["result"]
    video = Path(film.video_path)
    assets = {e.segment: json.loads(Path(e.path).with_suffix("").with_suffix(
        ".manifest.json").read_text()) for e in film.narrations}
    starts = clip_starts([c.local_path for c in film.clips])
    for suffix in (".srt", ".vtt"):
        subs = [e for e in pysubs2.load(str(video.with_suffix(suffix)), encoding="utf-8")]
        assert " ".join(e.plaintext for e in subs) == " ".join(
            e.text for e in film.narrations)
        cues = iter(subs)
        for entry in film.narrations:
            for sentence in assets[entry.segment]["result"]["subtitles"]:
                cue = next(cues)
                assert cue.plaintext == sentence["text"]
                at = starts[entry.segment - 1] + sentence["start"]
                assert abs(cue.start / 1000 - at) <= 0.01, (cue, at)
                assert abs(cue.end / 1000 - (starts[entry.segment - 1] + sentence["end"])
                           ) <= 0.01
    # the cue times are where the voice is heard: each cue starts within 100 ms of the
    # narration stem rising out of silence
    voice = frame_rms(decode(Path(film.stems["narration"])).mean(axis=0), RATE // 100)
    loud = voice > voice.max() * 10 ** (-40 / 20)
    for event in pysubs2.load(str(video.with_suffix(".srt")), encoding="utf-8"):
        cue = event.start // 10  # in 10 ms frames
        onset = cue - 10 + int(np.argmax(loud[cue - 10:]))  # first sound from 100 ms before
        assert abs(onset - cue) <= 10, (event.plaintext, onset, cue)


def test_the_mp4_carries_a_subtitle_track_with_the_same_cues(made):
    film = made["result"]
    srt = pysubs2.load(str(Path(film.video_path).with_suffix(".srt")), encoding="utf-8")
    with av.open(film.video_path) as container:
        assert [s.type for s in container.streams] == ["video", "audio", "subtitle"]
        track = container.streams.subtitles[0]
        assert track.codec_context.name == "mov_text"
        audio = container.streams.audio[0]
        assert (audio.codec_context.name, audio.sample_rate, audio.channels) == (
            "aac", 48000, 2)
        cues = []
        for packet in container.demux(track):
            for sub in track.codec_context.decode2(packet) or []:
                text = sub.dialogue.decode()  # the ASS line's text
                cues.append((round(float(packet.pts * packet.time_base), 3), text))
    assert [c for c in cues if c[1]] == [(round(e.start / 1000, 3), e.plaintext) for e in srt]


def test_manifest_describes_narration_music_subtitles_and_loudness(made):
    film = made["result"]
    manifest = json.loads(Path(film.manifest_path).read_text())
    assert manifest["kind"] == "hailuo-narrated-film"
    assert [s["text"] for s in manifest["narration"]["segments"]] == [
        n.text for n in film.narrations]
    assert manifest["music"]["source"] == "composed" and manifest["music"]["ducking_db"] < 0
    assert manifest["subtitles"]["track_in_mp4"] is True
    assert manifest["loudness"]["target_lufs"] == -16.0
    assert manifest["loudness"]["true_peak_dbtp"] <= -1.0
    assert manifest["final"]["sha256"] == film.sha256
    assert [k["source"] for k in manifest["keyframes"]] == ["generated"] * 5
    costs = manifest["costs"]
    assert float(costs["total_usd"]) == pytest.approx(film.total_cost_usd, abs=1e-4)
    assert film.audio_cost_usd > 0.15 and film.video_cost_usd == pytest.approx(0.8)


# -- stopping before any video is paid --------------------------------------------------
def _board(tmp_path: Path, **changes) -> Path:
    board = yaml.safe_load(EXAMPLE.read_text())
    board["segments"] = board["segments"][:2]
    board.update(changes)
    path = tmp_path / "board.yaml"
    path.write_text(yaml.safe_dump(board))
    return path


def _run(path: Path, blocks, tmp_path: Path, **options):
    from prefect_hailuo.flows import Destination, GenerationOptions
    from prefect_hailuo.flows.film import film

    video, audio = blocks
    return film(str(path), GenerationOptions(**options),
                Destination(output_dir=str(tmp_path / "out")), credentials_block=video,
                audio_credentials_block=audio)


def test_a_narration_longer_than_its_segment_stops_before_any_video(sim, blocks, tmp_path):
    board = yaml.safe_load(EXAMPLE.read_text())
    board["segments"] = board["segments"][:2]
    board["segments"][1]["narration"] = ("The keeper climbs one hundred and twelve narrow "
                                         "stone steps, every single evening, in all weathers.")
    path = tmp_path / "long.yaml"
    path.write_text(yaml.safe_dump(board))
    submits = sim.submits()
    with pytest.raises(InvalidRequestError, match=r"segment 2: \d+\.\d+ s of narration for "
                       r"a 5 s clip"):
        _run(path, blocks, tmp_path)
    assert sim.submits() == submits


def test_music_the_account_cannot_use_stops_before_video_and_offers_a_way_out(
        sim, blocks, tmp_path):
    configure_media(sim, music_available=False)
    try:
        path = _board(tmp_path, music={"prompt": "a lonely cello, slow and low"})
        submits = sim.submits()
        with pytest.raises(ModelUnavailableError) as failure:
            _run(path, blocks, tmp_path)
        assert "music: none" in str(failure.value) and "music: {file:" in str(failure.value)
        assert sim.submits() == submits
    finally:
        configure_media(sim, music_available=True)


def test_the_whole_films_estimate_is_checked_before_anything_is_paid(sim, blocks, tmp_path):
    path = _board(tmp_path)
    mark = len(sim.requests())
    with pytest.raises(CostLimitExceededError, match="images .* speech .* music"):
        _run(path, blocks, tmp_path, max_cost_usd=0.45)
    assert len(sim.requests()) == mark  # not one call


def test_cli_refuses_bad_input_before_prefect(tmp_path):
    from prefect_hailuo.cli import EXIT_BAD_INPUT, main

    missing = _board(tmp_path, music={"file": "no-such-track.mp3"})
    assert main(["film", str(missing), "--json"]) == EXIT_BAD_INPUT
    both = _board(tmp_path, first_image="k0.png")
    assert main(["film", str(both)]) == EXIT_BAD_INPUT
    assert main(["film", str(EXAMPLE), "--max-cost", "0.5"]) == EXIT_BAD_INPUT
    hailuo23 = _board(tmp_path)
    assert main(["film", str(hailuo23), "--model", "MiniMax-Hailuo-2.3",
                 "--provider", "apimart"]) == EXIT_BAD_INPUT


def test_a_film_without_music_goes_to_s3_with_its_subtitles(sim, blocks, tmp_path,
                                                            s3_bucket_block, s3_endpoint):
    from urllib.parse import urlparse

    from prefect_hailuo.flows import Destination, GenerationOptions
    from prefect_hailuo.flows.film import film
    from tests.conftest import s3_client

    board = yaml.safe_load(EXAMPLE.read_text())
    board.update(title="Harbour at night", music="none", segments=board["segments"][3:])
    path = tmp_path / "night.yaml"
    path.write_text(yaml.safe_dump(board))
    video, audio = blocks
    result = film(str(path), GenerationOptions(),
                  Destination(output_dir=str(tmp_path / "out"), s3_bucket_block=s3_bucket_block,
                              s3_prefix="narrated-test"),
                  credentials_block=video, audio_credentials_block=audio)
    assert result.music_source == "none" and result.music_under_speech_db is None
    assert abs(result.loudness_lufs + 16) <= 0.5
    s3 = s3_client(s3_endpoint)
    for uri, local in ((result.s3_uri, result.video_path), (result.srt_uri, result.srt_path),
                       (result.vtt_uri, result.vtt_path)):
        parsed = urlparse(uri)
        body = s3.get_object(Bucket=parsed.netloc, Key=parsed.path.lstrip("/"))["Body"].read()
        assert body == Path(local).read_bytes()
    assert Path(result.s3_uri).stem == Path(result.srt_uri).stem
    assert result.manifest_uri and result.presigned_url
