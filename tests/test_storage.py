"""S3 behaviour we rely on, against moto's S3 server over real HTTP."""

from __future__ import annotations

import pytest
from boto3.s3.transfer import S3UploadFailedError
from botocore.exceptions import ClientError

from prefect_hailuo.tasks.storage import TRANSFER, object_prefix
from tests.conftest import s3_client


def test_failed_multipart_upload_is_aborted_leaving_nothing(s3_endpoint, tmp_path):
    """A large upload that breaks half-way leaves no object and no open multipart upload."""
    s3 = s3_client(s3_endpoint)
    s3.create_bucket(Bucket="abort-test")
    big = tmp_path / "big.mp4"
    big.write_bytes(b"\1" * (TRANSFER.multipart_threshold + 3 * TRANSFER.multipart_chunksize))
    parts = {"n": 0}

    def fail_second_part(params, **_):
        parts["n"] += 1
        if parts["n"] == 2:
            raise ClientError({"Error": {"Code": "InternalError", "Message": "boom"}},
                              "UploadPart")

    s3.meta.events.register("before-call.s3.UploadPart", fail_second_part)
    with pytest.raises(S3UploadFailedError):
        s3.upload_file(str(big), "abort-test", "v/video.mp4", Config=TRANSFER)
    assert parts["n"] >= 2, "the upload was not multipart"
    assert s3.list_multipart_uploads(Bucket="abort-test").get("Uploads", []) == []
    assert s3.list_objects_v2(Bucket="abort-test").get("KeyCount", 0) == 0


def test_key_layout_is_predictable():
    assert object_prefix("hailuo/", "apimart", "task_1") == "hailuo/apimart/task_1"
    assert object_prefix("", "minimax", "42") == "minimax/42"
