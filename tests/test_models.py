"""The capability table's rules, the request model and the price table."""

from __future__ import annotations

from decimal import Decimal

import pytest

from hailuo import pricing
from hailuo.capabilities import CAPABILITIES, Mode, Provider, lookup
from hailuo.errors import InvalidRequestError
from hailuo.fingerprint import request_fingerprint
from hailuo.models import JobStatus, VideoRequest, parse_status
from tests.conftest import make_png

URL = "https://img.example/a.png"


@pytest.mark.parametrize("provider,model,res,dur", [
    ("apimart", "MiniMax-Hailuo-02", "512p", 10),
    ("apimart", "MiniMax-Hailuo-02", "1080p", 5),
    ("apimart", "MiniMax-Hailuo-2.3", "768p", 10),
    ("minimax", "MiniMax-Hailuo-02", "768p", 10),
    ("minimax", "MiniMax-Hailuo-2.3", "1080p", 6),
])
def test_allowed_text_to_video_combinations(provider, model, res, dur):
    out = VideoRequest(model=model, prompt="p", resolution=res, duration=dur).validate_for(provider)
    assert (out.resolution, out.duration) == (res, dur)


def test_defaults_filled_per_provider():
    req = VideoRequest(prompt="p")
    assert req.validate_for("apimart").duration == 5
    assert req.validate_for("minimax").duration == 6
    assert req.validate_for("apimart").resolution == "768p"
    v23 = VideoRequest(model="MiniMax-Hailuo-2.3", prompt="p")
    assert v23.validate_for("apimart").duration == 6


def test_1080p_allows_only_the_shortest_duration_and_names_alternatives():
    with pytest.raises(InvalidRequestError, match="use resolution") as info:
        VideoRequest(prompt="p", resolution="1080p", duration=10).validate_for("minimax")
    assert info.value.field == "duration" and "768p" in str(info.value)


def test_hailuo02_512p_is_image_to_video_only_on_minimax():
    with pytest.raises(InvalidRequestError) as info:
        VideoRequest(prompt="p", resolution="512P").validate_for("minimax")
    assert info.value.field == "resolution" and "768p" in str(info.value)
    ok = VideoRequest(prompt="p", resolution="512p", first_frame_image=URL).validate_for("minimax")
    assert ok.resolution == "512p"


def test_fast_is_image_only_fl2v_02_only_s2v_minimax_only():
    with pytest.raises(InvalidRequestError, match="image-to-video only"):
        VideoRequest(model="MiniMax-Hailuo-2.3-Fast", prompt="p").validate_for("minimax")
    with pytest.raises(InvalidRequestError, match="MiniMax-Hailuo-02"):
        VideoRequest(model="MiniMax-Hailuo-2.3", first_frame_image=URL,
                     last_frame_image=URL).validate_for("apimart")
    with pytest.raises(InvalidRequestError) as info:
        VideoRequest(model="S2V-01", prompt="p", subject_reference=URL).validate_for("apimart")
    assert info.value.field == "model"
    s2v = VideoRequest(model="S2V-01", prompt="p", subject_reference=URL).validate_for("minimax")
    assert s2v.mode is Mode.SUBJECT_REFERENCE and s2v.resolution is None


def test_resolution_spellings_normalised():
    assert VideoRequest(prompt="p", resolution="1080P").resolution == "1080p"
    assert VideoRequest(prompt="p", resolution=768).resolution == "768p"


def test_table_is_consistent():
    for cap in CAPABILITIES:
        if cap.options:
            assert cap.default_resolution in cap.options
            assert cap.default_duration in cap.options[cap.default_resolution]
            assert max(cap.options["1080p"]) == min(cap.durations), cap  # shortest only
    assert lookup(Provider.APIMART, "S2V-01", Mode.SUBJECT_REFERENCE) is None


@pytest.mark.parametrize("word,status", [("Fail", JobStatus.FAILED), ("Success",
                         JobStatus.COMPLETED), ("Queueing", JobStatus.QUEUED),
                         ("submitted", JobStatus.QUEUED), ("canceled", JobStatus.CANCELLED)])
def test_status_synonyms(word, status):
    assert parse_status(word) is status


def test_prices():
    assert pricing.estimate(VideoRequest(prompt="p", resolution="1080p"), "apimart") == \
        Decimal("0.40")
    assert pricing.estimate(VideoRequest(prompt="p", duration=10), "minimax") == Decimal("0.56")
    quote = pricing.quote(VideoRequest(prompt="p", resolution="512p"), "apimart")
    assert "assumed" in quote.basis


def test_price_rows_name_their_source_and_date():
    for row in pricing.PRICES:
        assert row.source and len(row.checked) == 7, row


@pytest.mark.parametrize("model,resolution,duration,provider,at_least", [
    # published MiniMax prices the old table undercut (0.48, 0.40 and 0.24 before)
    ("MiniMax-Hailuo-2.3", "1080p", 6, "minimax", "0.49"),
    ("MiniMax-Hailuo-02", "512p", 10, "minimax", "0.56"),
    ("MiniMax-Hailuo-2.3", "768p", 6, "minimax", "0.28"),
    ("MiniMax-Hailuo-2.3", "1080p", 6, "apimart", "0.48"),
])
def test_estimates_never_undercut_a_published_price(model, resolution, duration, provider,
                                                     at_least, tmp_path):
    image = None if (model, resolution) == ("MiniMax-Hailuo-02", "1080p") else str(
        make_png(tmp_path / "f.png"))
    request = VideoRequest(model=model, prompt="p", resolution=resolution, duration=duration,
                           first_frame_image=image)
    assert pricing.estimate(request, provider) >= Decimal(at_least)


def test_every_capability_gets_a_priced_estimate_with_its_basis():
    from hailuo.capabilities import CAPABILITIES, Mode

    images = {Mode.TEXT_TO_VIDEO: {}, Mode.IMAGE_TO_VIDEO: {"first_frame_image": "https://x/a"},
              Mode.FIRST_LAST_FRAME: {"first_frame_image": "https://x/a",
                                      "last_frame_image": "https://x/b"},
              Mode.SUBJECT_REFERENCE: {"subject_reference": "https://x/s"}}
    for cap in CAPABILITIES:
        for resolution, durations in (cap.options or {None: (None,)}).items():
            for duration in durations:
                request = VideoRequest(model=cap.model, prompt="p", resolution=resolution,
                                       duration=duration, **images[cap.mode])
                quote = pricing.quote(request, cap.provider)
                assert quote.usd > 0 and quote.basis, (cap, resolution, duration)


def test_fingerprint_uses_image_content_not_path(tmp_path):
    a = make_png(tmp_path / "a.png")
    b = tmp_path / "copy.png"
    b.write_bytes(a.read_bytes())
    fa = request_fingerprint(VideoRequest(prompt="p", first_frame_image=str(a)), "apimart")
    fb = request_fingerprint(VideoRequest(prompt="p", first_frame_image=str(b)), "apimart")
    assert fa == fb
    assert fa != request_fingerprint(VideoRequest(prompt="p", first_frame_image=str(a)),
                                     "apimart", take=2)
    assert fa != request_fingerprint(VideoRequest(prompt="p", first_frame_image=str(a)),
                                     "minimax")
