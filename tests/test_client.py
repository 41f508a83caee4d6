"""HailuoClient against replayed provider answers (httpx.MockTransport): every documented
shape of both providers, the money-safety rules of submit, waiting, and downloads."""

from __future__ import annotations

import json
import pickle
import tracemalloc
from collections.abc import Callable

import httpx
import pytest

from hailuo import errors
from hailuo.client import HailuoClient, PollPolicy
from hailuo.models import Job, JobStatus, VideoRequest
from tests.conftest import make_png

KEY = "sk-test-DISTINCTIVE-0123456789"


class Recorder:
    """A MockTransport handler that records every request and answers from a script."""

    def __init__(self, handler: Callable[[httpx.Request], httpx.Response]) -> None:
        self.handler = handler
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request)

    def posts(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == "POST"]


def make_client(provider: str, handler, download_handler=None, sleeps=None, **kw) -> HailuoClient:
    sleeps = sleeps if sleeps is not None else []
    return HailuoClient(
        provider, api_key=KEY, base_url="https://api.example.test",
        transport=httpx.MockTransport(handler),
        download_transport=httpx.MockTransport(download_handler or (lambda r: httpx.Response(404))),
        sleep=sleeps.append, backoff=0.01, **kw,
    )


T2V = VideoRequest(prompt="[Pan left] a lighthouse at dusk, waves, cinematic")


# ------------------------------------------------------------------ APIMart shapes
@pytest.mark.parametrize("shape", [
    {"code": 200, "data": [{"status": "submitted", "task_id": "task_01ABC"}]},
    {"code": 200, "data": {"id": "task_01ABC", "status": "pending", "progress": 0,
                           "task_info": {"estimated_time": 42}}},
])
def test_apimart_submit_parses_both_documented_shapes(shape):
    rec = Recorder(lambda r: httpx.Response(200, json=shape))
    job = make_client("apimart", rec).submit(T2V)
    assert job.task_id == "task_01ABC"
    assert job.status is JobStatus.QUEUED
    body = json.loads(rec.posts()[0].content)
    assert body["resolution"] == "768p" and body["duration"] == 5
    assert body["watermark"] is False and "aigc_watermark" not in body
    assert rec.posts()[0].headers["Authorization"] == f"Bearer {KEY}"
    assert rec.posts()[0].headers["Idempotency-Key"].startswith("hailuo-")


def test_apimart_dialect_sends_webhook_and_lowercase():
    rec = Recorder(lambda r: httpx.Response(200, json={"code": 200, "data": [{"task_id": "t"}]}))
    make_client("apimart", rec).submit(VideoRequest(prompt="x y", resolution="1080P",
                                                    callback_url="https://cb.example/h"))
    body = json.loads(rec.posts()[0].content)
    assert body["resolution"] == "1080p" and body["webhook"] == "https://cb.example/h"


def test_minimax_dialect_uppercase_callback_and_subject_reference(tmp_path):
    rec = Recorder(lambda r: httpx.Response(
        200, json={"task_id": "1069", "base_resp": {"status_code": 0, "status_msg": "success"}}))
    img = make_png(tmp_path / "face.png")
    client = make_client("minimax", rec)
    job = client.submit(VideoRequest(prompt="a walk", watermark=True,
                                     callback_url="https://cb.example/h"))
    body = json.loads(rec.posts()[0].content)
    assert job.task_id == "1069"
    assert body["resolution"] == "768P" and body["duration"] == 6
    assert body["aigc_watermark"] is True and body["callback_url"] == "https://cb.example/h"
    assert "Idempotency-Key" not in rec.posts()[0].headers
    client.submit(VideoRequest(model="S2V-01", prompt="she waves", subject_reference=str(img)))
    body = json.loads(rec.posts()[1].content)
    assert body["subject_reference"][0]["type"] == "character"
    assert body["subject_reference"][0]["image"][0].startswith("data:image/png;base64,")
    assert "resolution" not in body and "duration" not in body


def _apimart_status(status: str, **data):
    return {"code": 200, "data": {"id": "task_1", "status": status, **data}}


