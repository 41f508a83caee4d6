"""A ledger of verified clips: a re-run of a finished batch does (almost) nothing.

Why: without it a re-run walks every clip's whole path — the cached submit, a status
call, the download check, thumbnail, manifest and artifacts, five Prefect task runs a
clip — to arrive at the result it already had: it pays nothing, but for a 1000-clip
batch it still takes minutes (benchmark B7). The ledger is one small JSON file per
finished clip next to its video (``<output_dir>/<group>/.hailuo-ledger/<key>.json``),
written after the clip's file was verified. ``key`` is the clip's identity, the same
parts as the submit cache's (``tasks/generation.py``: the canonical request with images
by content hash, provider, take, account, base URL), so a changed prompt, image, take or
key never matches. A re-run that finds the entry *and* the video still verifying (size,
sha256, it decodes; ``tasks.media.verified_download``) returns the recorded result with
no task run, no API call and no provider call.

Only for local destinations: with an S3 bucket the result carries presigned links that
expire, and the object may have been removed, so those clips take the normal path (which
pays nothing either and re-signs the links). Anything unreadable or not verifying is
treated as absent: the normal path runs and rewrites the entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from hailuo.files import DEFAULT_GROUP, atomic_output, slug
from hailuo.fingerprint import request_fingerprint
from hailuo.models import VideoRequest
from prefect_hailuo.blocks.credentials import HailuoConnection
from prefect_hailuo.flows.models import ClipResult, ClipSpec, Destination, GenerationOptions
from prefect_hailuo.tasks.media import verified_download

log = logging.getLogger("prefect_hailuo.ledger")

LEDGER_FOLDER = ".hailuo-ledger"


def ledger_key(request: VideoRequest, connection: HailuoConnection, take: int) -> str:
    """The clip's identity (no secret: the account is a salted hash of the key)."""
    parts = [request_fingerprint(request, connection.provider, take), connection.provider,
             connection.base_url or "", connection.account_id(), str(take)]
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:40]


def entry_path(destination: Destination, group: str | None, key: str) -> Path:
    folder = Path(destination.output_dir) / slug(group, max_chars=60, fallback=DEFAULT_GROUP)
    return folder / LEDGER_FOLDER / f"{key}.json"


def applies(destination: Destination) -> bool:
    return not destination.s3_bucket_block


def lookup(destination: Destination, group: str | None, key: str) -> ClipResult | None:
    """The recorded result when its files are still there and the video verifies."""
    if not applies(destination):
        return None
    path = entry_path(destination, group, key)
    try:
        result = ClipResult.model_validate_json(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("ledger entry %s unreadable (%s): taking the normal path", path.name, exc)
        return None
    video = Path(result.local_path)
    if verified_download(video, result.task_id) is None or not all(
            Path(p).exists() for p in (result.manifest_path, result.thumbnail_path) if p):
        return None
    return result


def record(destination: Destination, group: str | None, key: str, result: ClipResult) -> None:
    """Write the entry (atomically) once the clip is finished and verified. Never raises:
    a missing entry only means the next re-run takes the normal path."""
    if not applies(destination):
        return
    path = entry_path(destination, group, key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(path) as tmp:
            Path(tmp).write_text(json.dumps(result.model_dump(mode="json"), sort_keys=True))
    except OSError as exc:
        log.warning("could not write ledger entry %s: %s", path, exc)


def split_done(numbered: list[tuple[int, ClipSpec]], connection: HailuoConnection,
               options: GenerationOptions, destination: Destination, group: str | None,
               ) -> tuple[list[tuple[int, ClipResult]], list[tuple[int, ClipSpec]]]:
    """The clips the ledger already holds (verified) and the ones still to run."""
    done: list[tuple[int, ClipResult]] = []
    todo: list[tuple[int, ClipSpec]] = []
    if not applies(destination):
        return done, list(numbered)
    for number, spec in numbered:
        request = spec.to_request(options).validate_for(connection.provider)
        found = lookup(destination, group,
                       ledger_key(request, connection, spec.take or options.take))
        if found is not None:
            done.append((number, found))
        else:
            todo.append((number, spec))
    if done:
        log.info("%d of %d clips already finished and verified (ledger): not run again",
                 len(done), len(numbered))
    return done, todo
