"""Issue 13 E: everything that can fail later is checked before the first submit.

Each broken setup below fails its flow with a typed, non-retryable error, and the
simulator has seen no request at all (not a submit, not even a status call). Empty text
parameters mean "not set". Configuration errors are never retried by any task.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from hailuo.errors import (
    ConfigurationError,
    DownloadError,
    InvalidImageError,
    InvalidRequestError,
    ProviderUnavailableError,
)
from hailuo.simulator import run_simulator
from tests.conftest import make_png, save_credentials

KEY = "hk-PREFLIGHT-4b5c6d7e8f9a0b1c2d3e4f5a"


@pytest.fixture(scope="module")
def sim():
    with run_simulator(render_seconds=0.4, accepted_keys=[KEY]) as handle:
        yield handle


@pytest.fixture(scope="module")
def creds(prefect_harness, sim) -> str:
    return save_credentials("preflight", sim.base_url, KEY)


@pytest.fixture(scope="module")
def missing_bucket_block(s3_bucket_block) -> str:
    """An S3Bucket block whose bucket does not exist on the (reachable) S3 server."""
    from prefect_aws import S3Bucket

    real = S3Bucket.load(s3_bucket_block)
    S3Bucket(bucket_name="no-such-bucket-here", credentials=real.credentials).save(
        "preflight-no-bucket", overwrite=True)
    return "preflight-no-bucket"


@pytest.fixture(scope="module")
def dead_endpoint_block(prefect_harness) -> str:
    """An S3Bucket block whose endpoint nobody listens on."""
    from prefect_aws import AwsCredentials, S3Bucket
    from prefect_aws.client_parameters import AwsClientParameters

    creds = AwsCredentials(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1",
        aws_client_parameters=AwsClientParameters(
            endpoint_url="http://127.0.0.1:9",
            config={"retries": {"max_attempts": 1}, "connect_timeout": 2}))
    S3Bucket(bucket_name="anything", credentials=creds).save("preflight-dead-endpoint",
                                                             overwrite=True)
    return "preflight-dead-endpoint"


def _opts(**kw):
    from prefect_hailuo.flows import GenerationOptions

    return GenerationOptions(resolution="512p", duration=5, **kw)


def _dest(out: Path, bucket: str | None = None):
    from prefect_hailuo.flows import Destination

    return Destination(output_dir=str(out), s3_bucket_block=bucket)


class NothingSent:
    """Asserts the simulator saw no request at all inside the block."""

    def __init__(self, sim) -> None:
        self.sim = sim

    def __enter__(self):
        self.before = len(self.sim.requests())
        return self

    def __exit__(self, *exc):
        assert len(self.sim.requests()) == self.before, self.sim.requests()[self.before:]
        return False


PROMPT = "[Pan right] a harbour wall at noon, gulls overhead"


@pytest.mark.prefect
def test_missing_bucket_block_is_found_before_paying(sim, creds, tmp_path):
    from prefect_hailuo.flows import text_to_video

    with NothingSent(sim), pytest.raises(ConfigurationError,
                                         match="no S3Bucket block named 'nope-bucket'"):
        text_to_video(prompt=PROMPT, options=_opts(), credentials_block=creds,
                      destination=_dest(tmp_path, "nope-bucket"))


@pytest.mark.prefect
def test_unreachable_bucket_is_found_before_paying(sim, creds, tmp_path, missing_bucket_block,
                                                  dead_endpoint_block):
    from prefect_hailuo.flows import ClipSpec, generate_batch, text_to_video

    with NothingSent(sim), pytest.raises(ConfigurationError, match="does not exist"):
        generate_batch(clips=[ClipSpec(prompt=PROMPT)], options=_opts(),
                       credentials_block=creds,
                       destination=_dest(tmp_path, missing_bucket_block))
    with NothingSent(sim), pytest.raises(ConfigurationError, match="not reachable"):
        text_to_video(prompt=PROMPT, options=_opts(), credentials_block=creds,
                      destination=_dest(tmp_path, dead_endpoint_block))


@pytest.mark.prefect
def test_missing_credentials_are_found_before_paying(sim, creds, tmp_path):
    from prefect_hailuo.blocks import HailuoCredentials
    from prefect_hailuo.flows import text_to_video

    with NothingSent(sim), pytest.raises(ConfigurationError,
                                         match="no HailuoCredentials block named 'ghost'"):
        text_to_video(prompt=PROMPT, options=_opts(), credentials_block="ghost",
                      destination=_dest(tmp_path))
    HailuoCredentials(base_url=sim.base_url, api_key_secret_block="ghost-secret").save(
        "preflight-no-secret", overwrite=True)
    with NothingSent(sim), pytest.raises(ConfigurationError,
                                         match="no Secret block named 'ghost-secret'"):
        text_to_video(prompt=PROMPT, options=_opts(), credentials_block="preflight-no-secret",
                      destination=_dest(tmp_path))


@pytest.mark.prefect
def test_missing_or_broken_image_is_found_before_paying(sim, creds, tmp_path):
    from prefect_hailuo.flows import ClipSpec, first_last_frame, generate_batch, image_to_video

    with NothingSent(sim), pytest.raises(InvalidImageError, match="not found"):
        image_to_video(first_frame_image=str(tmp_path / "missing.png"), prompt="it moves",
                       options=_opts(), credentials_block=creds, destination=_dest(tmp_path))
    good = make_png(tmp_path / "good.png")
    fake = tmp_path / "fake.png"
    fake.write_text("this is not a picture")
    with NothingSent(sim), pytest.raises(InvalidImageError, match="last_frame_image"):
        first_last_frame(first_frame_image=str(good), last_frame_image=str(fake),
                         prompt="it turns", options=_opts(), credentials_block=creds,
                         destination=_dest(tmp_path))
    # in a batch, the broken clip stops the whole batch before any clip is paid for
    with NothingSent(sim), pytest.raises(InvalidImageError):
        generate_batch(clips=[ClipSpec(prompt=PROMPT),
                              ClipSpec(prompt="it moves", first_frame_image=str(fake))],
                       options=_opts(), credentials_block=creds, destination=_dest(tmp_path))


@pytest.mark.prefect
def test_storyboard_audio_is_checked_before_paying(sim, creds, tmp_path):
    """Before: two paid clips, then the stitch found the audio file missing."""
    from prefect_hailuo.flows import multi_clip_continuity, storyboard

    keys = [make_png(tmp_path / f"k{i}.png", color=(40 * i, 90, 160)) for i in range(3)]
    board = {"title": "sound check", "first_image": str(keys[0]),
             "audio": str(tmp_path / "missing-theme.m4a"),
             "segments": [{"prompt": f"the colours drift, part {i}", "keyframe": str(keys[i])}
                          for i in (1, 2)]}
    with NothingSent(sim), pytest.raises(ConfigurationError, match="audio file not found"):
        storyboard(storyboard=board, options=_opts(), credentials_block=creds,
                   destination=_dest(tmp_path))
    not_audio = tmp_path / "theme.m4a"
    not_audio.write_bytes(b"\x00" * 2048)
    with NothingSent(sim), pytest.raises(ConfigurationError, match="audio"):
        multi_clip_continuity(storyboard={**board, "audio": str(not_audio)}, options=_opts(),
                              credentials_block=creds, destination=_dest(tmp_path))


@pytest.mark.prefect
def test_unwritable_output_folder_is_found_before_paying(sim, creds, tmp_path):
    from prefect_hailuo.flows import text_to_video

    blocker = tmp_path / "a-file"
    blocker.write_text("a file where a folder should be")
    with NothingSent(sim), pytest.raises(ConfigurationError, match="output folder"):
        text_to_video(prompt=PROMPT, options=_opts(), credentials_block=creds,
                      destination=_dest(blocker / "out"))


@pytest.mark.prefect
def test_a_submit_lock_that_cannot_work_is_found_before_paying(sim, creds, tmp_path,
                                                               monkeypatch):
    from prefect_hailuo.flows import text_to_video

    monkeypatch.setenv("HAILUO_SUBMIT_LOCK_MANAGER", "no_such_module_here:locks")
    with NothingSent(sim), pytest.raises(ConfigurationError, match="submit lock"):
        text_to_video(prompt=PROMPT, options=_opts(), credentials_block=creds,
                      destination=_dest(tmp_path))
    monkeypatch.delenv("HAILUO_SUBMIT_LOCK_MANAGER")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("HAILUO_SUBMIT_LOCK_DIR", str(blocker / "locks"))
    with NothingSent(sim), pytest.raises(ConfigurationError, match="submit lock folder"):
        text_to_video(prompt=PROMPT, options=_opts(), credentials_block=creds,
                      destination=_dest(tmp_path))


@pytest.mark.prefect
def test_s3_input_without_bucket_block_is_refused_at_once(sim, creds, tmp_path):
    from prefect_hailuo.flows import image_to_video

    with NothingSent(sim), pytest.raises(ConfigurationError, match="s3_bucket_block"):
        image_to_video(first_frame_image="s3://hailuo-test/inputs/x.png", prompt="it moves",
                       options=_opts(), credentials_block=creds, destination=_dest(tmp_path))


# --------------------------------------------------------------------------- "" is unset


def test_empty_strings_mean_not_set():
    from hailuo.storyboard import Storyboard
    from prefect_hailuo.flows import ClipSpec, Destination, GenerationOptions

    dest = Destination.model_validate({"output_dir": "", "s3_bucket_block": "  "})
    assert dest.output_dir == "out" and dest.s3_bucket_block is None
    opts = GenerationOptions.model_validate({"model": "", "resolution": "", "duration": "",
                                             "callback_public_url": "", "max_cost_usd": ""})
    assert opts.model == GenerationOptions().model
    assert (opts.resolution, opts.duration, opts.callback_public_url,
            opts.max_cost_usd) == (None, None, None, None)
    spec = ClipSpec.model_validate({"name": "", "prompt": "x", "first_frame_image": "",
                                    "last_frame_image": "", "subject_reference": "",
                                    "model": "", "resolution": "", "take": ""})
    assert spec.model_dump(exclude_none=True) == {"prompt": "x"}
    board = Storyboard.model_validate({"first_image": "", "audio": "", "style_suffix": "",
                                       "model": "", "segments": [
                                           {"prompt": "a", "keyframe": "", "name": ""}]})
    assert (board.first_image, board.audio, board.style_suffix, board.model) == (None,) * 4
    assert board.segments[0].keyframe is None and board.segments[0].name is None
    assert board.shots(chain_all=False)[0].first_frame_image is None


@pytest.mark.prefect
def test_empty_string_parameters_run_as_not_set(sim, creds, tmp_path):
    from prefect_hailuo.flows import image_to_video, text_to_video

    before = sim.submits()
    clip = text_to_video(prompt=PROMPT, credentials_block=creds,
                         options={"resolution": "512p", "duration": 5, "model": "",
                                  "callback_public_url": ""},
                         destination={"output_dir": str(tmp_path), "s3_bucket_block": ""})
    assert clip.s3_uri is None and Path(clip.local_path).is_file()
    assert sim.submits() == before + 1
    with NothingSent(sim), pytest.raises(InvalidRequestError, match="first_frame_image is "
                                         "required"):
        image_to_video(first_frame_image="", prompt="it moves", options=_opts(),
                       credentials_block=creds, destination=_dest(tmp_path))


# --------------------------------------------------------------------------- no retries


def _failed_with(exc: BaseException):
    def result():
        raise exc
    return SimpleNamespace(result=result)


def test_configuration_errors_are_never_retried():
    from botocore.exceptions import ClientError, EndpointConnectionError

    from prefect_hailuo.tasks.generation import retry_if_safe
    from prefect_hailuo.tasks.retries import retry_unless_permanent

    never = [ConfigurationError("no block"), InvalidImageError("broken", field="x"),
             InvalidRequestError("bad"), ValueError("Unable to find block document"),
             FileNotFoundError("gone"), PermissionError("denied"),
             ClientError({"Error": {"Code": "NoSuchBucket"},
                          "ResponseMetadata": {"HTTPStatusCode": 404}}, "HeadBucket"),
             ClientError({"Error": {"Code": "Whatever"},
                          "ResponseMetadata": {"HTTPStatusCode": 403}}, "PutObject")]
    for exc in never:
        assert not retry_unless_permanent(None, None, _failed_with(exc)), exc
        assert not retry_if_safe(None, None, _failed_with(exc)), exc
    transient = [DownloadError("cut off"), ProviderUnavailableError("502"),
                 EndpointConnectionError(endpoint_url="http://s3"), ConnectionResetError(),
                 ClientError({"Error": {"Code": "SlowDown"},
                              "ResponseMetadata": {"HTTPStatusCode": 503}}, "PutObject")]
    for exc in transient:
        assert retry_unless_permanent(None, None, _failed_with(exc)), exc


def test_every_retrying_task_has_a_retry_condition():
    """A task that retries on everything would retry configuration errors too."""
    import prefect_hailuo.tasks as tasks

    for name in tasks.__all__:
        task = getattr(tasks, name)
        if task.retries:
            assert task.retry_condition_fn is not None, name