@pytest.mark.parametrize("word", ["completed", "Completed", "SUCCESS", "success"])
def test_apimart_status_completed_spellings_and_url_array(word):
    body = _apimart_status(word, progress=100, result={"videos": [
        {"url": ["https://cdn.test/a.mp4", "https://cdn.test/b.mp4"], "expires_at": 4102444800}]},
        cost=0.2)
    job = make_client("apimart", lambda r: httpx.Response(200, json=body)).status("task_1")
    assert job.status is JobStatus.COMPLETED
    assert job.video_urls == ["https://cdn.test/a.mp4", "https://cdn.test/b.mp4"]
    assert job.expires_at.year == 2100 and job.cost == 0.2


@pytest.mark.parametrize("word", ["failed", "Fail", "FAILED"])
def test_apimart_failed_task_raises_typed_error_on_wait(word):
    body = _apimart_status(word, error={"code": 1026, "message": "content policy",
                                        "type": "content_error"})
    with pytest.raises(errors.ContentRejectedError) as info:
        make_client("apimart", lambda r: httpx.Response(200, json=body)).wait("task_1")
    assert info.value.task_id == "task_1" and info.value.code == 1026
    assert not info.value.retryable


def test_apimart_cancelled_ends_wait():
    body = _apimart_status("cancelled")
    with pytest.raises(errors.GenerationFailedError):
        make_client("apimart", lambda r: httpx.Response(200, json=body)).wait("task_1")


@pytest.mark.parametrize("status,body,expected", [
    (401, {"error": {"code": 401, "message": "Invalid API key", "type": "authentication_error"}},
     errors.AuthenticationError),
    (402, {"error": {"code": 402, "message": "Insufficient balance", "type": "payment_required"}},
     errors.InsufficientBalanceError),
    (400, {"error": {"code": 400, "message": "bad resolution", "type": "invalid_request_error"}},
     errors.InvalidRequestError),
])
def test_apimart_error_bodies_map_to_types(status, body, expected):
    rec = Recorder(lambda r: httpx.Response(status, json=body))
    with pytest.raises(expected):
        make_client("apimart", rec).submit(T2V)
    assert len(rec.posts()) == 1


# ------------------------------------------------------------------ MiniMax shapes
@pytest.mark.parametrize("code,expected", [
    (1004, errors.AuthenticationError), (2049, errors.AuthenticationError),
    (1008, errors.InsufficientBalanceError), (1026, errors.ContentRejectedError),
    (2013, errors.InvalidRequestError), (2056, errors.InsufficientBalanceError),
])
def test_minimax_errors_inside_http_200(code, expected):
    rec = Recorder(lambda r: httpx.Response(
        200, json={"task_id": "", "base_resp": {"status_code": code, "status_msg": "nope"}}))
    with pytest.raises(expected) as info:
        make_client("minimax", rec).submit(T2V)
    assert info.value.code == code and len(rec.posts()) == 1


def minimax_handler(statuses: list[str], fail_code: int = 0, backup: bool = True):
    seq = iter(statuses)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/video_generation":
            return httpx.Response(200, json={"task_id": "77", "base_resp": {"status_code": 0}})
        if request.url.path == "/v1/query/video_generation":
            status = next(seq)
            body = {"task_id": "77", "status": status,
                    "base_resp": {"status_code": fail_code if status.lower().startswith("fail")
                                  else 0, "status_msg": "x"}}
            if status == "Success":
                body.update(file_id="f1", video_width=1366, video_height=768)
            return httpx.Response(200, json=body)
        if request.url.path == "/v1/files/retrieve":
            file = {"file_id": "f1", "bytes": 0, "download_url": "https://cdn.test/main.mp4"}
            if backup:
                file["backup_download_url"] = "https://cdn.test/backup.mp4"
            return httpx.Response(200, json={"file": file, "base_resp": {"status_code": 0}})
        return httpx.Response(404)
    return handler


def test_minimax_query_then_files_retrieve_with_backup():
    client = make_client("minimax", minimax_handler(["Preparing", "Queueing", "Processing",
                                                     "Success"]))
    updates: list[Job] = []
    job = client.wait("77", on_update=updates.append)
    assert [u.status for u in updates] == [JobStatus.QUEUED, JobStatus.QUEUED,
                                           JobStatus.PROCESSING, JobStatus.COMPLETED]
    assert job.video_urls == ["https://cdn.test/main.mp4", "https://cdn.test/backup.mp4"]
    assert job.width == 1366


@pytest.mark.parametrize("word,code,expected", [
    ("Fail", 1027, errors.ContentRejectedError), ("failed", 1000, errors.GenerationFailedError)])
