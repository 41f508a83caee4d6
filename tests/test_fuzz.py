"""Fuzzed requests (hypothesis): every invalid one is rejected locally, naming a field, with
zero requests sent; every valid one is accepted by the simulator standing in for the
provider (whose own validation is independent of ours: it parses the wire dialect)."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hailuo.capabilities import models_for
from hailuo.client import HailuoClient
from hailuo.errors import InvalidRequestError
from hailuo.models import VideoRequest
from hailuo.simulator import run_simulator
from tests.conftest import make_png

FIELDS = {"model", "prompt", "duration", "resolution", "first_frame_image", "last_frame_image",
          "subject_reference"}
MODELS = sorted({*models_for("apimart"), *models_for("minimax"), "Sora-2", "minimax-hailuo-02"})
CAMERA = ["[Pan left]", "[zoom IN]", "[Pan left, Pedestal up]", "[Slow zoom in]",
          "[Push in, Pull out, Shake, Static shot]", "[]", "[Tracking shot"]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz-images")
    bad = root / "fake.png"
    bad.write_bytes(b"GIF89a" + b"\0" * 100)
    return {
        "ok": str(make_png(root / "ok.png", (640, 360))),
        "portrait": str(make_png(root / "portrait.png", (400, 720), (20, 200, 90))),
        "small": str(make_png(root / "small.png", (300, 420))),
        "wide": str(make_png(root / "wide.png", (1300, 500))),
        "bad": str(bad),
        "missing": str(root / "nope.png"),
    }


@pytest.fixture(scope="module")
def sim():
    with run_simulator(render_seconds=0.1, cheap=True) as handle:
        yield handle


def requests(images: dict[str, str], provider: str):
    """Biased towards almost-valid requests, so both outcomes are well exercised."""
    ok = [images["ok"], images["portrait"]]
    image = st.one_of(st.none(), st.none(), st.sampled_from(ok),
                      st.sampled_from(sorted(images.values())))
    prompt = st.one_of(
        st.builds(lambda cam, text: f"{cam} a {text} scene".strip(),
                  st.sampled_from(["", "", "[Pan left]", *CAMERA]),
                  st.text(st.characters(blacklist_characters="[]", codec="utf-8"),
                          max_size=40)),
        st.builds(lambda cam, text: f"{cam} a {text} scene".strip(),
                  st.sampled_from(["", "", "[Pan left]", *CAMERA]),
                  st.text(st.characters(blacklist_characters="[]", codec="utf-8"),
                          max_size=40)),
        st.none(),
        st.just("x" * 2001),
        st.text(max_size=30),
    )
    return st.fixed_dictionaries({
        "model": st.one_of(st.sampled_from(models_for(provider)),
                           st.sampled_from(models_for(provider)), st.sampled_from(MODELS)),
        "prompt": prompt,
        "duration": st.one_of(st.none(), st.sampled_from([5, 6, 10]),
                              st.integers(min_value=0, max_value=12)),
        "resolution": st.one_of(st.none(), st.sampled_from(["768p", "1080P", "512p"]),
                                st.sampled_from(["720p", "360p", "4k"])),
        "first_frame_image": image,
        "last_frame_image": st.one_of(st.none(), st.none(), image),
        "subject_reference": st.one_of(st.none(), st.none(), st.none(), image),
    })


@pytest.mark.parametrize("provider", ["apimart", "minimax"])
def test_fuzzed_requests(provider, images, sim):
    seen = {"valid": 0, "invalid": 0}
    sent: list[httpx.Request] = []

    def offline(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(500)

    local = HailuoClient(provider, api_key="fuzz-key", base_url="http://never.invalid",
                         transport=httpx.MockTransport(offline), max_retries=0)
    real = HailuoClient(provider, api_key="fuzz-key", base_url=sim.base_url)

    @settings(max_examples=100, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(requests(images, provider))
    def check(fields):
        try:
            request = VideoRequest(**fields)
        except ValueError as exc:  # pydantic: prompt over 2000 characters
            assert "prompt" in str(exc)
            seen["invalid"] += 1
            return
        try:
            local.prepare(request)
        except InvalidRequestError as exc:
            assert exc.field in FIELDS, exc
            with pytest.raises(InvalidRequestError):
                local.submit(request)
            assert sent == [], "an invalid request reached the network"
            seen["invalid"] += 1
            return
        job = real.submit(request)  # the simulator validates the wire body on its own
        assert job.task_id
        seen["valid"] += 1

    check()
    print(f"\n{provider}: {seen['valid']} valid accepted, {seen['invalid']} invalid rejected "
          "locally with zero requests")
    assert seen["valid"] >= 5 and seen["invalid"] >= 20


def valid_requests(images: dict[str, str], provider: str):
    """Built from the capability table: every draw is a request the provider must accept."""
    from hailuo.capabilities import CAPABILITIES, Mode

    rows = [c for c in CAPABILITIES if c.provider == provider]

    @st.composite
    def build(draw):
        cap = draw(st.sampled_from(rows))
        fields: dict = {"model": cap.model}
        if cap.options:
            resolution = draw(st.sampled_from(cap.resolutions))
            fields["resolution"] = draw(st.sampled_from([resolution, resolution.upper()]))
            fields["duration"] = draw(st.sampled_from(cap.options[resolution]))
        text = draw(st.text(st.characters(blacklist_characters="[]", codec="utf-8"),
                            min_size=1, max_size=80).filter(str.strip))
        camera = draw(st.sampled_from(["", "[Pan left] ", "[zoom in, PEDESTAL up] "]))
        fields["prompt"] = camera + text
        ok = st.sampled_from([images["ok"], images["portrait"]])
        if cap.mode in (Mode.IMAGE_TO_VIDEO, Mode.FIRST_LAST_FRAME):
            fields["first_frame_image"] = draw(ok)
        if cap.mode is Mode.FIRST_LAST_FRAME:
            fields["last_frame_image"] = draw(ok)
        if cap.mode is Mode.SUBJECT_REFERENCE:
            fields["subject_reference"] = draw(ok)
        return VideoRequest(**fields)

    return build()


@pytest.mark.parametrize("provider", ["apimart", "minimax"])
def test_every_valid_request_is_accepted_by_the_provider(provider, images, sim):
    client = HailuoClient(provider, api_key="fuzz-key", base_url=sim.base_url)
    accepted = []

    @settings(max_examples=40, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(valid_requests(images, provider))
    def check(request):
        accepted.append(client.submit(request).task_id)

    check()
    assert len(set(accepted)) == len(accepted) >= 20
