"""Issue 13 part C: hostile or broken answers, produced by the simulator over real HTTP.

One behaviour per test: ids never become paths or URL segments, the key never leaks, a
broken answer after a submit is ambiguous (never a raw exception, never paid twice), every
call has a total deadline, answers and downloads are size-capped, downloads never reach
private addresses, and a crashed download's temporary file is cleaned up.
"""

from __future__ import annotations

import fcntl
import logging
import os
import pickle
import signal
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx
import pytest

from hailuo import errors, netguard
from hailuo.client import HailuoClient, PollPolicy
from hailuo.files import ensure_inside, output_path, remove_stale_temps
from hailuo.images import check_image
from hailuo.models import Job, JobStatus, VideoRequest
from hailuo.simulator import run_simulator

#: A key with characters that URL-encoding changes, so the encoded echo is a distinct form.
KEY = "sk-hostile/TEST+KEY=7f3a9c2e1d5b"
FAST = PollPolicy(min_interval=0.05, max_interval=0.2)
T2V = VideoRequest(prompt="a lighthouse at dusk, waves")
HOSTILE_ID = "../../etc/x"


class OffMachineConnect(AssertionError):
    """A connection to an address outside this machine was attempted."""


@pytest.fixture(autouse=True)
def only_loopback_connections(monkeypatch):
    """A tripwire: these tests hand the client private and made-up addresses, which it
    must refuse without connecting. Should a regression let it try, the attempt fails the
    test here instead of sending a single packet off this machine."""
    import ipaddress
    import socket

    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def check(address) -> None:
        host = address[0] if isinstance(address, tuple) else None
        if host is None:
            return  # a unix socket
        try:
            ip = ipaddress.ip_address(host.split("%")[0])
        except ValueError:
            raise OffMachineConnect(f"connect to unresolved {host!r}") from None
        mapped = getattr(ip, "ipv4_mapped", None) or ip
        if not (mapped.is_loopback or mapped.is_unspecified):
            raise OffMachineConnect(f"connect to {host} attempted")

    def connect(self, address):
        check(address)
        return real_connect(self, address)

    def connect_ex(self, address):
        check(address)
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)


@contextmanager
def simulator(**knobs) -> Iterator:
    knobs = {"render_seconds": 0.3, "cheap": True, **knobs}
    with run_simulator(**knobs) as sim:
        yield sim


def client_for(sim, provider: str = "apimart", base_url: str | None = None,
               **kw) -> HailuoClient:
    kw.setdefault("poll", FAST)
    kw.setdefault("backoff", 0.01)
    return HailuoClient(provider, api_key=KEY, base_url=base_url or sim.base_url, **kw)


def completed(sim, provider: str = "apimart", **kw) -> tuple[HailuoClient, Job]:
    client = client_for(sim, provider, **kw)
    job = client.wait(client.submit(T2V), timeout=60)
    assert job.status is JobStatus.COMPLETED and job.video_urls
    return client, job


def leaks(text: str) -> list[str]:
    """The spellings of KEY found in ``text``."""
    forms = {"raw": KEY, "url-encoded": quote(KEY, safe=""), "prefix": KEY[:20],
             "suffix": KEY[-18:]}
    return [name for name, form in forms.items() if form in text]


def no_part_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if ".part" in p.name]


# ------------------------------------------------------------------ 1. ids and paths
@pytest.mark.parametrize("provider", ["apimart", "minimax"])
def test_submit_answer_with_a_path_traversal_task_id_is_ambiguous_and_never_used(provider):
    with simulator(hostile_task_id=HOSTILE_ID, model_idempotency="false") as sim, \
            client_for(sim, provider) as client:
        with pytest.raises(errors.AmbiguousSubmitError) as caught:
            client.submit(T2V)
        assert sim.submits() == 1  # one task paid, not resent
        assert sim.requests("status") == []  # the id was never used
        assert "'../../etc/x'" in str(caught.value)  # quoted, truncated, printable
        assert caught.value.task_id is None


