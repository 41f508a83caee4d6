"""Speech, music and image clients against the simulator over real HTTP (issue 15).

Measurements are independent of the code under test where it matters: audio is decoded
with PyAV here and its loudness measured in 10 ms windows to check that the subtitle
times are where the speech is; image sizes are read back with Pillow.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import av
import httpx
import numpy as np
import pytest
from PIL import Image

from hailuo import errors, pricing
from hailuo.audio import parse_subtitles, probe_audio
from hailuo.imagegen import ImageClient, ImageRequest
from hailuo.mediaclient import ModelUnavailableError
from hailuo.music import MusicClient, MusicRequest
from hailuo.simulator import run_simulator
from hailuo.simulator.media_apis import MediaConfig, configure_media, paid_media_calls
from hailuo.speech import SpeechClient, SpeechRequest

KEY = "mk-MEDIA-s3cr3t-7a6b5c4d3e2f1a0987"
TEXT = ("The lighthouse keeper climbs the stairs at dusk. Below him, the sea is calm, and "
        "the boats come home one by one.")
SEEN_ERRORS: list[BaseException] = []


@pytest.fixture(scope="module")
def sim():
    with run_simulator(render_seconds=0.2, accepted_keys=[KEY]) as handle:
        yield handle


@pytest.fixture(autouse=True)
def fresh_knobs(sim):
    yield
    configure_media(sim, **MediaConfig().model_dump())
    sim.configure(error_rate=0.0, rate_limit_rate=0.0, wrong_region_code=None)


def nosleep(_: float) -> None:
    pass


def speech(sim, key: str = KEY) -> SpeechClient:
    return SpeechClient(key, sim.base_url, sleep=nosleep)


def music(sim) -> MusicClient:
    return MusicClient(KEY, sim.base_url, sleep=nosleep)


def images(sim, provider: str = "minimax") -> ImageClient:
    return ImageClient(provider, KEY, sim.base_url, sleep=nosleep, poll_interval=0.05)


def raises(exc_type, fn, *args, **kw):
    with pytest.raises(exc_type) as info:
        fn(*args, **kw)
    SEEN_ERRORS.append(info.value)
    return info.value


def decoded(path: Path) -> tuple[np.ndarray, int]:
    """Mono float samples and rate, decoded with PyAV directly."""
    chunks, rate = [], 0
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=stream.rate)
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
                rate = out.sample_rate
    return np.concatenate(chunks), rate


def active_windows(samples: np.ndarray, rate: int, window: float = 0.01) -> np.ndarray:
    size = int(rate * window)
    frames = samples[: len(samples) // size * size].reshape(-1, size)
    rms = np.sqrt(np.mean(frames ** 2, axis=1))
    return rms > 0.02


# -- speech ---------------------------------------------------------------------------
def test_speech_hex_mp3_length_follows_text_and_subtitles_match_the_audio(sim, tmp_path):
    before = paid_media_calls(sim)
    with speech(sim) as client:
        result = client.synthesize(SpeechRequest(text=TEXT), tmp_path / "n.mp3")
        short = client.synthesize(SpeechRequest(text="The lighthouse keeper climbs."),
                                  tmp_path / "short.mp3")
        fast = client.synthesize(SpeechRequest(text=TEXT, speed=2.0), tmp_path / "fast.mp3")
    assert paid_media_calls(sim) == before + 3
    # the length is real: decoded here, and it follows the text (a human-like pace)
    samples, rate = decoded(result.path)
    measured = len(samples) / rate
    assert abs(measured - result.audio_length_ms / 1000) < 0.06
    assert result.measured_ms == pytest.approx(result.audio_length_ms, abs=60)
    assert 8 <= len(TEXT) / measured <= 25  # characters per second
    assert short.audio_length_ms < result.audio_length_ms / 2.5
    assert 0.45 < fast.audio_length_ms / result.audio_length_ms < 0.62
    # subtitles: sentences of at most 50 characters, in order, inside the audio
    subs = result.subtitles
    assert len(subs) >= 3 and all(len(s.text) <= 50 for s in subs)
    assert " ".join(s.text for s in subs) == " ".join(TEXT.split())
    assert all(0 <= a.start < a.end <= b.start for a, b in zip(subs, subs[1:], strict=False))
    assert subs[-1].end <= measured + 0.01
    # ... and where the speech is: loud inside each entry, silent between sentences
    active = active_windows(samples, rate)
    for entry in subs:
        inside = active[int(entry.start * 100): int(entry.end * 100)]
        assert inside.mean() > 0.6, entry
    first, last = np.argmax(active) / 100, (len(active) - np.argmax(active[::-1])) / 100
    assert abs(first - subs[0].start) < 0.03 and abs(last - subs[-1].end) < 0.03
    gap = active[int(subs[0].end * 100) + 2: int(subs[1].start * 100) - 2]
    assert gap.size and gap.mean() < 0.05
    assert result.cost_usd == float(pricing.speech_quote("speech-2.8-hd",
                                                         result.usage_characters).usd)
    assert result.usage_characters == len(TEXT)


def test_speech_url_mode_wav_stereo_word_subtitles_and_audio_url_field(sim, tmp_path):
    configure_media(sim, url_field="audio_url")
    request = SpeechRequest(text="One two three. <#1.5#> Four five.", format="wav",
                            channel=2, sample_rate=44100, output_format="url",
                            subtitle_type="word")
    with speech(sim) as client:
        answer = client.call(request)
        assert answer.audio is None and answer.audio_url and answer.subtitle_url
        result = client.fetch(answer, tmp_path / "w.wav")
    assert (result.codec, result.channels, result.sample_rate) == ("pcm_s16le", 2, 44100)
    assert [s.text for s in result.subtitles] == ["One", "two", "three.", "Four", "five."]
    pause = result.subtitles[3].start - result.subtitles[2].end
    assert 1.5 <= pause < 1.5 + 0.4  # the <#1.5#> marker, plus the sentence gap


@pytest.mark.parametrize("fmt", ["mp3", "wav", "flac", "pcm", "opus", "pcmu_raw",
                                 "pcmu_wav"])
def test_every_speech_format_is_real_audio(sim, tmp_path, fmt):
    with speech(sim) as client:
        result = client.synthesize(SpeechRequest(text="Testing every format.", format=fmt,
                                                 sample_rate=24000, subtitles=False),
                                   tmp_path / f"f.{fmt}")
    info = probe_audio(result.path, fmt=fmt, sample_rate=24000, channels=1)
    assert info.duration_ms == pytest.approx(result.audio_length_ms, abs=60)
    assert info.peak > 0.1


@pytest.mark.parametrize(("kw", "field"), [
    ({"text": "  "}, "text"),
    ({"text": "x" * 10000}, "text"),
    ({"text": "hi <#0#> there"}, "text"),
    ({"text": "hi <#1#> <#2#> there"}, "text"),
    ({"model": "speech-9"}, "model"),
    ({"voice_id": None}, "voice_id"),
    ({"speed": 2.5}, "speed"),
    ({"vol": 0}, "vol"),
    ({"pitch": 13}, "pitch"),
    ({"emotion": "whisper"}, "emotion"),
    ({"emotion": "bored"}, "emotion"),
    ({"sample_rate": 48000}, "sample_rate"),
    ({"format": "aac"}, "format"),
    ({"bitrate": 96000}, "bitrate"),
    ({"channel": 3}, "channel"),
])
def test_speech_is_validated_locally_naming_the_field(sim, tmp_path, kw, field):
    before = len(sim.requests())
    request = SpeechRequest(**{"text": "Hello.", **kw})
    with speech(sim) as client:
        exc = raises(errors.InvalidRequestError, client.synthesize, request, tmp_path / "x")
    assert exc.field == field and str(exc).startswith(field)
    assert len(sim.requests()) == before  # nothing was sent


def test_speech_2_6_takes_whisper(sim, tmp_path):
    with speech(sim) as client:
        result = client.synthesize(SpeechRequest(text="Quietly now.", model="speech-2.6-hd",
                                                 emotion="whisper"), tmp_path / "w.mp3")
    assert result.audio_length_ms > 500


def test_transient_answers_are_retried_and_paid_once(sim, tmp_path):
    configure_media(sim, scripted_faults={"speech_rate_limited": 2, "speech_server_error": 1})
    before = paid_media_calls(sim)
    with speech(sim) as client:
        result = client.synthesize(SpeechRequest(text="Retry me."), tmp_path / "r.mp3")
    assert result.audio_length_ms > 0 and paid_media_calls(sim) == before + 1
    codes = [e["code"] for e in sim.requests("speech")[-4:]]
    assert codes == [1002, 1002, 1033, 0]


@pytest.mark.parametrize("fault", ["speech_drop_after", "speech_gateway_502"])
def test_a_lost_answer_after_billing_is_ambiguous_and_not_resent(sim, tmp_path, fault):
    configure_media(sim, scripted_faults={fault: 1})
    before = paid_media_calls(sim)
    request = SpeechRequest(text="This one may have been billed.")
    with speech(sim) as client:
        exc = raises(errors.AmbiguousSubmitError, client.synthesize, request,
                     tmp_path / "a.mp3")
    assert paid_media_calls(sim) == before + 1  # billed once, never sent again
    assert exc.details["request_fingerprint"] == request.fingerprint()
    assert not exc.retryable and not (tmp_path / "a.mp3").exists()


def test_typed_errors_and_the_key_never_leaks(sim, tmp_path):
    request = SpeechRequest(text="Secret test.")
    configure_media(sim, scripted_faults={"speech_sensitive": 1})
    with speech(sim) as client:
        raises(errors.ContentRejectedError, client.synthesize, request, tmp_path / "a.mp3")
    with speech(sim, key="mk-WRONG-key-000000000000") as client:
        exc = raises(errors.AuthenticationError, client.synthesize, request,
                     tmp_path / "b.mp3")
        assert exc.code == 2049 and "region" in str(exc)
    configure_media(sim, scripted_faults={"echo_key": 1})
    with speech(sim) as client:
        exc = raises(errors.AuthenticationError, client.synthesize, request,
                     tmp_path / "c.mp3")
        assert "login fail" in str(exc) and KEY not in str(exc)
        assert KEY not in repr(client)
    sim.configure(wrong_region_code=1004)
    with speech(sim) as client:
        raises(errors.AuthenticationError, client.synthesize, request, tmp_path / "d.mp3")


def test_expired_result_link_is_link_expired(sim, tmp_path):
    configure_media(sim, scripted_faults={"expired_links": 1})
    with speech(sim) as client:
        answer = client.call(SpeechRequest(text="Too late.", output_format="url",
                                           subtitles=False))
        raises(errors.LinkExpiredError, client.fetch, answer, tmp_path / "e.mp3")


def test_subtitle_spellings_are_accepted():
    entries = parse_subtitles({"subtitles": [{"text": "a", "start_time": 0, "end_time": 500},
                                             {"content": "b", "begin": 600, "end": 900}]})
    assert [(e.start, e.end, e.text) for e in entries] == [(0, 0.5, "a"), (0.6, 0.9, "b")]
    with pytest.raises(errors.UnreadableAnswerError):
        parse_subtitles([{"text": "x", "time_begin": 5, "time_end": 1}])


# -- music ----------------------------------------------------------------------------
def test_instrumental_track_of_the_requested_length(sim, tmp_path):
    before = paid_media_calls(sim, "music")
    with music(sim) as client:
        result = client.compose(MusicRequest(prompt="an 8 second calm piano bed",
                                             instrumental=True), tmp_path / "bed.mp3")
    samples, rate = decoded(result.path)
    assert len(samples) / rate == pytest.approx(8.0, abs=0.06)
    assert result.audio_length_ms == 8000 and result.channels == 2
    assert np.sqrt(np.mean(samples ** 2)) > 0.05  # a real track, not silence
    assert paid_media_calls(sim, "music") == before + 1
    assert result.cost_usd == 0.15


def test_song_from_lyrics_in_url_mode(sim, tmp_path):
    lyrics = "[Intro]\n[Verse]\nwaves on the rocks\nlight on the hill\n[Chorus]\ncome home"
    with music(sim) as client:
        answer = client.call(MusicRequest(lyrics=lyrics, prompt="folk", output_format="url",
                                          format="wav", sample_rate=24000))
        assert answer.audio_url and answer.audio is None
        result = client.fetch(answer, tmp_path / "song.wav")
    assert result.audio_length_ms == 3 * 3000 + 3 * 2000 and result.codec == "pcm_s16le"


def test_music_unavailable_for_the_account_says_what_to_do(sim, tmp_path):
    configure_media(sim, music_available=False)
    before = paid_media_calls(sim)
    with music(sim) as client:
        exc = raises(ModelUnavailableError, client.compose,
                     MusicRequest(prompt="x", instrumental=True), tmp_path / "m.mp3")
    assert "music: none" in str(exc) and not exc.retryable
    assert isinstance(exc, errors.ConfigurationError)
    assert paid_media_calls(sim) == before


@pytest.mark.parametrize(("kw", "field"), [
    ({"lyrics": "la", "instrumental": True, "prompt": "p"}, "lyrics"),
    ({"instrumental": True}, "prompt"),
    ({"prompt": "p"}, "lyrics"),
    ({"lyrics": "[Verse 1: soft guitar]\nla"}, "lyrics"),
    ({"lyrics": "la", "lyrics_optimizer": True}, "lyrics_optimizer"),
    ({"lyrics": "la", "model": "music-2.0", "instrumental": True}, "instrumental"),
    ({"lyrics": "la", "format": "flac"}, "format"),
    ({"lyrics": "la", "model": "music-9"}, "model"),
    ({"prompt": "short", "model": "music-cover"}, "prompt"),
])
def test_music_is_validated_locally(sim, tmp_path, kw, field):
    before = len(sim.requests())
    with music(sim) as client:
        exc = raises(errors.InvalidRequestError, client.compose, MusicRequest(**kw),
                     tmp_path / "m.mp3")
    assert exc.field == field
    assert len(sim.requests()) == before


# -- images ---------------------------------------------------------------------------
@pytest.mark.parametrize(("kw", "size"), [
    ({"aspect_ratio": "16:9"}, (1280, 720)),
    ({"aspect_ratio": "9:16"}, (720, 1280)),
    ({"aspect_ratio": "21:9"}, (1344, 576)),
    ({}, (1024, 1024)),
    ({"width": 768, "height": 512}, (768, 512)),
])
def test_minimax_image_has_the_requested_size(sim, tmp_path, kw, size):
    with images(sim) as client:
        result = client.generate(ImageRequest(prompt="a lighthouse at dusk", **kw),
                                 tmp_path / "k.png")
    (image,) = result.images
    with Image.open(image.path) as opened:
        assert opened.size == size and opened.format == "PNG"
    assert (image.width, image.height) == size == result.expected_size


def test_images_depend_on_the_prompt_base64_and_several(sim, tmp_path):
    with images(sim) as client:
        a = client.generate(ImageRequest(prompt="a red boat", n=3, response_format="base64"),
                            tmp_path / "a.png")
        b = client.generate(ImageRequest(prompt="a red boat", n=1), tmp_path / "b.png")
        c = client.generate(ImageRequest(prompt="a snowy forest", n=1), tmp_path / "c.png")
    assert [p.name for p in a.paths] == ["a-1.png", "a-2.png", "a-3.png"]
    assert len({i.sha256 for i in a.images}) == 3
    assert a.images[0].sha256 == b.images[0].sha256 != c.images[0].sha256
    pixels = [np.asarray(Image.open(p).convert("RGB"), dtype=float) for p in
              (b.paths[0], c.paths[0])]
    assert np.abs(pixels[0] - pixels[1]).mean() > 20  # different pictures, not a stamp


def test_blocked_images_partial_and_total(sim, tmp_path):
    configure_media(sim, image_blocked=1, counts_style="data")
    with images(sim) as client:
        result = client.generate(ImageRequest(prompt="two boats", n=2), tmp_path / "p.png")
        assert len(result.images) == 1 and result.failed_count == 1
        configure_media(sim, scripted_faults={"image_all_blocked": 1})
        exc = raises(errors.ContentRejectedError, client.generate,
                     ImageRequest(prompt="two boats", n=2), tmp_path / "q.png")
    assert "no images" in str(exc) and not list(tmp_path.glob("q*"))


@pytest.mark.parametrize(("kw", "field"), [
    ({"width": 1024}, "height"),
    ({"width": 1020, "height": 1024}, "width"),
    ({"aspect_ratio": "16:9", "width": 1024, "height": 1024}, "width"),
    ({"aspect_ratio": "5:4"}, "aspect_ratio"),
    ({"model": "image-01-live", "aspect_ratio": "21:9"}, "aspect_ratio"),
    ({"n": 10}, "n"),
    ({"prompt": "x" * 1501}, "prompt"),
    ({"style_type": "水彩"}, "style_type"),
    ({"model": "gpt-image-2"}, "model"),
    ({"subject_reference": "s3://bucket/face.png"}, "subject_reference"),
])
def test_images_are_validated_locally(sim, tmp_path, kw, field):
    before = len(sim.requests())
    with images(sim) as client:
        exc = raises(errors.InvalidRequestError, client.generate,
                     ImageRequest(**{"prompt": "a cat", **kw}), tmp_path / "v.png")
    assert exc.field == field
    assert len(sim.requests()) == before


def test_apimart_image_task_with_idempotent_replay(sim, tmp_path):
    before = paid_media_calls(sim)
    request = ImageRequest(prompt="a harbour at night", aspect_ratio="16:9")
    with images(sim, "apimart") as client:
        first = client.generate(request, tmp_path / "h.png")
        again = client.generate(request, tmp_path / "h2.png")  # same key: a replay
        other = client.generate(request, tmp_path / "h3.png", take=2)  # a new take: paid
    assert first.task_id == again.task_id != other.task_id
    assert paid_media_calls(sim) == before + 2
    (image,) = first.images
    assert image.width / image.height == pytest.approx(16 / 9, rel=0.05)
    assert first.model == "gpt-image-2" and first.cost_usd == 0.25  # assumed upper bound
    with images(sim, "apimart") as client:
        exc = raises(errors.InvalidRequestError, client.generate,
                     ImageRequest(prompt="x", n=2), tmp_path / "n.png")
        assert exc.field == "n"
        configure_media(sim, scripted_faults={"image_task_failed": 1})
        exc = raises(errors.ContentRejectedError, client.generate,
                     ImageRequest(prompt="a failing harbour"), tmp_path / "f.png")
        assert exc.task_id


def test_video_task_ids_still_reach_the_video_route(sim):
    response = httpx.get(f"{sim.base_url}/v1/tasks/task_01NOTANIMAGETASK0000000000",
                         headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == 404 and "not found" in response.text
    assert sim.requests()[-1]["kind"] == "status"


def test_no_error_carries_the_key():
    assert SEEN_ERRORS, "run with the rest of the module"
    for exc in SEEN_ERRORS:
        for text in (str(exc), repr(exc), str(exc.__dict__)):
            assert KEY not in text and KEY[:20] not in text
        assert KEY.encode() not in pickle.dumps(exc)


def test_wav_files_are_valid_outside_pyav(sim, tmp_path):
    import wave

    with speech(sim) as client:
        result = client.synthesize(SpeechRequest(text="Plain wave file.", format="wav",
                                                 subtitles=False), tmp_path / "p.wav")
    with wave.open(io.BytesIO(result.path.read_bytes())) as wav:
        seconds = wav.getnframes() / wav.getframerate()
    assert seconds == pytest.approx(result.audio_length_ms / 1000, abs=0.01)
