"""S3 tasks through prefect-aws: upload a verified video with its manifest, fetch inputs.

Any S3-compatible endpoint works: the ``S3Bucket`` block's ``AwsCredentials`` carry the
endpoint URL (``aws_client_parameters.endpoint_url``). Key layout, predictable so that a
re-run finds what the first run wrote::

    <prefix>/<provider>/<task_id>/video.mp4
    <prefix>/<provider>/<task_id>/manifest.json
    <prefix>/<provider>/<task_id>/thumbnail.jpg     (when given)
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect_aws import S3Bucket
from pydantic import BaseModel

from hailuo import events
from hailuo.ids import check_id
from hailuo.models import DownloadedVideo
from prefect_hailuo.tasks.retries import retry_unless_permanent

#: Multipart above 16 MB in boto3's own 8 MB parts with its 10 threads: large files stream
#: with at most ~80 MB in flight. (16 MB parts on 4 threads measured slower on a quiet
#: machine: benchmark B4.)
TRANSFER = TransferConfig(multipart_threshold=16 << 20, multipart_chunksize=8 << 20,
                          max_concurrency=10)


class UploadedVideo(BaseModel):
    bucket: str
    key: str
    s3_uri: str
    manifest_uri: str
    presigned_url: str
    thumbnail_uri: str | None = None
    thumbnail_url: str | None = None
    skipped: bool = False


def object_prefix(prefix: str, provider: str, task_id: str) -> str:
    check_id(task_id, what="task id used in an S3 key")  # never "..", "/" or a URL trick
    return "/".join(p.strip("/") for p in (prefix, provider, task_id) if p.strip("/"))


def _served_as(file_name: str | None, disposition: str = "inline") -> dict[str, str]:
    """Presign parameters that make S3 serve an object under ``file_name`` (quotes and
    anything outside printable ASCII left out: the name comes from ``hailuo.files.slug``
    anyway)."""
    if not file_name:
        return {}
    safe = "".join(ch for ch in file_name if 32 < ord(ch) < 127 and ch not in '"\\;')
    return {"ResponseContentDisposition": f'{disposition}; filename="{safe}"'}


def _existing_sha(s3: Any, bucket: str, key: str) -> str | None:
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    return head.get("Metadata", {}).get("sha256")


@task(name="upload-to-s3", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10],
      retry_condition_fn=retry_unless_permanent, task_run_name="upload-{video.task_id}")
def upload_to_s3(
    video: DownloadedVideo,
    manifest: dict[str, Any],
    s3_bucket_block: str,
    prefix: str = "hailuo",
    provider: str = "apimart",
    thumbnail_path: str | None = None,
    presign_seconds: int = 86400,
    file_name: str | None = None,
) -> UploadedVideo:
    """Upload the video (multipart when large), its JSON manifest and thumbnail.

    Skipped when an object with the same sha256 (kept in the object's metadata) is already
    at the key. Returns the S3 URIs and presigned URLs. A failed multipart upload is
    aborted by boto3's transfer manager, so no half-written object is left. With
    ``file_name`` the presigned URLs ask S3 to serve the object under that name
    (``Content-Disposition``), so a link reading ``owl-mm964s7k.mp4`` saves as that file,
    not as ``video.mp4``; the key layout stays the same.
    """
    logger = get_run_logger()
    bucket_block = S3Bucket.load(s3_bucket_block)
    s3 = bucket_block.credentials.get_s3_client()
    bucket = bucket_block.bucket_name
    base = object_prefix("/".join(filter(None, [bucket_block.bucket_folder, prefix])),
                         provider, video.task_id)
    key = f"{base}/video.mp4"
    events.emit(events.UPLOADING, path=str(video.path), bucket=bucket, key=key)
    skipped = _existing_sha(s3, bucket, key) == video.sha256
    if skipped:
        logger.info("s3://%s/%s already holds this video (sha256 matches); not uploading",
                    bucket, key)
    else:
        s3.upload_file(str(video.path), bucket, key, Config=TRANSFER, ExtraArgs={
            "ContentType": "video/mp4", "Metadata": {"sha256": video.sha256}})
        logger.info("uploaded s3://%s/%s (%d bytes)", bucket, key, video.size)
    thumb_uri = thumb_url = None
    if thumbnail_path:
        thumb_key = f"{base}/thumbnail.jpg"
        s3.upload_file(thumbnail_path, bucket, thumb_key,
                       ExtraArgs={"ContentType": "image/jpeg"})
        thumb_uri = f"s3://{bucket}/{thumb_key}"
        thumb_url = s3.generate_presigned_url("get_object", Params={
            "Bucket": bucket, "Key": thumb_key,
            **_served_as(Path(thumbnail_path).name if file_name else None, "inline")},
            ExpiresIn=presign_seconds)
    manifest_key = f"{base}/manifest.json"
    s3.put_object(Bucket=bucket, Key=manifest_key, ContentType="application/json",
                  Body=json.dumps(manifest, indent=2, sort_keys=True, default=str).encode())
    url = s3.generate_presigned_url("get_object", Params={
        "Bucket": bucket, "Key": key, **_served_as(file_name)}, ExpiresIn=presign_seconds)
    events.emit(events.UPLOADED, uri=f"s3://{bucket}/{key}", skipped=skipped)
    return UploadedVideo(bucket=bucket, key=key, s3_uri=f"s3://{bucket}/{key}",
                         manifest_uri=f"s3://{bucket}/{manifest_key}", presigned_url=url,
                         thumbnail_uri=thumb_uri, thumbnail_url=thumb_url, skipped=skipped)


@task(name="fetch-input-image", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10],
      retry_condition_fn=retry_unless_permanent)
def fetch_input_image(uri: str, s3_bucket_block: str | None = None) -> str:
    """Turn an ``s3://bucket/key`` image into a local file (other inputs pass through).

    The bucket block supplies credentials and endpoint; the URI's own bucket is used.
    """
    if not uri.startswith("s3://"):
        return uri
    if not s3_bucket_block:
        raise ValueError(f"{uri} is an S3 URI: give s3_bucket_block for credentials")
    events.emit(events.INPUT_FETCHING, uri=uri)
    parsed = urlparse(uri)
    s3 = S3Bucket.load(s3_bucket_block).credentials.get_s3_client()
    suffix = Path(parsed.path).suffix or ".img"
    out = Path(tempfile.mkdtemp(prefix="hailuo-in-")) / f"input{suffix}"
    s3.download_file(parsed.netloc, parsed.path.lstrip("/"), str(out))
    events.emit(events.INPUT_FETCHED, uri=uri, path=str(out))
    return str(out)
