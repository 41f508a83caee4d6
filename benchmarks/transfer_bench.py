"""B3 (streaming download of a 500 MB video vs curl) and B4 (S3 upload vs plain boto3).

Run as ``python -m benchmarks.transfer_bench download URL DEST [stream]`` it is the child
process of B3 that downloads once and reports time and peak RSS growth as JSON, so the
memory figure is the client's alone (the simulator serving the file lives in the parent).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

from benchmarks.common import (
    BENCH_KEY,
    Settings,
    child_env,
    free_port,
    median,
    result,
    run_child,
    spread,
)

MB = 1_000_000


def big_mp4(path: Path, target_bytes: int) -> Path:
    """A real, decodable H.264 MP4 of about ``target_bytes``: lossless 1080p noise.

    Why noise: it does not compress, so the file reaches the size in a few seconds of
    encoding, and ``HailuoClient.download``'s probe has a genuine video to verify.
    """
    if path.exists() and path.stat().st_size >= target_bytes * 0.95:
        return path
    import av
    import numpy as np

    width, height = (1920, 1080) if target_bytes > 50 * MB else (320, 240)
    per_frame = width * height * 1.5 * 1.2  # yuv420p lossless noise, plus overhead
    frames = max(25, int(target_bytes / per_frame) + 1)
    rng = np.random.default_rng(8)
    pool = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(7)]
    tmp = path.with_suffix(".part")
    with av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 25)
        stream.options = {"preset": "ultrafast", "qp": "0",
                          "x264-params": "keyint=25:min-keyint=25:scenecut=0"}
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(pool[i % len(pool)], format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 25)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    tmp.replace(path)
    return path


# ------------------------------------------------------------------------------ B3
def _child_download(url: str, dest: str, mode: str) -> None:
    from benchmarks.common import peak_rss_bytes, reset_peak_rss, rss_bytes
    from hailuo.client import HailuoClient
    from hailuo.models import Job, JobStatus

    client = HailuoClient("apimart", api_key=BENCH_KEY, base_url="http://127.0.0.1:1")
    job = Job(task_id="b3", provider="apimart", status=JobStatus.COMPLETED, video_urls=[url])
    baseline = rss_bytes()
    reset_ok = reset_peak_rss()
    start_peak = peak_rss_bytes()
    started = time.perf_counter()
    if mode == "stream":
        sha, size = client._stream(url, Path(dest), "b3")
    else:
        video = client.download(job, dest)
        size = video.size
    seconds = time.perf_counter() - started
    peak = peak_rss_bytes()
    client.close()
    print(json.dumps({"seconds": seconds, "size": size, "rss_before": baseline,
                      "peak_after": peak, "peak_reset": reset_ok, "peak_at_start": start_peak,
                      "growth": max(0, peak - baseline)}))


def _serve_file(handle: Any, path: Path) -> str:
    """Register ``path`` as a finished task of the running simulator; its signed URL."""
    from hailuo.capabilities import Mode, Provider
    from hailuo.simulator.state import Task

    now = time.time()
    task = Task(id=f"task_b3_{secrets.token_hex(4)}", provider=Provider.APIMART,
                model="MiniMax-Hailuo-02", mode=Mode.TEXT_TO_VIDEO, resolution="1080p",
                duration=5, width=1920, height=1080, prompt="B3", created_at=now - 1,
                queue_seconds=0, render_seconds=0, file_token=secrets.token_urlsafe(18),
                path=path, size=path.stat().st_size, render_finished_at=now)
    sim = handle.simulator
    sim.state.add_task(task)
    url, _ = sim.link(task, handle.base_url)
    return url


def b3_verdict_notes(f: dict[str, Any]) -> list[str]:
    """Why B3's targets are met or missed, from its figures."""
    notes: list[str] = []
    ratio_full, ratio_stream = f["download_vs_curl"], f["stream_only_vs_curl"]
    growth_full = f["peak_rss_growth_mb_download"]["runs"]
    growth_stream = f["peak_rss_growth_mb_stream"]["runs"]
    peak = max(growth_full + growth_stream)
    if ratio_full < 0.8:
        curl = f.get("curl_mb_per_s", 0.0)
        notes.append(
            f"MISSED (throughput): download() reaches {ratio_full:.0%} of curl "
            f"({curl:.0f} MB/s); the streaming part alone (GET + write + sha256, no probe) "
            f"{ratio_stream:.0%}. On this machine the target is out of reach for any "
            "client that verifies while it downloads: curl is C and only copies, while the "
            "simulator sending the file is Python on the same two cores; sha256 alone runs "
            "at about 1.75 GB/s on one core (measured with hashlib), so 80% of curl would "
            "leave no CPU for the HTTP parsing and the sender. Already done: chunks are "
            "taken as the socket delivers them (`iter_bytes()` without a size: about twice "
            "the rate of the 1 MB re-chunking measured before). The rest of the gap to the "
            "stream-only figure is `media.probe` after the stream (every packet demuxed, "
            "the last GOP decoded). Not tried: hashing on a second thread, a larger read "
            "size than httpcore's 64 KB.")
    if peak > 64:
        notes.append(
            f"MISSED (memory): peak RSS growth {max(growth_full):.0f} MB for download(), "
            f"while the stream alone grows {max(growth_stream):.0f} MB - streaming is "
            "constant-memory; the growth is `media.probe` decoding the last GOP of this "
            "lossless-noise 1080p file (multi-MB packets, frame-threaded decoder buffers). "
            "A real Hailuo clip's frames are far smaller.")
    return notes