def test_minimax_fail_spellings(word, code, expected):
    client = make_client("minimax", minimax_handler(["Processing", word], fail_code=code))
    with pytest.raises(expected) as info:
        client.wait("77")
    assert info.value.code == code and info.value.task_id == "77"


# ------------------------------------------------------------------ submit safety
def test_dropped_connection_after_submit_is_not_resent_without_idempotency():
    def handler(request):
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
    rec = Recorder(handler)
    with pytest.raises(errors.AmbiguousSubmitError) as info:
        make_client("minimax", rec).submit(T2V)
    assert len(rec.posts()) == 1, "a second POST would risk paying twice"
    assert info.value.details["request_fingerprint"]
    assert not info.value.retryable


def test_dropped_connection_resent_with_the_same_key_when_the_model_schema_confirms_it():
    calls = []
    schema_calls = []

    def handler(request):
        if request.url.path == "/v1/model-schema":
            schema_calls.append(dict(request.url.params))
            return httpx.Response(200, json={"model": "MiniMax-Hailuo-02",
                                             "operation": "video_generation",
                                             "input_schema": {}, "idempotency": True})
        calls.append((request.headers["Idempotency-Key"], request.content))
        if len(calls) == 1:
            raise httpx.ReadError("connection reset")
        return httpx.Response(200, json={"code": 200, "data": [{"task_id": "task_9"}]})
    job = make_client("apimart", handler).submit(T2V)
    assert job.task_id == "task_9" and len(calls) == 2 and calls[0] == calls[1]
    assert job.idempotency_key == calls[0][0]
    assert schema_calls == [{"model": "MiniMax-Hailuo-02", "operation": "video_generation"}]


def test_minimax_submit_5xx_without_code_is_ambiguous_not_retried():
    rec = Recorder(lambda r: httpx.Response(502, text="bad gateway"))
    with pytest.raises(errors.AmbiguousSubmitError):
        make_client("minimax", rec).submit(T2V)
    assert len(rec.posts()) == 1


def test_connect_error_is_retried_because_nothing_was_sent():
    state = {"n": 0}

    def handler(request):
        state["n"] += 1
        if state["n"] < 3:
            raise httpx.ConnectError("refused")
        return httpx.Response(200, json={"task_id": "5", "base_resp": {"status_code": 0}})
    assert make_client("minimax", handler).submit(T2V).task_id == "5"


def test_submit_rate_limit_before_acceptance_waits_retry_after_and_retries():
    answers = iter([
        httpx.Response(200, headers={"Retry-After": "7"},
                       json={"base_resp": {"status_code": 1002, "status_msg": "rate limit"}}),
        httpx.Response(200, json={"task_id": "8", "base_resp": {"status_code": 0}}),
    ])
    sleeps: list[float] = []
    rec = Recorder(lambda r: next(answers))
    job = make_client("minimax", rec, sleeps=sleeps).submit(T2V)
    assert job.task_id == "8" and len(rec.posts()) == 2 and sleeps == [7.0]


def test_polling_honours_429_retry_after():
    answers = iter([
        httpx.Response(429, headers={"Retry-After": "10"},
                       json={"error": {"code": 429, "message": "slow down"}}),
        httpx.Response(200, json=_apimart_status("completed", result={"videos": [
            {"url": ["https://cdn.test/a.mp4"]}]})),
    ])
    sleeps: list[float] = []
    job = make_client("apimart", lambda r: next(answers), sleeps=sleeps).status("task_1")
    assert job.status is JobStatus.COMPLETED and sleeps == [10.0]


def test_wait_gives_up_after_consecutive_failures_and_timeout_keeps_task_id():
    always_down = lambda r: httpx.Response(503, json={"error": {"code": 503, "message": "x"}})  # noqa: E731
    client = make_client("apimart", always_down, max_retries=0,
                         poll=PollPolicy(max_consecutive_failures=2))
    with pytest.raises(errors.ProviderUnavailableError):
        client.wait("task_1")
    pending = lambda r: httpx.Response(200, json=_apimart_status("pending"))  # noqa: E731
    with pytest.raises(errors.TimedOutError) as info:
        make_client("apimart", pending).wait("task_1", timeout=0)
    assert info.value.task_id == "task_1" and info.value.retryable