def test_status_refuses_an_unsafe_task_id_before_anything_is_sent():
    with simulator() as sim, client_for(sim) as client:
        for bad in (HOSTILE_ID, "a/b", "x?y=1", "t#frag", "%2e%2e", "", ".hidden",
                    "é", "a" * 129, "task\n1"):
            with pytest.raises(errors.UnsafeIdError) as caught:
                client.status(bad)
            assert len(str(caught.value)) < 400
        assert sim.requests("status") == []


def test_status_answer_naming_another_task_is_an_error_not_a_new_id():
    with simulator() as sim, client_for(sim) as client:
        job = client.submit(T2V)
        sim.configure(status_id_mismatch=True)
        with pytest.raises(errors.TaskIdMismatchError) as caught:
            client.status(job.task_id)
        assert caught.value.task_id == job.task_id
        with pytest.raises(errors.TaskIdMismatchError):
            client.wait(job, timeout=10)
        sim.configure(status_id_mismatch=False, hostile_task_id=HOSTILE_ID)
        with pytest.raises(errors.TaskIdMismatchError) as caught:
            client.status(job.task_id)
        assert "etc/x" in caught.value.details["answered_id"]


def test_output_paths_built_from_ids_stay_inside_the_output_folder(tmp_path):
    out = tmp_path / "out"
    assert output_path(out, "task_01ABC", ".mp4") == out / "task_01ABC.mp4"
    for bad in (HOSTILE_ID, "/etc/passwd", "..", "a/../../b"):
        with pytest.raises(errors.UnsafeIdError):
            output_path(out, bad, ".mp4")
    out.mkdir()
    (out / "link").symlink_to(tmp_path)  # a symlink leading outside
    with pytest.raises(errors.UnsafeIdError):
        ensure_inside(out / "link" / "x.mp4", out)
    from prefect_hailuo.tasks.storage import object_prefix

    assert object_prefix("hailuo", "apimart", "task_1") == "hailuo/apimart/task_1"
    with pytest.raises(errors.UnsafeIdError):
        object_prefix("hailuo", "apimart", HOSTILE_ID)


def test_download_checks_the_task_id_and_the_output_folder(tmp_path):
    with simulator() as sim:
        client, job = completed(sim)
        with client, pytest.raises(errors.UnsafeIdError):
            client.download(job, tmp_path / "elsewhere" / "v.mp4", within=tmp_path / "out")
        with client, pytest.raises(errors.UnsafeIdError):
            client.download(job.model_copy(update={"task_id": HOSTILE_ID}),
                            tmp_path / "out" / "v.mp4")
        assert sim.requests("download") == []


# ------------------------------------------------------------------ 2. the key never leaks
@pytest.mark.parametrize("provider", ["apimart", "minimax"])
def test_key_echoed_by_the_provider_never_reaches_errors_jobs_or_logs(provider, caplog):
    caplog.set_level(logging.DEBUG)
    with simulator(echo_key_in_errors=True, fail_rate=1.0, fail_codes=[1000]) as sim, \
            client_for(sim, provider) as client:
        job = client.submit(T2V)
        seen: list[Job] = []
        with pytest.raises(errors.GenerationFailedError) as failed:
            client.wait(job, timeout=30, on_update=seen.append)
        # the simulator did echo it, in every spelling
        raw_status = httpx.get(
            f"{sim.base_url}/v1/tasks/{job.task_id}" if provider == "apimart" else
            f"{sim.base_url}/v1/query/video_generation?task_id={job.task_id}",
            headers={"Authorization": f"Bearer {KEY}"}).text
        assert "Bearer" in raw_status and quote(KEY, safe="") in raw_status
        # ... status of an unknown task: an error answer, echoing too
        with pytest.raises(errors.HailuoError) as unknown:
            client.status("task_unknown123" if provider == "apimart" else "999999999999999")
        failure = seen[-1]
        assert failure.status is JobStatus.FAILED and failure.error_message
        texts = [str(failed.value), repr(failed.value), str(unknown.value),
                 repr(unknown.value), failure.error_message, failure.model_dump_json(),
                 repr(pickle.loads(pickle.dumps(failed.value))), caplog.text]
        for text in texts:
            assert leaks(text) == [], text
        assert "***" in str(failed.value)


