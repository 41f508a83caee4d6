"""Stitching clips that carry their own sound (MiniMax H3: AAC, 32 kHz stereo, 24 fps,
clips a little longer than whole seconds): every clip's sound stays on its picture through
cuts, dropped boundary frames, crossfades, silent clips and an external track.

The clips are synthetic (PyAV): each clip's picture is one flat grey (its last frame shows
the next clip's grey, as a chained clip ends on the frame the next one starts with) and its
sound one sine tone, so where a clip starts can be read from the picture and heard (FFT)
in the film independently.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from hailuo import media, stitch

FPS = 24
RATE = 32000
FRAMES = 124  # H3's 17k+5 grid: 5.17 s, "a little longer than asked"
GREYS = [40, 120, 200]
TONES = [500.0, 1000.0, 1500.0]  # Hz, one per clip (multiples of 100 Hz: 10 ms FFT bins)
MUSIC = 3000.0  # the external track's tone
FRAME = 1 / FPS


def make_clip(path: Path, *, grey: int, next_grey: int | None = None, tone: float | None,
              frames: int = FRAMES, audio_seconds: float | None = None, rate: int = RATE,
              amplitude: float = 0.3, size: tuple[int, int] = (128, 72),
              layout: str = "stereo") -> Path:
    """An H3-like clip: 24 fps H.264 (no B-frames, a keyframe a second) plus, unless
    ``tone`` is None, a stereo AAC sine of ``audio_seconds`` (default: the video's length)."""
    with av.open(str(path), "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = size[0], size[1], "yuv420p"
        video.options = {"preset": "ultrafast",
                         "x264-params": "bframes=0:keyint=24:min-keyint=24:scenecut=0"}
        audio = container.add_stream("aac", rate=rate, layout=layout) if tone else None
        for i in range(frames):
            level = next_grey if next_grey is not None and i == frames - 1 else grey
            frame = av.VideoFrame.from_ndarray(
                np.full((size[1], size[0], 3), level, np.uint8), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if audio is not None:
            n = round((audio_seconds if audio_seconds is not None else frames / FPS) * rate)
            wave = (amplitude * np.sin(2 * np.pi * tone * np.arange(n) / rate)).astype(np.float32)
            data = np.stack([wave] * (1 if layout == "mono" else 2))
            for start in range(0, n, 1024):
                chunk = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(data[:, start:start + 1024]), format="fltp",
                    layout=layout)
                chunk.sample_rate, chunk.pts, chunk.time_base = rate, start, Fraction(1, rate)
                container.mux(audio.encode(chunk))
            container.mux(audio.encode(None))
    return path


def make_track(path: Path, seconds: float, tone: float = MUSIC, amplitude: float = 0.3,
               rate: int = 44100) -> Path:
    """A music stand-in: a stereo AAC sine in .m4a (another sample rate than the clips)."""
    n = round(seconds * rate)
    wave = (amplitude * np.sin(2 * np.pi * tone * np.arange(n) / rate)).astype(np.float32)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=rate, layout="stereo")
        for start in range(0, n, 1024):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(np.stack([wave, wave])[:, start:start + 1024]),
                format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = rate, start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def chain(folder: Path, prefix: str, tones: list[float | None], **kwargs) -> list[Path]:
    return [make_clip(folder / f"{prefix}{k}.mp4", grey=GREYS[k],
                      next_grey=GREYS[k + 1] if k + 1 < len(tones) else None, tone=tone,
                      **kwargs)
            for k, tone in enumerate(tones)]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("stitch-audio")


@pytest.fixture(scope="module")
def h3(folder) -> list[Path]:
    """Three chained H3-like clips with sound."""
    return chain(folder, "h3-", TONES)


# -- reading the film back ---------------------------------------------------------------

def greys(path: Path) -> list[float]:
    with av.open(str(path)) as container:
        return [float(f.to_ndarray(format="rgb24").mean()) for f in container.decode(video=0)]


def picture_starts(path: Path, levels: list[int] = GREYS) -> list[float]:
    """Film time at which each clip's picture first shows (its grey appears)."""
    frames = greys(path)
    return [next(i for i, g in enumerate(frames) if abs(g - level) < 4) / FPS
            for level in levels]


def sound(path: Path) -> np.ndarray:
    """The film's decoded audio at RATE, mono (the clips' channels are equal)."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        resample = stream.rate != RATE
        resampler = av.AudioResampler(format="fltp", layout="stereo", rate=RATE)
        frames = [out for f in container.decode(stream)
                  for out in (resampler.resample(f) if resample else [f])]
        if resample:
            frames += resampler.resample(None)
    return np.concatenate([f.to_ndarray() for f in frames], axis=1).mean(axis=0)


def spectrum(x: np.ndarray, t0: float, seconds: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    start = round(t0 * RATE)
    window = x[start:start + round(seconds * RATE)]
    hann = np.hanning(len(window))
    return (np.fft.rfftfreq(len(window), 1 / RATE),
            np.abs(np.fft.rfft(window * hann)) * 2 / hann.sum())


def dominant(x: np.ndarray, t0: float, seconds: float = 0.01) -> float:
    """The loudest frequency in [t0, t0 + seconds)."""
    freqs, mags = spectrum(x, t0, seconds)
    return float(freqs[int(np.argmax(mags))])


def level(x: np.ndarray, tone: float, t0: float, seconds: float = 0.01) -> float:
    """Amplitude of ``tone`` in [t0, t0 + seconds) (a sine of amplitude A reads A)."""
    freqs, mags = spectrum(x, t0, seconds)
    return float(mags[int(np.argmin(np.abs(freqs - tone)))])


def onset(x: np.ndarray, tone: float, around: float, full: float = 0.3) -> float:
    """When ``tone`` reaches half its level near ``around`` (1 ms steps, 10 ms windows:
    a window half filled reads half, so the time is the window's middle)."""
    for t in np.arange(around - 0.05, around + 0.05, 0.001):
        if level(x, tone, t - 0.005) > full / 2:
            return float(t)
    raise AssertionError(f"{tone} Hz never reaches half level near {around:.3f} s")


def audio_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(audio=0) if p.size]


def video_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(video=0) if p.size]