def test_adaptive_polling_first_look_near_estimate():
    policy = PollPolicy(min_interval=1, max_interval=30, growth=1.5)
    assert policy.next_delay(0, 60, 0) == 30  # capped, so progress stays visible
    assert policy.next_delay(30, 60, 0) == pytest.approx(27)
    assert policy.next_delay(58, 60, 0) == 1
    assert policy.next_delay(58, 60, 2) == pytest.approx(2.25)
    assert policy.next_delay(0, None, 20) == 30


# ------------------------------------------------------------------ local rejection
@pytest.mark.parametrize("provider,kwargs,field", [
    ("apimart", {"prompt": "x", "resolution": "1080p", "duration": 10}, "duration"),
    ("apimart", {"prompt": "x", "resolution": "720p"}, "resolution"),
    ("apimart", {"prompt": "x", "duration": 6}, "duration"),
    ("minimax", {"prompt": "x", "duration": 5}, "duration"),
    ("minimax", {"prompt": "x", "resolution": "512p"}, "resolution"),
    ("apimart", {"prompt": "x", "model": "S2V-01", "subject_reference": "https://x/a.png"},
     "model"),
    ("minimax", {"prompt": "x", "model": "MiniMax-Hailuo-2.3-Fast"}, "first_frame_image"),
    ("minimax", {"prompt": "x", "model": "MiniMax-Hailuo-2.3",
                 "first_frame_image": "https://x/a.png", "last_frame_image": "https://x/b.png"},
     "last_frame_image"),
    ("apimart", {"prompt": "", }, "prompt"),
    ("apimart", {"prompt": "x", "model": "Sora"}, "model"),
    ("minimax", {"prompt": "x", "model": "T2V-01", "duration": 10}, "duration"),
    ("apimart", {"prompt": "x", "last_frame_image": "https://x/b.png"}, "first_frame_image"),
    ("apimart", {"prompt": "[Slow zoom in] a cup", }, "prompt"),
    ("apimart", {"prompt": "x", "first_frame_image": "s3://bucket/a.png"}, "first_frame_image"),
])
def test_invalid_requests_rejected_before_any_request(provider, kwargs, field):
    rec = Recorder(lambda r: httpx.Response(500))
    with pytest.raises(errors.InvalidRequestError) as info:
        make_client(provider, rec).submit(VideoRequest(**kwargs))
    assert info.value.field == field
    assert field in str(info.value) or field.split("_")[0] in str(info.value)
    assert rec.requests == []


def test_invalid_images_rejected_before_any_request(tmp_path):
    small = make_png(tmp_path / "small.png", (300, 300))
    wide = make_png(tmp_path / "wide.png", (1300, 500))
    fake = tmp_path / "fake.jpg"
    fake.write_text("not an image")
    for path in (small, wide, fake, tmp_path / "missing.png"):
        rec = Recorder(lambda r: httpx.Response(500))
        with pytest.raises(errors.InvalidImageError) as info:
            make_client("apimart", rec).submit(
                VideoRequest(prompt="moves", first_frame_image=str(path)))
        assert info.value.field == "first_frame_image" and rec.requests == []


def test_prompt_over_2000_chars_names_the_field():
    with pytest.raises(ValueError, match="prompt"):
        VideoRequest(prompt="a" * 2001)


# ------------------------------------------------------------------ downloads
def _completed(url: str) -> dict:
    return _apimart_status("completed", result={"videos": [{"url": [url]}]})


def test_download_hashes_probes_and_renames(tmp_path, tiny_mp4):
    client = make_client("apimart", lambda r: httpx.Response(200, json=_completed("https://c/a")),
                         download_handler=lambda r: httpx.Response(200, content=tiny_mp4))
    video = client.download("task_1", tmp_path / "out" / "v.mp4")
    import hashlib
    assert video.sha256 == hashlib.sha256(tiny_mp4).hexdigest() and video.size == len(tiny_mp4)
    assert video.frames == 12 and video.width == 64 and video.codec == "h264"
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["v.mp4"]


def test_expired_link_is_refreshed_by_task_id(tmp_path, tiny_mp4):
    links = iter(["https://c/old", "https://c/new"])
    seen: list[str] = []

    def dl(request):
        seen.append(str(request.url))
        assert "Authorization" not in request.headers, "the key must not go to the CDN"
        if request.url.path == "/old":
            return httpx.Response(410, text="<Error>expired</Error>")
        return httpx.Response(200, content=tiny_mp4)
    client = make_client("apimart", lambda r: httpx.Response(200, json=_completed(next(links))),
                         download_handler=dl)
    job = client.status("task_1")
    video = client.download(job, tmp_path / "v.mp4")
    assert seen == ["https://c/old", "https://c/new"] and video.frames == 12