def test_key_in_file_lookup_errors_and_callback_bodies_is_scrubbed():
    with simulator(echo_key_in_errors=True, scripted_faults={"file_1013": -1}) as sim, \
            client_for(sim, "minimax", max_retries=1) as client:
        job = client.submit(T2V)
        with pytest.raises(errors.HailuoError) as caught:
            client.wait(job, timeout=20)
        assert leaks(str(caught.value)) == [] and "1013" in str(caught.value)
        body = {"task_id": job.task_id, "status": "fail", "base_resp": {
            "status_code": 1000, "status_msg": f"boom for Bearer {KEY} ({quote(KEY)})"}}
        parsed = client.parse_callback(body)
        assert parsed.error_message and leaks(parsed.error_message) == []


def test_any_error_message_mentioning_a_used_key_is_scrubbed_at_construction():
    with HailuoClient("apimart", api_key=KEY, base_url="http://127.0.0.1:9"):
        pass
    for text in (f"echo {KEY}", f"x {quote(KEY, safe='')} y", f"k={KEY[:24]}...",
                 f"Authorization: Bearer {KEY[:10]}"):
        exc = errors.ProviderUnavailableError(text)
        assert leaks(str(exc)) == [] and KEY[:10] not in str(exc), str(exc)


# -------------------------------------------- 3. broken answers after a submit: ambiguous
@pytest.mark.parametrize("provider", ["apimart", "minimax"])
@pytest.mark.parametrize("knob", ["undecodable_submit_body", "deep_json", "broken_gzip",
                                  "drop_after_submit_rate"])
def test_broken_answer_after_the_submit_was_sent_is_ambiguous_and_not_resent(provider, knob):
    with simulator(**{knob: 1.0 if knob.endswith("rate") else True},
                   model_idempotency="false") as sim, client_for(sim, provider) as client:
        with pytest.raises(errors.AmbiguousSubmitError) as caught:
            client.submit(T2V)
        assert sim.submits() == 1
        assert caught.value.details["request_fingerprint"]
        assert not caught.value.retryable


@pytest.mark.parametrize("knob", ["undecodable_submit_body", "deep_json", "broken_gzip"])
def test_broken_answer_is_resent_only_under_a_confirmed_idempotency_key(knob):
    """APIMart confirms idempotency for the model: the same key and body are sent again,
    the provider replays the task, and still only one task exists."""
    with simulator(**{knob: True}) as sim, client_for(sim, "apimart") as client:
        job = client.submit(T2V)
        assert sim.submits() == 1
        assert job.task_id == sim.tasks()[0]["id"]


# ------------------------------------------------------------------ 4. total deadlines
def test_trickled_status_answer_cannot_hold_a_status_call_past_its_deadline():
    with simulator() as sim, client_for(sim, call_deadline=1.5) as client:
        job = client.submit(T2V)
        sim.configure(trickle_bytes=0.4)
        started = time.monotonic()
        with pytest.raises(errors.StatusDeadlineError):
            client.status(job.task_id)
        assert time.monotonic() - started < 15  # bounded; unbounded it takes minutes


def test_wait_timeout_bounds_the_status_call_in_flight():
    with simulator() as sim, client_for(sim, call_deadline=120) as client:
        job = client.submit(T2V)
        sim.configure(trickle_bytes=0.4)
        started = time.monotonic()
        with pytest.raises(errors.TimedOutError) as caught:
            client.wait(job, timeout=2.0)
        assert time.monotonic() - started < 15  # bounded; unbounded it takes minutes
        assert caught.value.task_id == job.task_id


def test_trickled_download_ends_at_the_download_deadline(tmp_path):
    with simulator() as sim:
        client, job = completed(sim, download_deadline=2.0)
        sim.configure(trickle_bytes=0.3)
        started = time.monotonic()
        with client, pytest.raises(errors.DownloadDeadlineError):
            client.download(job, tmp_path / "v.mp4")
        assert time.monotonic() - started < 15  # bounded; unbounded it takes minutes
        assert not (tmp_path / "v.mp4").exists() and no_part_files(tmp_path)