def assert_durations_agree(result: stitch.StitchResult) -> None:
    """The film's audio and video last the same, within one video frame (header and
    decoded samples)."""
    info = media.probe(result.path)
    assert info.has_audio and result.has_audio
    assert result.audio_duration == info.audio_duration
    assert abs(info.audio_duration - info.duration) < FRAME
    assert abs(len(sound(result.path)) / RATE - info.duration) < FRAME


# -- tests -------------------------------------------------------------------------------

def test_probe_reports_audio(h3, folder):
    info = media.probe(h3[0])
    assert info.has_audio and info.audio_codec == "aac"
    assert (info.audio_sample_rate, info.audio_channels) == (RATE, 2)
    assert info.audio_duration == pytest.approx(FRAMES / FPS, abs=1e-3)
    assert info.frames == FRAMES and info.duration == pytest.approx(FRAMES / FPS)
    silent = media.probe(make_clip(folder / "probe-silent.mp4", grey=90, tone=None, frames=24))
    assert not silent.has_audio
    assert (silent.audio_codec, silent.audio_sample_rate, silent.audio_channels,
            silent.audio_duration) == (None, None, None, None)


def test_cut_keeps_each_clips_sound_on_its_picture(h3, folder):
    result = stitch.stitch(h3, folder / "cut.mp4")
    # The picture is still copied packet for packet, minus the two boundary frames ...
    assert result.method == "remux" and result.dropped_frames == 2
    inputs = [video_packets(c) for c in h3]
    assert video_packets(result.path) == inputs[0][:-1] + inputs[1][:-1] + inputs[2]
    # ... while the sound is re-encoded: 123 frames of 1333.3 samples never end on an AAC
    # frame (1024 samples).
    assert result.audio_method == "re-encoded" and "AAC frame" in result.audio_reason
    assert result.audio_source == "clips" and result.audio_clips == 3
    assert (result.audio_sample_rate, result.audio_channels) == (RATE, 2)
    assert_durations_agree(result)
    # The boundary frame went: clip k+1's picture starts 123 frames after clip k's ...
    starts = picture_starts(result.path)
    assert starts == pytest.approx([0, 123 / FPS, 246 / FPS])
    # ... and so does its sound, to the millisecond (a kept boundary frame would put the
    # sound 41.7 ms early or late).
    x = sound(result.path)
    for k in (1, 2):
        assert onset(x, TONES[k], starts[k]) == pytest.approx(starts[k], abs=0.002)
        assert dominant(x, starts[k] - 0.011) == TONES[k - 1]
        assert dominant(x, starts[k] + 0.001) == TONES[k]
    for k, start in enumerate(starts):  # the whole clip is its own tone
        for t in np.arange(start + 0.05, start + 5.0, 0.5):
            assert dominant(x, t) == TONES[k]
    assert level(x, TONES[2], starts[2] + 5.0) == pytest.approx(0.3, abs=0.02)


