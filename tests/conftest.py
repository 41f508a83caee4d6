"""Shared fixtures. Prefect ones (harness, moto S3, blocks) start lazily, once per session."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

# Prefect reads its settings at import: point everything it persists at a throw-away
# folder before any test module imports it (results survive between runs otherwise).
_PREFECT_HOME = tempfile.mkdtemp(prefix="hailuo-tests-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ["PREFECT_LOCAL_STORAGE_PATH"] = str(Path(_PREFECT_HOME) / "storage")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
os.environ.pop("PREFECT_API_URL", None)
# The simulator is never a silent default: this test session asks for it whenever a flow
# is given no credentials block (a test that checks the refusal unsets it).
os.environ["HAILUO_SIMULATE"] = "1"


def encode_mp4(width: int = 64, height: int = 48, frames: int = 12, fps: int = 12) -> bytes:
    """A tiny real H.264 MP4, for tests that need a decodable body without the simulator."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            arr = np.full((height, width, 3), (i * 20) % 255, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


@pytest.fixture(scope="session")
def tiny_mp4() -> bytes:
    return encode_mp4()


def make_png(path: Path, size: tuple[int, int] = (640, 360), color=(200, 40, 40)) -> Path:
    Image.new("RGB", size, color).save(path, format="PNG")
    return path


@pytest.fixture(scope="session")
def prefect_home() -> Path:
    return Path(_PREFECT_HOME)


@pytest.fixture(scope="session")
def prefect_harness():
    """ONE Prefect test server for the whole session (starting one costs 10-15 s)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto's S3 server over real HTTP on a free loopback port."""
    import socket

    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="session")
def s3_bucket_block(prefect_harness, s3_endpoint) -> str:
    """A saved prefect-aws S3Bucket block pointing at the moto server; returns its name."""
    from prefect_aws import AwsCredentials, S3Bucket
    from prefect_aws.client_parameters import AwsClientParameters

    creds = AwsCredentials(aws_access_key_id="testing", aws_secret_access_key="testing",
                           region_name="us-east-1",
                           aws_client_parameters=AwsClientParameters(endpoint_url=s3_endpoint))
    creds.get_s3_client().create_bucket(Bucket="hailuo-test")
    S3Bucket(bucket_name="hailuo-test", credentials=creds).save("hailuo-test", overwrite=True)
    return "hailuo-test"


def s3_client(endpoint: str):
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing",
                        aws_secret_access_key="testing", region_name="us-east-1")


def kill_python_when(script: str, ready, *, timeout: float = 120.0) -> None:
    """Run ``script`` in a fresh interpreter against this session's Prefect server and
    SIGKILL it as soon as ``ready()`` is true: a real crash, nothing cleaned up."""
    import signal
    import subprocess
    import sys
    import textwrap
    import time

    import prefect.settings

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PREFECT_API_URL": prefect.settings.PREFECT_API_URL.value(),
           "PYTHONPATH": str(root)}
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], env=env, cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the process never reached the kill point"
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()


def save_credentials(name: str, base_url: str, key: str, provider: str = "apimart") -> str:
    """Save the key in a Secret block and a HailuoCredentials block naming it (the way
    operators are told to); returns the credentials block's name."""
    from prefect.blocks.system import Secret

    from prefect_hailuo.deployments.setup import save_credentials as save_credentials_block

    Secret(value=key).save(f"{name}-key", overwrite=True)
    save_credentials_block(name, provider, base_url, f"{name}-key")
    return name