def b3_download(s: Settings) -> dict[str, Any]:
    from hailuo.simulator import run_simulator

    target = s.pick(500 * MB, 5 * MB)
    src = big_mp4(s.work / f"b3_source_{target // MB}MB.mp4", target)
    size = src.stat().st_size
    out = s.work / "b3_out"
    out.mkdir(exist_ok=True)
    reps = s.reps
    curl_t, full, stream = [], [], []
    growth_full, growth_stream = [], []
    with run_simulator() as handle:
        url = _serve_file(handle, src)
        def curl(rep: int) -> None:
            dest = out / f"curl-{rep}.mp4"
            t = time.perf_counter()
            subprocess.run(["curl", "-sS", "--fail", "-o", str(dest), url], check=True)
            curl_t.append(time.perf_counter() - t)
            assert dest.stat().st_size == size
            dest.unlink()

        def client(mode: str, times: list[float], growth: list[float], rep: int) -> None:
            dest = out / f"{mode}-{rep}.mp4"
            rec = run_child("benchmarks.transfer_bench", "download", url, str(dest), mode)
            assert rec["size"] == size, rec
            times.append(rec["seconds"])
            growth.append(rec["growth"] / 2**20)
            dest.unlink(missing_ok=True)

        steps = [lambda r: curl(r), lambda r: client("full", full, growth_full, r),
                 lambda r: client("stream", stream, growth_stream, r)]
        for rep in range(reps):
            for k in range(len(steps)):  # rotate the order so no method always goes first
                steps[(k + rep) % len(steps)](rep)
    mbps = lambda secs: size / MB / median(secs)  # noqa: E731
    ratio_full = mbps(full) / mbps(curl_t)
    ratio_stream = mbps(stream) / mbps(curl_t)
    peak = max(growth_full + growth_stream)
    met = ratio_full >= 0.8 and peak <= 64
    notes = [
        f"source: a real {size / MB:.0f} MB H.264 MP4 (lossless 1080p noise, so it does not "
        "compress), served by the simulator's signed download route (`FileStream`, 256 KB "
        "chunks, uvicorn on 127.0.0.1) in the runner process; each download writes to "
        "benchmarks/work/ and is deleted afterwards.",
        "curl: `curl -sS --fail -o FILE URL` (process start included, about 10 ms). "
        "download(): `HailuoClient.download` in a fresh child process: stream to a temp file "
        "in the chunks the socket delivers, with sha256, check Content-Length, probe the MP4 "
        "(demux every packet, decode first keyframe and last GOP), rename into place. "
        "stream: the streaming part alone (`_stream`: GET, write, sha256).",
        "Peak memory growth: the child's VmHWM after the download minus its VmRSS just "
        "before (VmHWM reset through /proc/self/clear_refs), so imports and the simulator "
        "are excluded.",
        f"{reps} repetitions of the three, the order rotated each time.",
    ]
    figures = {
        "file_mb": round(size / MB, 1),
        "curl_seconds": spread(curl_t),
        "download_seconds": spread(full),
        "stream_only_seconds": spread(stream),
        "curl_mb_per_s": round(mbps(curl_t), 1),
        "download_mb_per_s": round(mbps(full), 1),
        "stream_only_mb_per_s": round(mbps(stream), 1),
        "download_vs_curl": round(ratio_full, 3),
        "stream_only_vs_curl": round(ratio_stream, 3),
        "peak_rss_growth_mb_download": spread(growth_full),
        "peak_rss_growth_mb_stream": spread(growth_stream),
    }
    return result("B3", "streaming download of a 500 MB video", figures=figures,
                  verdict_notes=b3_verdict_notes(figures),
                  headline=f"download() {mbps(full):.0f} MB/s = {ratio_full:.0%} of curl "
                           f"({mbps(curl_t):.0f} MB/s; stream only {ratio_stream:.0%}); peak "
                           f"RSS growth {peak:.1f} MB", met=met, notes=notes)