def test_sound_longer_or_shorter_than_its_clip_is_trimmed_or_padded(folder):
    clips = [make_clip(folder / "long.mp4", grey=GREYS[0], next_grey=GREYS[1], tone=TONES[0],
                       audio_seconds=5.6),  # 0.43 s too long: trimmed at the join
             make_clip(folder / "short.mp4", grey=GREYS[1], next_grey=GREYS[2], tone=TONES[1],
                       audio_seconds=4.5),  # 0.63 s short: silence until the next clip
             make_clip(folder / "tail.mp4", grey=GREYS[2], tone=TONES[2], audio_seconds=6.0)]
    result = stitch.stitch(clips, folder / "uneven.mp4")
    assert result.method == "remux" and result.audio_method == "re-encoded"
    assert_durations_agree(result)  # the last clip's extra 0.83 s is cut too
    starts = picture_starts(result.path)
    x = sound(result.path)
    assert onset(x, TONES[1], starts[1]) == pytest.approx(starts[1], abs=0.002)
    assert dominant(x, starts[1] - 0.011) == TONES[0]
    assert level(x, TONES[1], starts[1] + 4.4) == pytest.approx(0.3, abs=0.02)
    gap = x[round((starts[1] + 4.55) * RATE):round((starts[2] - 0.04) * RATE)]
    assert len(gap) > 0.4 * RATE and np.sqrt(np.mean(gap ** 2)) < 1e-3
    assert onset(x, TONES[2], starts[2]) == pytest.approx(starts[2], abs=0.002)


def test_crossfade_overlaps_sound_exactly_where_pictures_blend(h3, folder):
    result = stitch.stitch(h3, folder / "xfade.mp4", transition="crossfade",
                           crossfade_seconds=0.5)
    fade = 12
    assert result.method == "reencode" and result.transition == "crossfade"
    assert result.audio_method == "re-encoded" and "crossfade" in result.audio_reason
    assert result.frames == 3 * FRAMES - 2 * (1 + fade)
    assert_durations_agree(result)
    frames = greys(result.path)
    x = sound(result.path)
    for k in (0, 1):
        # The pictures blend where the grey is strictly between the two clips' greys.
        blended = [i for i, g in enumerate(frames) if GREYS[k] + 3 < g < GREYS[k + 1] - 3]
        assert len(blended) == fade and blended == list(range(blended[0], blended[0] + fade))
        video_in, video_out = blended[0] / FPS, (blended[-1] + 1) / FPS
        # The sound overlap: where both tones are audible (above 2% of full level).
        times = np.arange(video_in - 0.1, video_out + 0.1, 0.002)
        both = [t for t in times if min(level(x, TONES[k], t - 0.005),
                                        level(x, TONES[k + 1], t - 0.005)) > 0.006]
        assert both[0] == pytest.approx(video_in, abs=0.015)
        assert both[-1] == pytest.approx(video_out, abs=0.015)
        # Equal power: half-way, each side at 1/sqrt(2) of its level; outside, only one.
        middle = (video_in + video_out) / 2
        for tone in TONES[k:k + 2]:
            assert level(x, tone, middle - 0.005) == pytest.approx(0.3 / np.sqrt(2), abs=0.02)
        assert level(x, TONES[k + 1], video_in - 0.03) < 0.006
        assert level(x, TONES[k], video_out + 0.02) < 0.006


