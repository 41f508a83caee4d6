"""MiniMax-H3 / H3-Max requests without the network: validation naming the field, modes,
media limits, APIMart refused, the v2 wire body and answers, sizes, the frame grid, prices."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest

from hailuo import errors, h3, pricing
from hailuo.capabilities import Mode, lookup, models_for
from hailuo.client import HailuoClient
from hailuo.errors import InvalidRequestError
from hailuo.fingerprint import request_fingerprint
from hailuo.h3media import check_media
from hailuo.models import JobStatus, VideoRequest
from hailuo.providers import v2_dialect_for
from hailuo.providers.minimax_v2 import V2_DIALECT, PlanKeyError, raise_for_error
from tests.conftest import make_png
from tests.h3_helpers import mp4, textured_png, wav

URL = "https://example.com/a.png"
KEY = "test-key-h3-0123456789"


def refused(provider: str = "minimax", **fields) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as info:
        VideoRequest(**fields).validate_for(provider)
    return info.value


# -- modes and defaults -------------------------------------------------------------------
@pytest.mark.parametrize("fields,mode", [
    ({"ratio": "16:9"}, Mode.TEXT_TO_VIDEO),
    ({"first_frame_image": URL}, Mode.IMAGE_TO_VIDEO),
    ({"last_frame_image": URL}, Mode.LAST_FRAME),
    ({"first_frame_image": URL, "last_frame_image": URL}, Mode.FIRST_LAST_FRAME),
    ({"reference_images": [URL]}, Mode.REFERENCE),
    ({"reference_videos": ["https://x/v.mp4"], "reference_audios": ["https://x/a.wav"]},
     Mode.REFERENCE),
])
@pytest.mark.parametrize("model", ["MiniMax-H3", "MiniMax-H3-Max"])
def test_every_mode_is_valid(model, fields, mode):
    request = VideoRequest(model=model, prompt="a lighthouse at dusk", **fields)
    valid = request.validate_for("minimax")
    assert valid.mode is mode
    assert valid.resolution == "768p" and valid.duration == 5
    assert valid.ratio == fields.get("ratio", "adaptive")
    assert lookup("minimax", model, mode) is not None


def test_resolutions_durations_and_spellings():
    ok = VideoRequest(model="MiniMax-H3", prompt="p", ratio="9:16", resolution="2K",
                      duration=15).validate_for("minimax")
    assert (ok.resolution, ok.duration) == ("2k", 15)
    assert VideoRequest(model="MiniMax-H3", prompt="p", ratio="1:1", duration=4).validate_for(
        "minimax").duration == 4
    assert VideoRequest(model="MiniMax-H3-Max", prompt="p", ratio="1:1", resolution="480P",
                        duration=5).validate_for("minimax").resolution == "480p"
    assert refused(model="MiniMax-H3", prompt="p", ratio="1:1", duration=16).field == "duration"
    assert refused(model="MiniMax-H3", prompt="p", ratio="1:1", duration=3).field == "duration"
    assert refused(model="MiniMax-H3", prompt="p", ratio="1:1",
                   resolution="480p").field == "resolution"
    assert refused(model="MiniMax-H3-Max", prompt="p", ratio="1:1",
                   resolution="2k").field == "resolution"
    assert refused(model="MiniMax-H3-Max", prompt="p", ratio="1:1", duration=4).field == \
        "duration"
    with pytest.raises(ValueError):  # pydantic: a fractional duration is not an integer
        VideoRequest(model="MiniMax-H3", prompt="p", ratio="1:1", duration=5.5)


def test_ratio_rules():
    error = refused(model="MiniMax-H3", prompt="p")
    assert error.field == "ratio" and "16:9" in error.message
    assert refused(model="MiniMax-H3", prompt="p", ratio="adaptive").field == "ratio"
    assert refused(model="MiniMax-H3", prompt="p", ratio="2:1").field == "ratio"
    # a frame mode follows the image: a concrete ratio would be silently ignored
    assert refused(model="MiniMax-H3", prompt="p", first_frame_image=URL,
                   ratio="9:16").field == "ratio"
    ref = VideoRequest(model="MiniMax-H3", prompt="p", reference_images=[URL],
                       ratio="4:3").validate_for("minimax")
    assert ref.ratio == "4:3"
    assert VideoRequest(model="MiniMax-H3", prompt="p", ratio=" 16:9 ").ratio == "16:9"


def test_roles_never_mixed_and_audio_needs_a_picture():
    error = refused(model="MiniMax-H3", prompt="p", first_frame_image=URL,
                    reference_images=[URL])
    assert error.field == "reference_images" and "mixed" in error.message
    assert refused(model="MiniMax-H3", prompt="p", last_frame_image=URL,
                   reference_videos=["https://x/v.mp4"]).field == "reference_videos"
    assert refused(model="MiniMax-H3", prompt="p",
                   reference_audios=["https://x/a.mp3"]).field == "reference_audios"


def test_counts():
    assert refused(model="MiniMax-H3", prompt="p",
                   reference_images=[URL] * 10).field == "reference_images"
    assert refused(model="MiniMax-H3", prompt="p",
                   reference_videos=["https://x/v.mp4"] * 4).field == "reference_videos"
    assert refused(model="MiniMax-H3", prompt="p", reference_images=[URL],
                   reference_audios=["https://x/a.mp3"] * 4).field == "reference_audios"
    error = refused(model="MiniMax-H3", prompt="p", reference_images=[URL] * 9,
                    reference_videos=["https://x/v.mp4"] * 3, reference_audios=["https://a"])
    assert "12" in error.message


def test_other_fields_and_prompt():
    assert refused(model="MiniMax-H3", ratio="1:1").field == "prompt"
    assert refused(model="MiniMax-H3", prompt="  ", first_frame_image=URL).field == "prompt"
    assert refused(model="MiniMax-H3", prompt="p", ratio="1:1",
                   fast_pretreatment=True).field == "fast_pretreatment"
    assert refused(model="MiniMax-H3", prompt="p", ratio="1:1",
                   subject_reference=URL).field == "subject_reference"
    assert refused(model="MiniMax-H3-Max", prompt="p", ratio="1:1",
                   watermark=True).field == "watermark"
    long = VideoRequest(model="MiniMax-H3", prompt="x" * 7000, ratio="1:1")
    assert long.validate_for("minimax").prompt == "x" * 7000
    with pytest.raises(ValueError, match="7000"):
        VideoRequest(model="MiniMax-H3", prompt="x" * 7001, ratio="1:1")
    with pytest.raises(ValueError, match="2000"):  # legacy models keep their limit
        VideoRequest(model="MiniMax-Hailuo-02", prompt="x" * 2001)


def test_apimart_refuses_h3_naming_minimax():
    for model in ("MiniMax-H3", "MiniMax-H3-Max"):
        error = refused("apimart", model=model, prompt="p", ratio="16:9")
        assert error.field == "model"
        assert "provider=\"minimax\"" in error.message and "MiniMax's own API" in error.message
    sent = []
    client = HailuoClient("apimart", api_key=KEY, base_url="http://never.invalid",
                          transport=httpx.MockTransport(lambda r: sent.append(r)))
    with pytest.raises(InvalidRequestError):
        client.submit(VideoRequest(model="MiniMax-H3", prompt="p", ratio="16:9"))
    assert sent == []
    with pytest.raises(InvalidRequestError):
        pricing.estimate(VideoRequest(model="MiniMax-H3", prompt="p", ratio="16:9"), "apimart")


def test_legacy_models_refuse_h3_fields_and_are_unchanged():
    for name, value in (("ratio", "16:9"), ("reference_images", [URL]),
                        ("reference_videos", ["https://x/v.mp4"]),
                        ("reference_audios", ["https://x/a.wav"])):
        for provider in ("apimart", "minimax"):
            error = refused(provider, model="MiniMax-Hailuo-02", prompt="p", **{name: value})
            assert error.field == name and "MiniMax-H3" in error.message
    assert refused("minimax", model="MiniMax-Hailuo-02", prompt="p",
                   last_frame_image=URL).field == "first_frame_image"
    assert "MiniMax-H3" not in models_for("minimax")  # the legacy table stays legacy
    legacy = VideoRequest(prompt="p")
    assert "ratio" not in str(request_fingerprint(legacy, "apimart"))
    assert request_fingerprint(legacy, "apimart") == request_fingerprint(
        VideoRequest(prompt="p", reference_images=()), "apimart")


# -- media limits ---------------------------------------------------------------------------
def test_image_limits_name_the_field(tmp_path):
    ok = make_png(tmp_path / "ok.png", (256, 256))
    assert check_media(str(ok), field="first_frame_image").width == 256
    small = make_png(tmp_path / "small.png", (255, 400))
    wide = make_png(tmp_path / "wide.png", (1300, 500))
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"GIF89a" + b"\0" * 100)
    for path, words in ((small, "at least 256"), (wide, "0.4..2.5"), (fake, "GIF")):
        with pytest.raises(errors.InvalidImageError) as info:
            check_media(str(path), field="reference_images", index=2)
        assert info.value.field == "reference_images" and words in info.value.message
        assert "reference_images[2]" in info.value.message
    client = HailuoClient("minimax", api_key=KEY, base_url="http://never.invalid",
                          transport=httpx.MockTransport(lambda r: pytest.fail("sent")))
    with pytest.raises(errors.InvalidImageError) as info:
        client.prepare(VideoRequest(model="MiniMax-H3", prompt="p",
                                    reference_images=[str(ok), str(wide)]))
    assert info.value.field == "reference_images"


def test_video_and_audio_limits(tmp_path):
    good = check_media(str(mp4(tmp_path / "v.mp4")), field="reference_videos")
    assert good.format == "mp4" and 2.4 < good.seconds < 2.6
    short = mp4(tmp_path / "short.mp4", seconds=1.0)
    small = mp4(tmp_path / "small.mp4", size=(200, 256))
    slow = mp4(tmp_path / "slow.mp4", fps=12)
    for path, words in ((short, "at least 2"), (small, "at least 256"), (slow, "fps")):
        with pytest.raises(InvalidRequestError) as info:
            check_media(str(path), field="reference_videos")
        assert info.value.field == "reference_videos" and words in info.value.message, \
            info.value.message
    audio = check_media(str(wav(tmp_path / "a.wav")), field="reference_audios")
    assert audio.format == "wav" and 2.4 < audio.seconds < 2.6
    with pytest.raises(InvalidRequestError) as info:
        check_media(str(wav(tmp_path / "long.wav", seconds=16)), field="reference_audios")
    assert info.value.field == "reference_audios"
    with pytest.raises(InvalidRequestError) as info:  # a video given as audio
        check_media(str(tmp_path / "v.mp4"), field="reference_audios")
    assert info.value.field == "reference_audios"
    # 15 s in total across the references
    client = HailuoClient("minimax", api_key=KEY, base_url="http://never.invalid",
                          transport=httpx.MockTransport(lambda r: pytest.fail("sent")))
    eight = str(mp4(tmp_path / "eight.mp4", seconds=8))
    with pytest.raises(InvalidRequestError) as info:
        client.prepare(VideoRequest(model="MiniMax-H3", prompt="p",
                                    reference_videos=[eight, eight]))
    assert info.value.field == "reference_videos" and "15" in info.value.message


# -- the v2 wire format ---------------------------------------------------------------------
def test_v2_body_roles_and_routing(tmp_path):
    assert v2_dialect_for("minimax", "MiniMax-H3") is V2_DIALECT
    assert v2_dialect_for("minimax", "MiniMax-Hailuo-02") is None
    assert v2_dialect_for("apimart", "MiniMax-H3") is None
    image = str(textured_png(tmp_path / "f.png"))
    client = HailuoClient("minimax", api_key=KEY, base_url="http://never.invalid")
    _, body = client.prepare(VideoRequest(model="MiniMax-H3", prompt="go", resolution="2k",
                                          duration=8, first_frame_image=image,
                                          last_frame_image=URL))
    assert body["resolution"] == "2K" and body["duration"] == 8 and body["ratio"] == "adaptive"
    assert body["content"][0] == {"type": "text", "text": "go"}
    assert body["content"][1]["role"] == "first_frame"
    assert body["content"][1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert body["content"][2] == {"type": "image_url", "image_url": {"url": URL},
                                  "role": "last_frame"}
    for absent in ("prompt", "prompt_optimizer", "fast_pretreatment", "first_frame_image",
                   "aigc_watermark", "seed"):
        assert absent not in body
    _, refs = client.prepare(VideoRequest(
        model="MiniMax-H3-Max", prompt="go", reference_images=[URL, "mm_file://123"],
        reference_videos=["https://x/v.mp4"], reference_audios=["https://x/a.mp3"],
        prompt_optimizer=False))
    assert [(c["type"], c.get("role")) for c in refs["content"]] == [
        ("text", None), ("image_url", "reference_image"), ("image_url", "reference_image"),
        ("video_url", "reference_video"), ("audio_url", "reference_audio")]
    assert refs["extra"] == {"prompt_expansion_mode": "disabled"}


def test_big_local_media_are_uploaded_not_inlined(tmp_path, monkeypatch):
    import hailuo.v2client as v2c

    monkeypatch.setattr(v2c, "H3_MAX_BODY_BYTES", 100_000)  # so small files overflow it
    monkeypatch.setattr(v2c, "BODY_MARGIN", 0)
    big = textured_png(tmp_path / "big.png", (1600, 900), seed=3)
    small = make_png(tmp_path / "small.png", (300, 300))
    assert big.stat().st_size > 60_000 > small.stat().st_size
    client = HailuoClient("minimax", api_key=KEY, base_url="http://never.invalid")
    _, body = client.prepare(VideoRequest(model="MiniMax-H3", prompt="p",
                                          reference_images=[str(small), str(big)]))
    urls = [c["image_url"]["url"] for c in body["content"][1:]]
    assert urls[0].startswith("data:image/png;base64,")
    assert urls[1].startswith("upload:sha256:")


def test_status_path_and_answers():
    path, params = V2_DIALECT.status_call("424010985738629")
    assert path == "/v2/query/video_generation/424010985738629" and params == {}
    assert V2_DIALECT.status_call("a/b")[0].endswith("/a%2Fb")  # escaped, never a new segment
    done = V2_DIALECT.parse_status("1", 200, {"task": {
        "id": "1", "model": "MiniMax-H3", "status": "succeeded", "created_at": 1785125529,
        "content": {"url": "https://cdn/x.mp4"}}}, None)
    assert done.status is JobStatus.COMPLETED and done.video_urls == ["https://cdn/x.mp4"]
    assert done.model == "MiniMax-H3"
    failed = V2_DIALECT.parse_status("1", 200, {"task": {
        "id": "1", "status": "failed", "error": {"code": "1026", "message": "sensitive"}}}, None)
    assert failed.status is JobStatus.FAILED and failed.error_code == 1026
    for word, status in (("queued", JobStatus.QUEUED), ("running", JobStatus.PROCESSING),
                         ("cancelled", JobStatus.CANCELLED), ("Succeeded", JobStatus.COMPLETED),
                         ("expired", JobStatus.FAILED)):
        job = V2_DIALECT.parse_status("1", 200, {"task": {"id": "1", "status": word}}, None,
                                      lenient=True)
        assert job.status is status
    # the ?task_id= pitfall: a list answer is never read as the task
    with pytest.raises(errors.UnreadableAnswerError, match="LIST"):
        V2_DIALECT.parse_status("1", 200, {"items": [{"id": "9", "status": "succeeded"}],
                                           "total": 1}, None)


@pytest.mark.parametrize("status,message,kind,cls,code", [
    (400, "invalid params, content must include a non-empty text item (2013)",
     "bad_request_error", errors.InvalidRequestError, 2013),
    (400, "invalid params, TokenPlan or Credit does not support H3 (2013)",
     "bad_request_error", PlanKeyError, 2013),
    (401, "invalid api key (2049)", "authorized_error", errors.AuthenticationError, 2049),
    (402, "insufficient balance (1008)", "insufficient_balance_error",
     errors.InsufficientBalanceError, 1008),
    (422, "input new_sensitive (1026)", "unprocessable_entity_error",
     errors.ContentRejectedError, 1026),
    (429, "rate limit exceeded (1002)", "rate_limit_error", errors.RateLimitedError, 1002),
    (500, "unknown error (1000)", "server_error", errors.ProviderUnavailableError, 1000),
    (529, "overloaded", "overloaded_error", errors.ProviderUnavailableError, None),
])
def test_v2_errors(status, message, kind, cls, code):
    body = {"type": "error", "error": {"type": kind, "message": message,
                                       "http_code": str(status)}, "request_id": "r"}
    with pytest.raises(cls) as info:
        raise_for_error(status, body, None)
    assert type(info.value) is cls and info.value.code == code
    if cls is PlanKeyError:
        assert isinstance(info.value, errors.AuthenticationError)
        assert "pay-as-you-go" in info.value.message
    # a v1-style base_resp inside an HTTP 200 is an error too
    with pytest.raises(errors.InvalidRequestError):
        raise_for_error(200, {"base_resp": {"status_code": 2013, "status_msg": "bad"}}, None)


# -- sizes and the frame grid ---------------------------------------------------------------
def test_documented_sizes_and_the_rule():
    assert h3.frame_size("2k", "16:9") == (2560, 1440)
    assert h3.frame_size("768p", "16:9") == (1344, 768)
    assert h3.frame_size("768P", "9:16") == (768, 1344)
    for label, step, cap in (("480p", 16, 848 * 480), ("768p", 32, 1344 * 768),
                             ("2k", 32, 2560 * 1440)):
        for ratio in h3.CONCRETE_RATIOS:
            w, h = h3.frame_size(label, ratio)
            assert w % step == 0 and h % step == 0 and w * h <= cap, (label, ratio)
            assert abs(w / h - h3.ratio_value(ratio)) / h3.ratio_value(ratio) < 0.03
        if label == "768p":  # the regeneration spec's area range
            assert all(589_824 <= w * h <= 1_032_192 for w, h in
                       (h3.frame_size(label, r) for r in h3.CONCRETE_RATIOS))
    assert h3.nearest_ratio(1920, 1080) == "16:9" and h3.nearest_ratio(1000, 1300) == "3:4"


def test_frame_grid():
    assert [h3.frame_count(d) for d in (4, 5, 10, 15)] == [107, 124, 243, 362]
    for duration in range(4, 16):
        frames = h3.frame_count(duration)
        assert (frames - 5) % 17 == 0 and duration * 24 <= frames < duration * 24 + 17
        assert h3.output_seconds(duration) >= duration


# -- prices ---------------------------------------------------------------------------------
@pytest.mark.parametrize("model,resolution,duration,usd", [
    ("MiniMax-H3", "768p", 10, "0.80"), ("MiniMax-H3", "2k", 10, "1.30"),
    ("MiniMax-H3", "768p", 4, "0.32"), ("MiniMax-H3-Max", "480p", 5, "0.25"),
    ("MiniMax-H3-Max", "768p", 15, "1.20"),
])
def test_output_prices_bill_the_requested_duration(model, resolution, duration, usd):
    request = VideoRequest(model=model, prompt="p", ratio="16:9", resolution=resolution,
                           duration=duration)
    quote = pricing.quote(request, "minimax")
    assert quote.usd == Decimal(usd)
    assert "api-contract-v2.md 1.11" in quote.basis and "2026-11" in quote.basis
    assert pricing.estimate(request, "minimax") == Decimal(usd)


def test_input_prices(tmp_path):
    refs = [f"https://x/{i}.png" for i in range(7)]
    h3_images = VideoRequest(model="MiniMax-H3", prompt="p", reference_images=refs,
                             duration=5)
    assert pricing.estimate(h3_images, "minimax") == Decimal("0.40") + 2 * Decimal("0.04")
    frames = VideoRequest(model="MiniMax-H3", prompt="p", first_frame_image=URL,
                          last_frame_image=URL)
    assert pricing.estimate(frames, "minimax") == Decimal("0.40")  # 2 of 5 free images
    max_images = VideoRequest(model="MiniMax-H3-Max", prompt="p", first_frame_image=URL,
                              last_frame_image=URL, resolution="480p")
    assert pricing.estimate(max_images, "minimax") == Decimal("0.25")
    three = VideoRequest(model="MiniMax-H3-Max", prompt="p", reference_images=refs[:3])
    assert pricing.estimate(three, "minimax") == Decimal("0.40") + Decimal("0.074")
    # reference video seconds: measured locally, rounded up, at the output rate (H3)
    video = str(mp4(tmp_path / "v.mp4", seconds=2.5))
    local = VideoRequest(model="MiniMax-H3", prompt="p", reference_videos=[video],
                         resolution="2k", duration=5)
    assert pricing.estimate(local, "minimax") == Decimal("0.65") + 3 * Decimal("0.13")
    # a URL's length is unknown: priced as the 15 s maximum, never below the real price
    remote = VideoRequest(model="MiniMax-H3", prompt="p",
                          reference_videos=["https://x/v.mp4"], duration=5)
    assert pricing.estimate(remote, "minimax") == Decimal("0.40") + 15 * Decimal("0.08")
    # H3-Max input video has its own rate
    max_video = VideoRequest(model="MiniMax-H3-Max", prompt="p", reference_videos=[video],
                             resolution="768p", duration=5)
    assert pricing.estimate(max_video, "minimax") == Decimal("0.40") + 3 * Decimal("0.143")
    # input audio is free
    audio = VideoRequest(model="MiniMax-H3", prompt="p", reference_images=[URL],
                         reference_audios=[str(wav(tmp_path / "a.wav"))])
    assert pricing.estimate(audio, "minimax") == Decimal("0.40")


def test_h3_price_rows_name_source_and_date():
    for row in pricing.H3_PRICES:
        assert row.source and len(row.checked) == 7
    for row in pricing.H3_INPUT_PRICES:
        assert row.source and len(row.checked) == 7


def test_cli_flags(tmp_path, capsys):
    from prefect_hailuo.cli import build_parser, generate_request, main

    image = str(textured_png(tmp_path / "r.png"))
    args = build_parser().parse_args([
        "generate", "a dancer", "--model", "MiniMax-H3", "--provider", "minimax",
        "--reference-image", image, "--reference-image", URL,
        "--reference-video", "https://x/v.mp4", "--reference-audio", "https://x/a.mp3",
        "--ratio", "9:16", "--resolution", "2k", "--duration", "6"])
    request = generate_request(args)
    assert request.reference_images == (image, URL) and request.ratio == "9:16"
    assert request.reference_videos == ("https://x/v.mp4",)
    args = build_parser().parse_args(["generate", "p", "--model", "MiniMax-H3", "--provider",
                                      "minimax", "--last-frame", URL])
    assert generate_request(args).last_frame_image == URL  # last frame alone is fine on H3
    args = build_parser().parse_args(["generate", "p", "--model", "MiniMax-H3",
                                      "--provider", "apimart", "--ratio", "16:9"])
    with pytest.raises(InvalidRequestError, match="provider minimax"):
        generate_request(args)
    assert main(["estimate", "--model", "MiniMax-H3", "--resolution", "2k", "--duration",
                 "10", "--json"]) == 0
    out = capsys.readouterr().out
    assert '"usd": "1.3000"' in out and '"provider": "minimax"' in out
