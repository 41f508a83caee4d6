"""When an I/O task (download, S3 transfer, input fetch) may simply be tried again.

Prefect retries a task with ``retries`` on any exception unless ``retry_condition_fn``
says otherwise. A configuration error (a missing block, a bucket that does not exist, a
file that is not there, a value refused as invalid) fails the same way on every attempt:
retrying only delays the error by the retry delays. The money tasks use the stricter
``retry_if_safe`` (``tasks/generation.py``); this one retries transient failures only.
"""

from __future__ import annotations

from typing import Any

from hailuo.errors import HailuoError

#: S3 error codes that no retry can fix (the bucket, key or permission is wrong).
PERMANENT_S3_CODES = frozenset({
    "AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId", "InvalidBucketName",
    "NoSuchBucket", "NoSuchKey", "SignatureDoesNotMatch", "403", "404",
})


def permanent(exc: BaseException) -> bool:
    """True for errors that fail the same way on every attempt."""
    if isinstance(exc, HailuoError):
        return not exc.retryable  # ConfigurationError, InvalidRequestError, ... are not
    if isinstance(exc, ValueError | TypeError | LookupError | NotImplementedError):
        return True  # a missing block (Block.load), a refused value: configuration
    if isinstance(exc, FileNotFoundError | IsADirectoryError | NotADirectoryError
                  | PermissionError):
        return True
    response = getattr(exc, "response", None)  # botocore ClientError, without importing it
    if isinstance(response, dict):
        code = str(response.get("Error", {}).get("Code", ""))
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in PERMANENT_S3_CODES:
            return True
        if isinstance(status, int) and 400 <= status < 500 and status not in (408, 429):
            return True
    return False


def retry_unless_permanent(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry condition: retry transient failures, never configuration errors."""
    try:
        state.result()
    except Exception as exc:  # noqa: BLE001 - classified below
        return not permanent(exc)
    return False