def test_silent_clips_get_silence(folder):
    clips = chain(folder, "mixed-", [TONES[0], None, TONES[2]])  # a legacy Hailuo-02 clip
    result = stitch.stitch(clips, folder / "mixed.mp4")
    assert result.method == "remux"  # the picture is copied all the same
    assert result.audio_method == "re-encoded" and "clip 2 has no sound" in result.audio_reason
    assert result.audio_clips == 2
    assert_durations_agree(result)
    starts = picture_starts(result.path)
    x = sound(result.path)
    hush = x[round((starts[1] + 0.04) * RATE):round((starts[2] - 0.04) * RATE)]
    assert np.sqrt(np.mean(hush ** 2)) < 1e-3
    assert level(x, TONES[0], starts[1] - 0.05) == pytest.approx(0.3, abs=0.02)
    assert onset(x, TONES[2], starts[2]) == pytest.approx(starts[2], abs=0.002)
    # A silent first clip: the film takes the first sounding clip's format.
    first = chain(folder, "late-", [None, TONES[1]])
    late = stitch.stitch(first, folder / "late.mp4")
    assert late.audio_sample_rate == RATE and late.audio_clips == 1
    assert_durations_agree(late)
    y = sound(late.path)
    start = picture_starts(late.path, GREYS[:2])[1]
    assert np.sqrt(np.mean(y[:round((start - 0.04) * RATE)] ** 2)) < 1e-3
    assert onset(y, TONES[1], start) == pytest.approx(start, abs=0.002)


def test_external_track_is_mixed_under_the_clips_sound(h3, folder):
    music = make_track(folder / "music.m4a", 20.0)
    result = stitch.stitch(h3, folder / "music.mp4", audio=music)
    assert result.method == "remux" and result.audio_source == "clips+external"
    assert result.audio_method == "re-encoded" and "-6 dB" in result.audio_reason
    assert result.audio_sample_rate == RATE  # the clips' rate, not the track's 44.1 kHz
    assert_durations_agree(result)
    starts = picture_starts(result.path)
    x = sound(result.path)
    for k, start in enumerate(starts):
        assert level(x, TONES[k], start + 1.0, 0.1) == pytest.approx(0.3, abs=0.02)
        assert level(x, MUSIC, start + 1.0, 0.1) == pytest.approx(0.3 / 2, abs=0.01)  # -6 dB
    assert onset(x, TONES[1], starts[1]) == pytest.approx(starts[1], abs=0.002)
    # The music fades out at the film's end (it is longer than the film).
    assert level(x, MUSIC, result.duration - 0.02) < 0.02
    # "replace" keeps the old behaviour: the track instead of the clips' sound.
    replaced = stitch.stitch(h3, folder / "replaced.mp4", audio=music, audio_mode="replace")
    assert replaced.audio_source == "external" and "replaces" in replaced.audio_reason
    y = sound(replaced.path)
    assert level(y, MUSIC, 1.0, 0.1) == pytest.approx(0.3, abs=0.02)
    assert level(y, TONES[0], 1.0, 0.1) < 0.005
    with pytest.raises(ValueError, match="audio_mode"):
        stitch.stitch(h3, folder / "x.mp4", audio=music, audio_mode="duck")  # type: ignore[arg-type]


def test_loud_mix_does_not_clip(folder):
    loud = make_clip(folder / "loud.mp4", grey=GREYS[0], tone=TONES[0], frames=48,
                     amplitude=0.95)
    music = make_track(folder / "loud.m4a", 2.0, amplitude=0.95)
    result = stitch.stitch([loud], folder / "loud-mix.mp4", audio=music, audio_gain_db=0.0)
    x = sound(result.path)
    assert np.abs(x).max() <= 1.0  # 0.95 + 0.95 would reach 1.9
    # Limited by gain, not clipped: both tones clean, each about half of 0.95.
    assert level(x, TONES[0], 1.0, 0.1) > 0.4 and level(x, MUSIC, 1.0, 0.1) > 0.4
    freqs, mags = spectrum(x, 1.0, 0.1)
    harmonics = mags[(freqs > 3500) & (freqs < 12000)]
    assert harmonics.max() < 0.02
    # Over silent clips the track keeps its level (nothing to mix under).
    silent = make_clip(folder / "quiet.mp4", grey=GREYS[1], tone=None, frames=48)
    alone = stitch.stitch([silent], folder / "alone.mp4", audio=music)
    assert alone.audio_source == "external"
    assert level(sound(alone.path), MUSIC, 1.0, 0.1) == pytest.approx(0.95, abs=0.05)


