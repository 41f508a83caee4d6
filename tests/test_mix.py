"""``hailuo.mix``, ``hailuo.subtitles``, ``hailuo.filmplan`` and the storyboard's narrated-film
keys, without Prefect or a simulator: the ducking envelope is smooth, normalisation lands
on the target loudness, the limiter holds the true peak, segments start where the stitch
puts them, subtitles move onto the film's timeline, and the final MP4 carries the mix and a
subtitle track. Loudness is measured with pyloudnorm, true peak with this file's own FFT
oversampling (not the product's polyphase filter)."""

from __future__ import annotations

import math
from decimal import Decimal
from pathlib import Path

import av
import numpy as np
import pyloudnorm
import pysubs2
import pytest

from hailuo import mix
from hailuo.audio import SubtitleEntry, encode_audio
from hailuo.errors import CostLimitExceededError, InvalidRequestError
from hailuo.filmplan import check_film_cost, plan_film
from hailuo.mix import Cue, MixSettings, Narration
from hailuo.storyboard import Storyboard, load_storyboard
from hailuo.subtitles import film_cues, read_cues, write_sidecars
from tests.conftest import encode_mp4

RATE = 48000
ROOT = Path(__file__).resolve().parents[1]


def fft_true_peak_db(x: np.ndarray, factor: int = 4) -> float:
    x = np.atleast_2d(np.asarray(x, np.float64))
    n = x.shape[1]
    up = np.fft.irfft(np.fft.rfft(x, axis=1), n * factor, axis=1) * factor
    return 20 * math.log10(float(np.max(np.abs(up))))


def lufs(x: np.ndarray) -> float:
    return pyloudnorm.Meter(RATE).integrated_loudness(np.atleast_2d(x).T.astype(np.float64))