VERDICTS = {"B3": b3_verdict_notes}


# ------------------------------------------------------------------------------ B4
class _Moto:
    """moto's ThreadedMotoServer in a child process (its threads would otherwise share
    the GIL with the uploading client)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        code = ("import time\nfrom moto.server import ThreadedMotoServer\n"
                f"s = ThreadedMotoServer(ip_address='127.0.0.1', port={self.port}, "
                "verbose=False)\ns.start()\nprint('ready', flush=True)\n"
                "time.sleep(10**6)\n")
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, env=child_env())
        assert self.proc.stdout is not None
        self.proc.stdout.readline()
        import httpx

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(self.url, timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("moto server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def b4_upload(s: Settings) -> dict[str, Any]:
    import os

    import boto3
    from prefect import flow
    from prefect_aws import AwsCredentials, S3Bucket
    from prefect_aws.client_parameters import AwsClientParameters

    from hailuo import media
    from hailuo.models import DownloadedVideo
    from prefect_hailuo.tasks.storage import TRANSFER, upload_to_s3

    target = s.pick(500 * MB, 5 * MB)
    reps = s.reps
    src = big_mp4(s.work / f"b3_source_{target // MB}MB.mp4", target)
    size = src.stat().st_size
    info = media.probe(src)
    sha = media.sha256_file(src)
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        os.environ.setdefault(name, value)
    moto = _Moto()
    try:
        creds = AwsCredentials(aws_access_key_id="testing", aws_secret_access_key="testing",
                               region_name="us-east-1",
                               aws_client_parameters=AwsClientParameters(endpoint_url=moto.url))
        s3 = boto3.client("s3", endpoint_url=moto.url, aws_access_key_id="testing",
                          aws_secret_access_key="testing", region_name="us-east-1")
        s3.create_bucket(Bucket="bench")
        S3Bucket(bucket_name="bench", credentials=creds).save("bench-s3", overwrite=True)

        @flow(name="bench-b4-upload", validate_parameters=False)
        def upload_flow(video: DownloadedVideo) -> float:
            started = time.perf_counter()
            upload_to_s3(video, {"bench": "B4"}, "bench-s3", prefix="bench")
            return time.perf_counter() - started

        def clear() -> None:
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket="bench"):
                for obj in page.get("Contents", []):
                    s3.delete_object(Bucket="bench", Key=obj["Key"])

        def video_for(name: str, path: Path = src) -> DownloadedVideo:
            return DownloadedVideo(task_id=f"b4-{name}-{secrets.token_hex(3)}", path=path,
                                   sha256=sha, size=size, width=info.width,
                                   height=info.height, duration=info.duration, fps=info.fps,
                                   frames=info.frames, codec=info.codec)

        task_path, plain, tuned = [], [], []

        def run_task(rep: int) -> None:
            task_path.append(upload_flow(video_for(str(rep))))

        def run_plain(rep: int) -> None:
            t = time.perf_counter()
            s3.upload_file(str(src), "bench", f"plain/{rep}.mp4")
            plain.append(time.perf_counter() - t)

        def run_tuned(rep: int) -> None:
            t = time.perf_counter()
            s3.upload_file(str(src), "bench", f"tuned/{rep}.mp4", Config=TRANSFER,
                           ExtraArgs={"ContentType": "video/mp4", "Metadata": {"sha256": sha}})
            tuned.append(time.perf_counter() - t)

        # Warm-up: the first flow/task run and block load in this process, on a small file.
        small = s.work / "b4_small.bin"
        small.write_bytes(b"\0" * (1 << 20))
        upload_flow(video_for("warmup", small))
        s3.upload_file(str(small), "bench", "warmup.bin")
        clear()
        steps = [run_task, run_plain, run_tuned]
        for rep in range(reps):
            for k in range(len(steps)):  # rotate the order so no method always goes first
                steps[(k + rep) % len(steps)](rep)
                clear()
    finally:
        moto.stop()
    mbps = lambda secs: size / MB / median(secs)  # noqa: E731
    ratio = mbps(task_path) / mbps(plain)
    met = ratio >= 0.9
    notes = [
        f"{size / MB:.0f} MB MP4 (the B3 file) to moto's ThreadedMotoServer, started in a "
        "child process on 127.0.0.1 so its threads do not share the uploader's GIL.",
        "upload_to_s3: the real Prefect task (`tasks.storage.upload_to_s3`, S3Bucket block "
        "loaded from the Prefect test server) called from a flow and timed around the task "
        "call: HEAD for an identical object, multipart upload with the project's "
        "TransferConfig (multipart from 16 MB, 8 MB parts, 10 threads), manifest PUT, presigned "
        "URL. plain boto3: "
        "`upload_file` with boto3's defaults (8 MB parts, 10 threads). Also boto3 "
        "`upload_file` with the project's TransferConfig alone, to separate the config from "
        "the task's overhead.",
        f"{reps} repetitions of the three, the order rotated each time, objects deleted in "
        "between; a warm-up (first flow and task run, block load) on a 1 MB file first.",
    ]
    if not met:
        notes.append(
            f"MISSED: upload_to_s3 reaches {ratio:.0%} of plain boto3. With the same "
            f"TransferConfig and no Prefect, boto3 reaches {mbps(tuned) / mbps(plain):.0%}, "
            "which splits the gap into the transfer settings and the task's fixed "
            "overhead (block load, S3 client, HEAD, manifest PUT, presign, Prefect task "
            f"run). Fastest single runs: upload_to_s3 {min(task_path):.2f} s, plain boto3 "
            f"{min(plain):.2f} s - moto is CPU-bound Python on the same two cores, so "
            "single uploads vary by a second or more; more repetitions would narrow it.")
    return result("B4", "S3 upload of a 500 MB video (moto server)", figures={
        "file_mb": round(size / MB, 1),
        "upload_to_s3_seconds": spread(task_path),
        "plain_boto3_seconds": spread(plain),
        "boto3_with_project_transfer_config_seconds": spread(tuned),
        "upload_to_s3_mb_per_s": round(mbps(task_path), 1),
        "plain_boto3_mb_per_s": round(mbps(plain), 1),
        "boto3_project_config_mb_per_s": round(mbps(tuned), 1),
        "upload_to_s3_vs_plain": round(ratio, 3),
    }, headline=f"upload_to_s3 {mbps(task_path):.0f} MB/s = {ratio:.0%} of plain boto3 "
                f"({mbps(plain):.0f} MB/s)", met=met, notes=notes)


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "download":
        _child_download(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else "full")
    else:
        sys.exit("usage: python -m benchmarks.transfer_bench download URL DEST [full|stream]")