def test_sound_is_copied_when_every_join_falls_on_an_aac_frame(folder):
    # 96 frames at 24 fps = 4 s = 128000 samples = 125 AAC frames: joins on the grid.
    clips = [make_clip(folder / f"grid{k}.mp4", grey=GREYS[k], tone=TONES[k], frames=96)
             for k in range(3)]
    result = stitch.stitch(clips, folder / "grid.mp4", drop_boundary=False)
    assert result.method == "remux" and result.audio_method == "copied"
    assert result.audio_duration == pytest.approx(12.0) and result.duration == pytest.approx(12.0)
    assert_durations_agree(result)
    # Clip k+1's priming packet takes the place of clip k's last one: every packet is an
    # input packet, byte for byte.
    inputs = [audio_packets(c) for c in clips]
    assert audio_packets(result.path) == inputs[0][:-1] + inputs[1][:-1] + inputs[2]
    assert video_packets(result.path) == sum((video_packets(c) for c in clips), [])
    # Each clip's sound is its own decoded sound from its first picture on (to within the
    # AAC window carry-over in its first 20 ms), and clip k's last 32 ms fade out.
    x = sound(result.path)
    for k, clip in enumerate(clips):
        own = sound(clip)
        at = k * 128000
        assert np.abs(x[at:at + 1024] - own[:1024]).max() < 0.005
        assert np.array_equal(x[at + 1024:at + 126976], own[1024:126976])
        if k < 2:
            assert dominant(x, (at + 127000) / RATE, 0.02) == TONES[k]
    assert onset(x, TONES[1], 4.0) == pytest.approx(4.0, abs=0.002)
    # Chained (a boundary frame dropped), the joins leave the grid: re-encoded, still synced.
    chained = stitch.stitch(clips, folder / "grid-chained.mp4")
    assert chained.method == "remux" and chained.audio_method == "re-encoded"
    assert "join after clip 1" in chained.audio_reason
    y = sound(chained.path)
    assert onset(y, TONES[1], 95 / FPS) == pytest.approx(95 / FPS, abs=0.002)


def test_clips_with_other_audio_formats_are_converted(folder):
    """A 48 kHz mono clip after a 32 kHz stereo one: the film takes the first format."""
    clips = [make_clip(folder / "fmt0.mp4", grey=GREYS[0], next_grey=GREYS[1], tone=TONES[0]),
             make_clip(folder / "fmt1.mp4", grey=GREYS[1], tone=TONES[1], rate=48000,
                       layout="mono")]
    result = stitch.stitch(clips, folder / "formats.mp4")
    assert result.method == "remux" and result.audio_method == "re-encoded"
    assert "differs from clip 1's in sample rate" in result.audio_reason
    assert (result.audio_sample_rate, result.audio_channels) == (RATE, 2)
    assert_durations_agree(result)
    start = picture_starts(result.path, GREYS[:2])[1]
    x = sound(result.path)
    mono = 0.3 / np.sqrt(2)  # FFmpeg spreads mono over two channels at -3 dB each
    assert onset(x, TONES[1], start, full=mono) == pytest.approx(start, abs=0.002)
    assert level(x, TONES[1], start + 2.0, 0.1) == pytest.approx(mono, abs=0.02)


def test_re_encoded_picture_keeps_sound_in_sync(folder, h3):
    """A forced picture re-encode (e.g. odd inputs) lays the sound the same way."""
    result = stitch.stitch(h3[:2], folder / "forced.mp4", reencode=True)
    assert result.method == "reencode" and result.audio_method == "re-encoded"
    assert_durations_agree(result)
    start = picture_starts(result.path, GREYS[:2])[1]
    assert start == pytest.approx(123 / FPS)
    assert onset(sound(result.path), TONES[1], start) == pytest.approx(start, abs=0.002)


def test_clip_audio_can_be_left_out(h3, folder):
    result = stitch.stitch(h3[:2], folder / "mute.mp4", clip_audio=False)
    assert not result.has_audio and result.audio_method == "none"
    assert result.audio_clips == 2 and "left out" in result.audio_reason
    assert result.audio_duration is None
    copied = stitch.concat_copy(h3[:2], folder / "mute-copy.mp4", clip_audio=False)
    assert not media.probe(copied).has_audio
    kept = stitch.concat_copy(h3[:2], folder / "kept-copy.mp4")
    assert media.probe(kept).has_audio