def tone(seconds: float, freq: float, amp: float, phase: float = 0.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    wave = (amp * np.sin(2 * np.pi * freq * t + phase)).astype(np.float32)
    return np.stack([wave, wave])


def speechlike(seconds: float, seed: int = 1) -> np.ndarray:
    """Bursts of harmonics with gaps: a stand-in for a voice."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    voice = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 8))
    gate = (np.sin(2 * np.pi * 3 * t) > 0.2).astype(float)
    x = 0.2 * voice * gate + 0.01 * rng.standard_normal(n)
    return np.stack([x, x]).astype(np.float32)


# -- ducking ----------------------------------------------------------------------------
def test_duck_envelope_is_smooth_and_reaches_its_depth_at_the_voice():
    n = 10 * RATE
    gain = mix.duck_gain([(2.0, 4.0), (6.0, 7.0)], n, RATE, depth_db=-12, attack=0.3,
                         release=0.8)
    db = 20 * np.log10(gain)
    assert db[: int(1.6 * RATE)].max() == 0.0  # untouched before the attack ramp
    assert np.allclose(db[2 * RATE:4 * RATE], -12, atol=1e-6)  # full depth while speaking
    assert abs(db[int(5.0 * RATE)]) < 1e-6  # back up after the release
    # no step: the largest change per millisecond is the cosine ramp's steepest slope
    per_ms = np.abs(np.diff(db[::RATE // 1000]))
    assert per_ms.max() <= math.pi / 2 * 12 / 300 + 1e-3  # 0.063 dB/ms for a 300 ms attack
    assert per_ms.max() < 0.1
    # overlapping ramps take the deeper gain, never a sum
    close = mix.duck_gain([(1.0, 2.0), (2.5, 3.0)], 4 * RATE, RATE, depth_db=-12)
    assert 20 * np.log10(close.min()) >= -12 - 1e-6


def test_sound_span_finds_where_a_recording_sounds():
    x = np.zeros((2, 3 * RATE), np.float32)
    x[:, RATE:2 * RATE] = tone(1.0, 220, 0.3)
    start, end = mix.sound_span(x, RATE)
    assert abs(start - 1.0) <= 0.011 and abs(end - 2.0) <= 0.011
    assert mix.sound_span(np.zeros((2, RATE)), RATE) is None


# -- loudness and true peak -------------------------------------------------------------
@pytest.mark.parametrize("target", [-16.0, -23.0, -14.0])
def test_normalise_lands_on_the_target_loudness_under_the_ceiling(target):
    quiet = speechlike(8) * 0.05
    out, gain_db, curve = mix.normalise(quiet, RATE, target, -1.0)
    assert abs(lufs(out) - target) <= 0.1
    assert fft_true_peak_db(out) <= -1.0 + 0.05
    assert gain_db > 10 and curve.shape == (quiet.shape[1],)


def test_limiter_holds_inter_sample_peaks_and_leaves_the_rest_alone():
    # a sine at a quarter of the rate, 45 degrees off: every sample is at 0.707 of the
    # true peak, so a sample-peak limiter would let it through 3 dB too hot
    x = tone(3.0, RATE / 4, 0.3)
    x[:, RATE:RATE + RATE // 2] = tone(0.5, RATE / 4, 1.2, phase=math.pi / 4)
    assert np.abs(x).max() < 0.9 and fft_true_peak_db(x) > 1.0
    out, gain = mix.limit_true_peak(x, RATE, -1.0)
    assert fft_true_peak_db(out) <= -1.0 + 0.05
    assert mix.true_peak(out) <= -1.0 + 1e-6  # the product's own meter agrees
    far = slice(0, int(0.9 * RATE))  # more than look-ahead + hold from the loud part
    assert np.array_equal(out[:, far], x[:, far])
    assert gain.max() <= 1.0 and np.abs(np.diff(gain)).max() < 0.01  # ramps, not steps


def test_true_peak_matches_an_fft_oversampler():
    x = speechlike(3, seed=7)
    assert abs(mix.true_peak(x) - fft_true_peak_db(x)) < 0.1


# -- the timeline -----------------------------------------------------------------------
def test_segment_starts_follow_the_stitch():
    # chained 24 fps clips of 120 frames: each loses its shared last frame
    assert mix.segment_starts([120, 120, 120], [24, 24, 24]) == pytest.approx(
        [0.0, 119 / 24, 238 / 24])
    assert mix.segment_starts([120, 120], [24, 24], drop_boundary=False) == [0.0, 5.0]
    # a 12-frame crossfade overlaps each join
    assert mix.segment_starts([120, 120], [24, 24], crossfade_frames=12) == pytest.approx(
        [0.0, (119 - 12) / 24])
    # a 30 fps clip in a 24 fps film is laid out as the re-encode resamples it
    assert mix.segment_starts([150, 120], [30, 24], out_fps=24) == pytest.approx(
        [0.0, 119 / 24])


def test_fit_length_loops_a_short_bed_without_a_click():
    bed = tone(2.0, 220, 0.4)
    out = mix.fit_length(bed, 5 * RATE, RATE, crossfade_seconds=0.5)
    assert out.shape == (2, 5 * RATE)
    assert np.abs(np.diff(out[0])).max() < 0.05  # continuous through each loop point
    assert mix.fit_length(bed, RATE, RATE).shape == (2, RATE)


def test_mix_places_narration_ducks_music_and_normalises(tmp_path):
    voice = tmp_path / "voice.wav"
    voice.write_bytes(encode_audio(speechlike(2.0)[0], RATE, "wav"))
    music = tmp_path / "music.wav"
    music.write_bytes(encode_audio(tone(3.0, 330, 0.2), RATE, "wav"))
    track = mix.mix_soundtrack(8.0, [Narration(voice, 1.0), Narration(voice, 5.5)],
                               music=music, settings=MixSettings(loudness_lufs=-18))
    assert track.samples.shape == (2, 8 * RATE)
    assert abs(lufs(track.samples) + 18) <= 0.1
    assert fft_true_peak_db(track.samples) <= -1.0 - 0.4  # codec headroom kept
    assert np.allclose(sum(track.stems.values()), track.samples, atol=1e-5)
    assert track.music_under_speech_db is not None and track.music_under_speech_db < -8
    assert track.speech_spans[0][0] == pytest.approx(1.0, abs=0.02)
    # the voice really starts at its place: nothing of it before 1.0 s
    assert np.abs(track.stems["narration"][:, :RATE - 10]).max() == 0.0
    late = mix.mix_soundtrack(2.0, [Narration(voice, 1.5)])
    assert any("past the film's end" in note for note in late.notes)


# -- subtitles and the final file -------------------------------------------------------
def test_film_cues_are_moved_to_the_films_timeline(tmp_path):
    cues = film_cues([
        (5.0, [SubtitleEntry(start=0.1, end=1.9, text="Second."),
               SubtitleEntry(start=2.0, end=3.0, text="  Spaced   out. ")]),
        (0.0, [SubtitleEntry(start=0.1, end=5.4, text="First, running long.")]),
        (9.5, [SubtitleEntry(start=0.2, end=3.0, text="Cut at the end.")]),
    ], film_duration=11.0)
    assert cues == [Cue(0.1, 5.1, "First, running long."), Cue(5.1, 6.9, "Second."),
                    Cue(7.0, 8.0, "Spaced out."), Cue(9.7, 11.0, "Cut at the end.")]
    srt, vtt = write_sidecars(cues, tmp_path / "film.mp4")
    assert (srt.name, vtt.name) == ("film.srt", "film.vtt")
    assert vtt.read_text().startswith("WEBVTT")
    for path in (srt, vtt):
        assert read_cues(path) == cues
        assert [e.plaintext for e in pysubs2.load(str(path))][0] == "First, running long."


def test_write_film_copies_the_picture_and_adds_sound_and_a_subtitle_track(tmp_path):
    video = tmp_path / "picture.mp4"
    video.write_bytes(encode_mp4(frames=72, fps=24))
    # a square wave right at the ceiling: AAC's ringing pushes it over, write_film must
    # measure the decoded file and bring it back under
    square = np.sign(np.sin(2 * np.pi * 441 * np.arange(3 * RATE) / RATE)).astype(np.float32)
    samples = np.stack([square, square]) * np.float32(10 ** (-1.05 / 20))
    track = mix.Soundtrack(samples=samples, rate=RATE, stems={}, loudness_lufs=None,
                           true_peak_dbtp=None, gain_db=0.0, limiter_max_reduction_db=0.0,
                           speech_spans=[], narration_spans=[], music_under_speech_db=None)
    cues = [Cue(0.5, 1.2, "Hello there."), Cue(1.5, 2.5, "Second line, {braces}.")]
    info = mix.write_film(video, track, tmp_path / "film.mp4", cues=cues)
    assert info["true_peak_dbtp"] <= -1.0 and info["codec_trim_db"] < 0
    with av.open(str(tmp_path / "film.mp4")) as out, av.open(str(video)) as src:
        assert [s.type for s in out.streams] == ["video", "audio", "subtitle"]
        copied = [bytes(p) for p in out.demux(out.streams.video[0]) if p.size]
        original = [bytes(p) for p in src.demux(src.streams.video[0]) if p.size]
        assert copied == original  # the picture is copied, not re-encoded
    with av.open(str(tmp_path / "film.mp4")) as out:
        track_ = out.streams.subtitles[0]
        texts = [(float(p.pts * p.time_base), s.dialogue.decode())
                 for p in out.demux(track_) for s in (track_.codec_context.decode2(p) or [])
                 if s.dialogue]
    assert texts == [(0.5, "Hello there."), (1.5, "Second line, (braces).")]


# -- the storyboard's new keys and the plan ---------------------------------------------
def test_storyboard_keys_for_narrated_films(tmp_path):
    board = load_storyboard(ROOT / "examples" / "narrated.yaml")
    assert board.narrated and board.voice == "English_expressive_narrator"
    assert board.music is not None and board.music.prompt
    assert all(board.keyframe_prompts)
    (tmp_path / "b.yaml").write_text("music: {file: bed.mp3}\nsegments: [{prompt: x}]\n")
    assert load_storyboard(tmp_path / "b.yaml").music.file == str(tmp_path / "bed.mp3")
    assert Storyboard.model_validate({"music": "none", "segments": [{"prompt": "x"}]}
                                     ).music is None
    for bad, needle in [({"music": {"prompt": "a", "file": "b"}}, "exactly one"),
                        ({"music": "jazz"}, "none"),
                        ({"first_image": "a.png", "first_image_prompt": "b"}, "not both"),
                        ({"audio": "a.mp3", "music": {"file": "b.mp3"}}, "not both"),
                        ({"narrator": "x"}, "Extra inputs")]:
        with pytest.raises(ValueError, match=needle):
            Storyboard.model_validate({**bad, "segments": [{"prompt": "x"}]})
    with pytest.raises(ValueError, match="not both"):
        Storyboard.model_validate({"segments": [{"prompt": "x", "keyframe": "k.png",
                                                 "keyframe_prompt": "y"}]})


def test_plan_prices_every_part_and_refuses_what_cannot_be_made():
    board = load_storyboard(ROOT / "examples" / "narrated.yaml")
    plan = plan_film(board, "apimart", "minimax")
    assert len(plan.video_requests) == 4 and plan.clip_seconds == [5, 5, 5, 5]
    assert all(r.last_frame_image for r in plan.video_requests)
    assert sorted(plan.image_requests) == [0, 1, 2, 3, 4]
    assert plan.video_usd == Decimal("0.80") and plan.music_usd == Decimal("0.15")
    assert plan.images_usd == Decimal("0.0175") and plan.speech_usd > 0
    with pytest.raises(InvalidRequestError, match="first\\+last frame"):
        plan_film(board, "apimart", model="MiniMax-Hailuo-2.3")
    long = board.model_copy(update={"segments": [
        board.segments[0].model_copy(update={"narration": "x" * 10_001})]})
    with pytest.raises(InvalidRequestError, match="segment 1 narration"):
        plan_film(long, "apimart")
    with pytest.raises(CostLimitExceededError, match="video \\$0.80.*music \\$0.15"):
        check_film_cost(plan.costs, 0.5, "nothing was paid")
    assert check_film_cost(plan.costs, None, "-") == plan.total_usd