def test_silent_server_cannot_hold_a_submit_past_its_call_deadline():
    with simulator(slow_seconds=30) as sim, \
            client_for(sim, "minimax", call_deadline=1.5) as client:
        started = time.monotonic()
        with pytest.raises(errors.AmbiguousSubmitError):
            client.submit(T2V)
        assert time.monotonic() - started < 20  # the server stays silent for 30 s


# ------------------------------------------------------------------ 5. size caps
def test_huge_status_answer_is_refused():
    with simulator() as sim, client_for(sim) as client:
        job = client.submit(T2V)
        sim.configure(huge_status_body=True)
        with pytest.raises(errors.AnswerTooLargeError):
            client.status(job.task_id)


def test_gzip_bomb_video_is_refused_before_it_fills_the_disk(tmp_path):
    with simulator() as sim:
        client, job = completed(sim)
        sim.configure(gzip_bomb_download=True)
        with client, pytest.raises(errors.DownloadRefusedError) as caught:
            client.download(job, tmp_path / "v.mp4")
        assert "decompression bomb" in str(caught.value)
        assert not (tmp_path / "v.mp4").exists() and no_part_files(tmp_path)


def test_video_larger_than_the_cap_is_refused(tmp_path):
    with simulator() as sim:
        client, job = completed(sim, max_download_bytes=1000)
        with client, pytest.raises(errors.DownloadRefusedError):
            client.download(job, tmp_path / "v.mp4")
        assert no_part_files(tmp_path)


def test_downloads_ask_for_identity_encoding(tmp_path, tiny_mp4):
    """Which Accept-Encoding went out is only visible to a transport: MockTransport."""
    seen: list[str] = []

    def cdn(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("accept-encoding", ""))
        return httpx.Response(200, content=tiny_mp4)

    done = {"code": 200, "data": {"id": "task_1", "status": "completed", "result": {
        "videos": [{"url": ["https://cdn.example/v.mp4"]}]}}}
    client = HailuoClient("apimart", api_key=KEY, base_url="https://api.example.test",
                          transport=httpx.MockTransport(lambda r: httpx.Response(200, json=done)),
                          download_transport=httpx.MockTransport(cdn))
    with client:
        client.download("task_1", tmp_path / "v.mp4")
    assert seen == ["identity"]


# ------------------------------------------------------------------ 6. private addresses
def test_download_redirect_to_a_loopback_name_is_refused(tmp_path):
    """The simulator is reachable as 127.0.0.1 (allowed here) and as localhost (not): a
    redirect to localhost would succeed without the guard."""
    with simulator() as sim:
        port = urlsplit(sim.base_url).port
        client, job = completed(sim, allow_private_downloads=False,
                                download_allowed_hosts=["127.0.0.1"])
        sim.configure(redirect_download_to=f"http://localhost:{port}{{path}}")
        with client, pytest.raises(errors.DownloadRefusedError) as caught:
            client.download(job, tmp_path / "v.mp4")
        assert "localhost" in str(caught.value)
        assert len(sim.requests("download")) == 1  # the redirect target was never fetched
        # the same redirect is followed when the base URL is local (the default)
        with client_for(sim) as local:
            assert local.download(job, tmp_path / "ok.mp4").size > 0


@pytest.mark.parametrize("target", ["http://169.254.169.254/latest/meta-data/",
                                    "http://10.0.0.7/x", "http://192.168.1.1/x",
                                    "http://100.64.0.1/x", "http://[::1]:80/x",
                                    "http://[::ffff:127.0.0.1]/x", "http://0.0.0.0/x",
                                    "http://127.0.0.2/x", "file:///etc/passwd"])
def test_download_redirect_into_private_ranges_is_refused(tmp_path, target):
    with simulator() as sim:
        client, job = completed(sim, allow_private_downloads=False,
                                download_allowed_hosts=["127.0.0.1"])
        sim.configure(redirect_download_to=target)
        with client, pytest.raises(errors.DownloadRefusedError):
            client.download(job, tmp_path / "v.mp4")