def test_minimax_backup_url_used_when_main_fails(tmp_path, tiny_mp4):
    def dl(request):
        if request.url.path == "/main.mp4":
            return httpx.Response(403)
        return httpx.Response(200, content=tiny_mp4)
    client = make_client("minimax", minimax_handler(["Success"]), download_handler=dl)
    assert client.download("77", tmp_path / "v.mp4").size == len(tiny_mp4)


def test_truncated_and_empty_downloads_leave_nothing_behind(tmp_path, tiny_mp4):
    def truncated(request):
        return httpx.Response(200, content=tiny_mp4[: len(tiny_mp4) // 2],
                              headers={"Content-Length": str(len(tiny_mp4))})
    for handler, expected in ((truncated, errors.DownloadError),
                              (lambda r: httpx.Response(200, content=b""),
                               errors.InvalidVideoError),
                              (lambda r: httpx.Response(200, content=tiny_mp4[:300]),
                               errors.InvalidVideoError)):
        client = make_client("apimart", lambda r: httpx.Response(200, json=_completed("https://c/a")),
                             download_handler=handler)
        with pytest.raises(expected):
            client.download("task_1", tmp_path / "v.mp4", max_refreshes=1)
        assert list(tmp_path.iterdir()) == []


def test_compressed_download_is_decoded_before_hashing(tmp_path, tiny_mp4):
    """Video bodies come raw; a CDN that gzips one still yields the decoded file."""
    import gzip
    import hashlib

    packed = gzip.compress(tiny_mp4)
    client = make_client("apimart", lambda r: httpx.Response(200, json=_completed("https://c/a")),
                         download_handler=lambda r: httpx.Response(
                             200, content=packed, headers={"Content-Encoding": "gzip",
                                                           "Content-Length": str(len(packed))}))
    video = client.download("task_1", tmp_path / "v.mp4")
    assert video.sha256 == hashlib.sha256(tiny_mp4).hexdigest() and video.frames == 12
    assert (tmp_path / "v.mp4").read_bytes() == tiny_mp4


def test_large_download_keeps_memory_flat(tmp_path, tiny_mp4):
    total = 200 * 1024 * 1024

    def body():
        yield tiny_mp4
        chunk = b"\0" * (1 << 20)
        sent = len(tiny_mp4)
        while sent < total:
            piece = chunk[: min(len(chunk), total - sent)]
            sent += len(piece)
            yield piece

    client = make_client("apimart", lambda r: httpx.Response(200, json=_completed("https://c/a")),
                         download_handler=lambda r: httpx.Response(200, content=body()))
    tracemalloc.start()
    try:
        client._stream("https://c/a", tmp_path / "big.part", "task_1")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (tmp_path / "big.part").stat().st_size == total
    assert peak < 16 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB for a 200 MB body"


# ------------------------------------------------------------------ secrets
def test_key_never_in_errors_reprs_or_pickles():
    echo = lambda r: httpx.Response(  # noqa: E731
        401, json={"error": {"code": 401, "message": f"bad key {KEY}"}})
    client = make_client("apimart", echo)
    with pytest.raises(errors.AuthenticationError) as info:
        client.submit(T2V)
    for text in (str(info.value), repr(info.value), repr(client),
                 pickle.dumps(info.value).decode("latin-1")):
        assert KEY not in text
    again = pickle.loads(pickle.dumps(info.value))
    assert type(again) is errors.AuthenticationError and again.http_status == 401


def test_every_error_type_pickles():
    # ClipsFailedError is a group built from clip failures: tests/test_clip_errors.py.
    for cls in [c for c in vars(errors).values()
                if isinstance(c, type) and issubclass(c, errors.HailuoError)
                and c.__name__ != "ClipsFailedError"]:
        err = cls("message", task_id="t1", code=1)
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is cls and back.task_id == "t1" and str(back) == str(err)


def test_missing_key_is_a_clear_error():
    with pytest.raises(errors.AuthenticationError, match="Secret block"):
        HailuoClient("apimart", api_key=None)