def test_download_redirect_to_a_name_resolving_privately_is_refused(tmp_path, monkeypatch):
    real = netguard._resolve

    def resolve(host: str, port: int) -> list[str]:
        return ["10.1.2.3"] if host == "cdn.evil.test" else real(host, port)

    monkeypatch.setattr(netguard, "_resolve", resolve)
    with simulator() as sim:
        client, job = completed(sim, allow_private_downloads=False,
                                download_allowed_hosts=["127.0.0.1"])
        sim.configure(redirect_download_to="http://cdn.evil.test/v.mp4")
        with client, pytest.raises(errors.DownloadRefusedError) as caught:
            client.download(job, tmp_path / "v.mp4")
        assert "10.1.2.3" in str(caught.value)


def test_provider_link_to_a_private_address_is_refused(tmp_path):
    with simulator(public_base_url="http://10.255.255.1:9") as sim:
        client, job = completed(sim, allow_private_downloads=False)
        assert job.video_urls[0].startswith("http://10.255.255.1:9/")
        with client, pytest.raises(errors.DownloadRefusedError):
            client.download(job, tmp_path / "v.mp4")


def test_private_downloads_are_allowed_only_for_a_loopback_base_url():
    def allowed(base_url: str, **kw) -> bool:
        with HailuoClient("apimart", api_key=KEY, base_url=base_url, **kw) as client:
            return client._download_policy.allow_private

    assert allowed("http://127.0.0.1:8000") and allowed("http://localhost:1")
    assert allowed("http://[::1]:8000")
    assert not allowed("https://api.apimart.ai") and not allowed("http://10.0.0.5")
    assert not allowed("http://127.0.0.1:8000", allow_private_downloads=False)


# -------------------------------------------- 8. crashed temp files, pixel-bomb images
def test_crashed_download_temp_file_is_removed_on_the_next_run(tmp_path):
    dest = tmp_path / "v.mp4"
    live = tmp_path / ".v.0123abcd.part.mp4"  # another writer, alive: must be kept
    live.write_bytes(b"x")
    held = os.open(live, os.O_RDONLY)
    fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        with simulator() as sim:
            client, job = completed(sim)
            sim.configure(trickle_bytes=0.2)  # the first run hangs mid-download ...
            script = textwrap.dedent("""
                import sys
                from hailuo.client import HailuoClient
                from hailuo.models import Job
                job = Job.model_validate_json(sys.argv[1])
                with HailuoClient("apimart", api_key="sk-crash-0000000000",
                                  base_url=sys.argv[2]) as client:
                    client.download(job, sys.argv[3])
            """)
            proc = subprocess.Popen([sys.executable, "-c", script, job.model_dump_json(),
                                     sim.base_url, str(dest)])
            try:
                deadline = time.monotonic() + 60
                while not [p for p in tmp_path.glob(".v.*.part.mp4") if p != live]:
                    assert proc.poll() is None and time.monotonic() < deadline
                    time.sleep(0.05)
                proc.send_signal(signal.SIGKILL)  # ... and is killed: nothing cleans up
                proc.wait(timeout=30)
            finally:
                if proc.poll() is None:
                    proc.kill()
            stale = [p for p in tmp_path.glob(".v.*.part.mp4") if p != live]
            assert stale, "the killed download left no temporary file"
            sim.configure(trickle_bytes=0)
            with client:
                video = client.download(job, dest)  # the next run
            assert video.size > 0 and dest.exists()
            assert not any(p.exists() for p in stale)
            assert live.exists()
    finally:
        os.close(held)
    assert remove_stale_temps(dest) == [live]  # its writer gone, it is stale too


def _png_header(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height (the pixel data is a few bytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("size", [(8000, 6000), (30000, 30000), (100000, 50000)])
def test_image_claiming_too_many_pixels_is_refused_from_its_header(size):
    data = _png_header(*size)
    assert len(data) < 200
    started = time.monotonic()
    with pytest.raises(errors.InvalidImageError, match="megapixels"):
        check_image(data, field="first_frame_image")
    assert time.monotonic() - started < 10  # decoding these would take minutes and GBs
