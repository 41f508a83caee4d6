"""MiniMax video v2 (MiniMax-H3 / MiniMax-H3-Max) calls of ``HailuoClient``.

``HailuoClient`` routes here when its provider is MiniMax and the request's model (or the
task's) is an H3 model: ``prepare``, ``submit``, ``status`` (and so ``wait`` and
``download``), ``parse_callback``, ``cancel`` and ``list_tasks``. The wire format is
``hailuo.providers.minimax_v2``; the client's own helpers do the HTTP (bounded GETs with
retries, answer caps, key scrubbing, id checks), so v2 answers get the same hardening.

Money safety on v2 (api-contract-v2.md 1.8, 7.8). MiniMax documents no Idempotency-Key
for v2, so a submit is never sent twice blindly:

* a definite refusal (4xx with MiniMax's error body: invalid params, a plan key that
  cannot use H3 (2013), no balance, a sensitive prompt) is raised as its typed error;
* a rate limit (429 / 1002) is waited out and the same body resent (nothing was made);
* anything else after the body left (connection lost, 5xx, an unusable 2xx) is
  RECONCILED from the list endpoint before anything is re-sent: tasks of the same model
  (``filter.model``, ``filter.task_type=generation``) created around our send (from
  ``RECONCILE_SKEW`` before it to now), with the same resolution, duration, ratio and -
  when the listing carries it - prompt text, not already owned by this process. Exactly
  one match: that task is adopted (its id returned, nothing re-sent). Several: an
  ``AmbiguousSubmitError`` listing them. None: an ``AmbiguousSubmitError`` - unless the
  provider answered with its own structured error (a ``server_error`` body), a definite
  "not done", in which case the same body is sent again (at most ``max_retries`` times,
  each time reconciled first).

Local media go inline as data URIs while the whole body stays within 64 MB (minus a
margin); the largest ones (and MOV videos, for which the docs give no data URI type) are
uploaded with ``POST /v1/files/upload`` and sent as ``mm_file://<file_id>``. Uploads are
free, so they are retried; one is reused by content hash for ``UPLOAD_REUSE_SECONDS``.

Task routing: a process-wide registry remembers which task ids (per base URL) are v2
tasks, filled by ``submit``, ``status`` and any ``Job`` with an H3 ``model`` handed to
``wait`` / ``download``; ``HailuoClient.status(task_id, model="MiniMax-H3")`` routes a bare
id from another process. MiniMax ids do not say which API made them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from hailuo import decisions, errors, netguard
from hailuo.capabilities import H3_MAX_BODY_BYTES, Provider, is_h3
from hailuo.fingerprint import request_fingerprint
from hailuo.h3media import CheckedMedia, check_media, check_total_seconds
from hailuo.ids import check_id, is_safe_id
from hailuo.models import Job, JobStatus, VideoRequest, utcnow
from hailuo.providers import SIMULATOR_HEADER
from hailuo.providers.base import from_unix
from hailuo.providers.minimax_v2 import (
    MEDIA_FIELDS,
    MM_FILE,
    UPLOAD_PURPOSE,
    V2_DIALECT,
    is_definite_error,
    job_from_task,
)

if TYPE_CHECKING:
    from hailuo.client import HailuoClient

log = logging.getLogger("hailuo.client")

V2 = V2_DIALECT
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
#: ``prepare`` shows a local medium bound for an upload as this prefix + its sha256.
UPLOAD_PLACEHOLDER = "upload:sha256:"
#: Room left in the 64 MB body for the JSON around the data URIs.
BODY_MARGIN = 256 * 1024
#: An upload of the same bytes is reused this long (MiniMax documents no retention).
UPLOAD_REUSE_SECONDS = 3600.0
#: Reconciling: tasks created from this long before our send (clock skew) count.
RECONCILE_SKEW = 120.0
#: Looks at the list endpoint when nothing matches yet (the list may lag a little), and
#: the pause between them; pages read per look.
RECONCILE_LOOKS = 3
RECONCILE_PAUSE = 2.0
RECONCILE_PAGES = 3
RECONCILE_PAGE_SIZE = 50
MAX_KNOWN_TASKS = 100_000


# -- routing ---------------------------------------------------------------------------------
_known: OrderedDict[tuple[str, str], str] = OrderedDict()
_known_lock = threading.Lock()


def routes(client: HailuoClient, model: str | None) -> bool:
    """Whether a request for ``model`` goes to MiniMax's v2 API on this client."""
    return client.provider is Provider.MINIMAX and is_h3(model)


def remember(client: HailuoClient, task_id: str, model: str | None) -> None:
    """Note that ``task_id`` on this base URL is a v2 task."""
    if client.provider is not Provider.MINIMAX:
        return
    with _known_lock:
        _known[(client.base_url, task_id)] = model or "MiniMax-H3"
        _known.move_to_end((client.base_url, task_id))
        while len(_known) > MAX_KNOWN_TASKS:
            _known.popitem(last=False)


def remember_job(client: HailuoClient, job: Job | str) -> None:
    """A ``Job`` carrying an H3 model routes its task id to v2 from now on."""
    if isinstance(job, Job) and is_h3(job.model):
        remember(client, job.task_id, job.model)


def known(client: HailuoClient, task_id: str) -> bool:
    with _known_lock:
        return (client.base_url, task_id) in _known


def _owned(client: HailuoClient) -> set[str]:
    with _known_lock:
        return {tid for (base, tid) in _known if base == client.base_url}


def handles(client: HailuoClient, task_id: str, model: str | None = None) -> bool:
    """Whether a status call for ``task_id`` goes to v2."""
    return client.provider is Provider.MINIMAX and (is_h3(model) or known(client, task_id))


# -- small helpers (``hailuo.client`` reads its answers with these too) ----------------------
def _retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds, delta or HTTP date (``decisions.parse_retry_after``,
    as the client reads it)."""
    return decisions.parse_retry_after(response.headers.get("Retry-After"), utcnow())


def _simulated(response: httpx.Response | None) -> bool:
    """Whether the answer came from the simulator (None: no answer, so not simulated)."""
    return response is not None and response.headers.get(SIMULATOR_HEADER) == "1"


# -- media -----------------------------------------------------------------------------------
def check(client: HailuoClient, request: VideoRequest
          ) -> tuple[VideoRequest, dict[str, list[CheckedMedia]]]:
    """Validate the request and every medium (bytes read, measured, hashed)."""
    validated = request.validate_for(client.provider)
    media: dict[str, list[CheckedMedia]] = {}
    for field in MEDIA_FIELDS:
        value = getattr(validated, field)
        if not value:
            continue
        if isinstance(value, str):
            media[field] = [check_media(value, field=field)]
            continue
        items = [check_media(v, field=field, index=i) for i, v in enumerate(value)]
        if field in ("reference_videos", "reference_audios"):
            check_total_seconds(items, field)
        media[field] = items
    return validated, media


def _plan_uploads(request: VideoRequest, media: Mapping[str, list[CheckedMedia]]
                  ) -> set[int]:
    """``id()`` of the local items to upload so the body fits in 64 MB: MOV always, then
    the largest first while the body is too big."""
    from hailuo.h3media import UPLOAD_ONLY

    local = [m for items in media.values() for m in items if m.local]
    chosen = {id(m) for m in local if m.format in UPLOAD_ONLY}
    total = len(json.dumps(request.prompt or "")) + 2048 + sum(
        len(MM_FILE) + 24 if id(m) in chosen else m.data_uri_size
        for items in media.values() for m in items)
    for item in sorted((m for m in local if id(m) not in chosen),
                       key=lambda m: m.data_uri_size, reverse=True):
        if total <= H3_MAX_BODY_BYTES - BODY_MARGIN:
            break
        chosen.add(id(item))
        total -= item.data_uri_size - len(MM_FILE) - 24
    return chosen


def _wire(client: HailuoClient, request: VideoRequest,
          media: Mapping[str, list[CheckedMedia]], *, upload: bool) -> dict[str, Any]:
    chosen = _plan_uploads(request, media)
    wire: dict[str, Any] = {}
    for field, items in media.items():
        values = []
        for item in items:
            if not item.local:
                values.append(item.url)
            elif id(item) not in chosen:
                values.append(item.data_uri())
            elif upload:
                values.append(upload_media(client, item))
            else:
                values.append(f"{UPLOAD_PLACEHOLDER}{item.sha256}")
        wire[field] = values[0] if field in ("first_frame_image", "last_frame_image") \
            else values
    return wire


def _body(client: HailuoClient, request: VideoRequest,
          media: Mapping[str, list[CheckedMedia]], *, upload: bool) -> dict[str, Any]:
    body = V2.submit_body(request, _wire(client, request, media, upload=upload))
    size = len(json.dumps(body, separators=(",", ":")))
    if size > H3_MAX_BODY_BYTES:
        raise errors.InvalidRequestError(
            f"the request body would be {size / 2**20:.1f} MB; MiniMax accepts at most "
            f"{H3_MAX_BODY_BYTES // 2**20} MB (give large media as URLs)", field="content")
    return body


def prepare(client: HailuoClient, request: VideoRequest) -> tuple[VideoRequest, dict[str, Any]]:
    """Validate locally and build the v2 body, without any network call (media bound
    for an upload show as ``upload:sha256:<hex>``)."""
    validated, media = check(client, request)
    return validated, _body(client, validated, media, upload=False)


_uploads: dict[str, tuple[str, float]] = {}
_upload_lock = threading.Lock()


def upload_media(client: HailuoClient, item: CheckedMedia) -> str:
    """``mm_file://<file_id>`` of ``item`` on MiniMax: a recent upload of the same bytes
    by the same account, else a new ``POST /v1/files/upload``."""
    assert item.data is not None and item.sha256 is not None
    key = hashlib.sha256("\0".join((client.base_url, client.account_hash,
                                    item.sha256)).encode()).hexdigest()
    now = time.monotonic()
    with _upload_lock:
        hit = _uploads.get(key)
    if hit is not None and now - hit[1] < UPLOAD_REUSE_SECONDS:
        return hit[0]
    url = _post_upload(client, item)
    with _upload_lock:
        _uploads[key] = (url, now)
    log.info("%s uploaded to MiniMax (%d bytes, sha256 %s)", item.label, len(item.data),
             item.sha256[:12])
    return url


def _post_upload(client: HailuoClient, item: CheckedMedia) -> str:
    """One upload, retried on any transient failure: uploads cost nothing, so a second
    copy of a file is harmless (a second paid task is not)."""
    attempt = rate_waits = 0
    while True:
        try:
            with netguard.deadline(client.call_deadline):
                response = client._http.post(
                    V2.upload_path, data={"purpose": UPLOAD_PURPOSE},
                    files={"file": (item.filename, item.data, item.mime)})
        except httpx.TransportError as exc:
            if attempt >= client.max_retries:
                raise errors.ProviderUnavailableError(
                    f"the upload of {item.label} to MiniMax failed {attempt + 1} times "
                    f"({type(exc).__name__}); nothing was paid: run again") from None
        else:
            try:
                with client._scrubbed():
                    return V2.parse_upload(response.status_code, client._json(response),
                                           _retry_after(response), item.label)
            except errors.RateLimitedError as exc:
                client._wait_out_rate_limit(exc, rate_waits)
                rate_waits += 1
                continue
            except (errors.ProviderUnavailableError, errors.UnreadableAnswerError):
                if attempt >= client.max_retries:
                    raise
        client._sleep(client._delay(attempt))
        attempt += 1


# -- submit ----------------------------------------------------------------------------------
class _Outcome:
    """What one ambiguous submit does: adopt a listed task, resend, or stop."""

    def __init__(self, client: HailuoClient, request: VideoRequest, fingerprint: str,
                 task_type: str = "generation") -> None:
        self.client, self.request, self.fingerprint = client, request, fingerprint
        self.task_type = task_type

    def how_to_reconcile(self, sent_at: float) -> str:
        when = datetime.fromtimestamp(sent_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return (f"To reconcile: list the account's tasks (GET /v2/query/video_generation?"
                f"filter.model={self.request.model}&filter.task_type={self.task_type}, or "
                f"HailuoClient.list_tasks) for one created around {when}; adopt its id "
                "(wait/download it) or cancel it while queued (HailuoClient.cancel, "
                "DELETE /v2/video_generation/<id>: queued tasks are not charged) before "
                f"submitting again. Request fingerprint: {self.fingerprint}.")

    def error(self, why: str, sent_at: float, *, http_status: int | None = None,
              candidates: Sequence[str] = ()) -> errors.AmbiguousSubmitError:
        return errors.AmbiguousSubmitError(
            f"{why}. Not resubmitted automatically. {self.how_to_reconcile(sent_at)}",
            http_status=http_status, idempotency_key=None,
            request_fingerprint=self.fingerprint, candidates=list(candidates))

    def settle(self, why: str, sent_at: float, *, definite: bool,
               http_status: int | None = None) -> Job | None:
        """The adopted job, or None when a resend is safe (a definite error and nothing
        listed); raises ``AmbiguousSubmitError`` otherwise."""
        looks = 1 if definite else RECONCILE_LOOKS
        matches: list[dict[str, Any]] = []
        uncertain: list[dict[str, Any]] = []
        for look in range(looks):
            if look:
                self.client._sleep(RECONCILE_PAUSE)
            try:
                matches, uncertain = find_matches(self.client, self.request, sent_at,
                                                  task_type=self.task_type)
            except errors.HailuoError as exc:
                raise self.error(f"{why}; the list endpoint could not be read to reconcile "
                                 f"({type(exc).__name__}: {exc.message})", sent_at,
                                 http_status=http_status) from None
            if matches or uncertain:
                break
        if len(matches) == 1 and not uncertain:
            job = job_from_task(matches[0])
            log.warning("%s; reconciled from the list endpoint: adopting MiniMax task %s "
                        "(created %s), nothing re-sent", why, job.task_id,
                        job.submitted_at.isoformat() if job.submitted_at else "?")
            return job
        if matches or uncertain:
            ids = [str(m.get("id")) for m in (*matches, *uncertain)]
            raise self.error(f"{why}; {len(ids)} recent {self.request.model} tasks match "
                             f"this request ({', '.join(ids)})", sent_at,
                             http_status=http_status, candidates=ids)
        if definite:
            return None
        raise self.error(f"{why}; no matching {self.request.model} task is listed (yet): it "
                         "may still appear", sent_at, http_status=http_status)


def submit(client: HailuoClient, request: VideoRequest, *, idempotency_key: str | None = None,
           take: int = 1) -> Job:
    """Send one paid v2 request; returns the task at once. See the module docstring for
    what happens when the answer is lost. ``idempotency_key`` is not sent (v2 documents
    none) and is accepted for the client's common signature only."""
    validated, media = check(client, request)
    fingerprint = request_fingerprint(validated, client.provider, take)
    body = _body(client, validated, media, upload=True)
    return _send(client, V2.submit_path, body, _Outcome(client, validated, fingerprint))


def _send(client: HailuoClient, path: str, body: dict[str, Any], outcome: _Outcome) -> Job:
    """POST one paid body (a create or a regeneration) with the money-safety rules of the
    module docstring; ``outcome`` reconciles an ambiguous answer."""
    model = outcome.request.model
    attempt = rate_waits = 0
    while True:
        sent_at = client._clock()
        response: httpx.Response | None = None
        try:
            with netguard.deadline(client.call_deadline):
                response = client._http.post(path, json=body, headers=V2.submit_headers())
        except _NEVER_SENT as exc:
            client._resend_unsent(exc, attempt, "MiniMax")
            attempt += 1
            continue
        except (httpx.TransportError, httpx.DecodingError) as exc:
            job = outcome.settle(f"the connection to MiniMax broke after the {model} submit "
                                 f"was sent ({type(exc).__name__})", sent_at, definite=False)
            assert job is not None
            return _accepted(client, job, model, response)
        retry_after = _retry_after(response)
        answer = client._json(response)
        status = response.status_code
        try:
            with client._scrubbed():
                job = V2.parse_submit(status, answer, retry_after, model)
        except errors.RateLimitedError as exc:
            client._wait_out_rate_limit(exc, rate_waits, "H3 submit")
            rate_waits += 1
            continue
        except errors.ProviderUnavailableError as exc:
            definite = is_definite_error(status, answer)
            adopted = outcome.settle(f"MiniMax answered HTTP {status} to the {model} submit "
                                     f"({exc.message})", sent_at, definite=definite,
                                     http_status=status)
            if adopted is not None:
                return _accepted(client, adopted, model, response)
            if attempt >= client.max_retries:
                raise
            log.info("H3 submit: MiniMax answered %s and no task was created; sending "
                     "again", status)
            client._sleep(client._delay(attempt, exc.retry_after))
            attempt += 1
            continue
        except errors.HailuoError as exc:
            if status >= 400 and not isinstance(exc, errors.ProviderAnswerError):
                raise  # a definite refusal: invalid, a plan key, no balance, sensitive
            adopted = outcome.settle(f"MiniMax answered HTTP {status} to the {model} submit "
                                     f"with an answer that could not be used ({exc.message})",
                                     sent_at, definite=False, http_status=status)
            assert adopted is not None
            return _accepted(client, adopted, model, response)
        except Exception as exc:  # an oddly shaped answer after the submit
            adopted = outcome.settle(f"MiniMax answered HTTP {status} to the {model} submit "
                                     f"with an unusable answer ({type(exc).__name__})",
                                     sent_at, definite=False, http_status=status)
            assert adopted is not None
            return _accepted(client, adopted, model, response)
        log.info("submitted MiniMax v2 task %s (%s)", job.task_id, model)
        return _accepted(client, job, model, response)


# -- regeneration (upscale) -------------------------------------------------------------------
#: What a base video must be (api-contract-v2.md 1.10, the V2R base_video spec): an
#: unmodified MiniMax-H3 768P output with its audio, 24 fps, W and H divisible by 32, an
#: area of 589,824..1,032,192 px and 107..362 frames in steps of 17.
BASE_AREA = (589_824, 1_032_192)
BASE_FRAMES = (107, 362)


def check_base_video(path: str | os.PathLike[str]) -> CheckedMedia:
    """The local base video of a regeneration, checked like MiniMax will; raises
    ``InvalidRequestError`` naming ``base_video``."""
    from hailuo import media

    item = check_media(str(path), field="reference_videos")  # read, sniffed, measured
    info = media.probe(path)
    why = None
    if round(info.fps) != 24 or abs(info.fps - 24) > 0.01:
        why = f"it runs at {info.fps:g} fps, not 24"
    elif info.width % 32 or info.height % 32:
        why = f"{info.width}x{info.height} is not a multiple of 32 on both sides"
    elif not BASE_AREA[0] <= info.width * info.height <= BASE_AREA[1]:
        why = f"{info.width}x{info.height} is not a 768P size"
    elif not (BASE_FRAMES[0] <= info.frames <= BASE_FRAMES[1]
              and (info.frames - 5) % 17 == 0):
        why = f"{info.frames} frames are not on H3's 17k+5 grid (107..362)"
    elif not info.has_audio:
        why = "it has no audio track (an H3 output always has one)"
    if why:
        raise errors.InvalidRequestError(
            f"base_video {Path(path).name}: {why}; regeneration takes an unmodified "
            "MiniMax-H3 768P output", field="base_video")
    return replace(item, field="base_video", label="base_video")


def regeneration_request(request: VideoRequest, base: CheckedMedia | None = None
                         ) -> VideoRequest:
    """The request a regeneration stands for (for prices, reconciling and cache keys):
    the original one at 2K. ``request`` must be the clip's validated MiniMax-H3 768P
    request."""
    if request.model != "MiniMax-H3":
        raise errors.InvalidRequestError(
            f"regeneration to 2K is documented for MiniMax-H3 only, not {request.model}",
            field="model")
    if (request.resolution or "768p") != "768p":
        raise errors.InvalidRequestError(
            f"regeneration upscales a 768P clip; this one is {request.resolution}",
            field="resolution")
    return request.model_copy(update={"resolution": "2k", "ratio": None})


def regenerate(client: HailuoClient, request: VideoRequest, base_video: str,
               *, take: int = 1) -> Job:
    """Regenerate a finished MiniMax-H3 768P clip at 2K (``POST /v2/video_regeneration``,
    form (b): the same prompt, frames and references, plus the clip as ``base_video``).

    ``request`` is the clip's original request (validated again here); ``base_video`` the
    downloaded, unmodified output (a local file: sent inline, or uploaded when the body
    would pass 64 MB). Paid ($0.05/s plus the original inputs again: ``hailuo.pricing.
    regeneration_quote``), so an ambiguous answer is reconciled from the list endpoint
    (``filter.task_type=regeneration``) exactly like a create. Returns the new task."""
    validated, media = check(client, request)
    target = regeneration_request(validated)
    base = check_base_video(base_video)
    fingerprint = request_fingerprint(target, client.provider, take)
    wire = _wire(client, validated, {**media, "base_video": [base]}, upload=True)
    base_url = wire.pop("base_video")[0]
    body = V2.regeneration_body(validated, wire, base_url)
    size = len(json.dumps(body, separators=(",", ":")))
    if size > H3_MAX_BODY_BYTES:
        raise errors.InvalidRequestError(
            f"the regeneration body would be {size / 2**20:.1f} MB; MiniMax accepts at most "
            f"{H3_MAX_BODY_BYTES // 2**20} MB", field="base_video")
    job = _send(client, V2.regeneration_path, body,
                _Outcome(client, target.model_copy(update={"duration": validated.duration}),
                         fingerprint, task_type="regeneration"))
    return job


def _accepted(client: HailuoClient, job: Job, model: str,
              response: httpx.Response | None) -> Job:
    remember(client, job.task_id, model)
    return job.model_copy(update={"submitted_at": job.submitted_at or utcnow(),
                                  "model": job.model or model,
                                  "simulated": _simulated(response)})


# -- reconcile ---------------------------------------------------------------------------
def _item_text(item: Mapping[str, Any]) -> str | None:
    """The prompt a listed task carries, if the listing shows one (not documented)."""
    for key in ("prompt", "text"):
        if isinstance(item.get(key), str):
            return item[key]
    content = item.get("content")
    if isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text":
                return str(part.get("text") or "")
    if isinstance(content, dict) and isinstance(content.get("text"), str):
        return content["text"]
    return None


def _same(a: Any, b: Any) -> bool:
    return str(a).strip().lower() == str(b).strip().lower()


def find_matches(client: HailuoClient, request: VideoRequest, sent_at: float, *,
                 task_type: str = "generation"
                 ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(matches, uncertain) among the listed tasks: same model, task type, resolution,
    duration, ratio and (when shown) prompt, created from ``RECONCILE_SKEW`` before
    ``sent_at`` to now, not owned by this process. ``uncertain`` ones have no readable
    ``created_at``."""
    owned = _owned(client)
    now = client._clock()
    matches: list[dict[str, Any]] = []
    uncertain: list[dict[str, Any]] = []
    items, _ = list_items(client, model=request.model, task_type=task_type,
                          pages=RECONCILE_PAGES)
    for item in items:
        tid = item.get("id")
        tid = str(tid) if isinstance(tid, int) and not isinstance(tid, bool) else tid
        if not is_safe_id(tid) or tid in owned:
            continue
        if item.get("model") not in (None, "", request.model):
            continue
        if item.get("task_type") not in (None, "", task_type):
            continue
        if item.get("resolution") and request.resolution and not _same(
                item["resolution"], request.resolution):
            continue
        if item.get("duration") not in (None, "") and str(item["duration"]) != str(
                request.duration):
            continue
        if (request.ratio not in (None, "adaptive") and item.get("ratio")
                and not _same(item["ratio"], request.ratio)):
            continue
        text = _item_text(item)
        if text is not None and text.strip() != (request.prompt or "").strip():
            continue
        created = from_unix(item.get("created_at"))
        if created is None:
            uncertain.append({**item, "id": tid})
            continue
        if sent_at - RECONCILE_SKEW <= created.timestamp() <= now + RECONCILE_SKEW:
            matches.append({**item, "id": tid})
    return matches, uncertain


def list_items(client: HailuoClient, *, model: str | None = None, status: str | None = None,
               task_ids: Sequence[str] = (), task_type: str | None = None,
               page_size: int = RECONCILE_PAGE_SIZE, pages: int = 1,
               page_num: int = 1) -> tuple[list[dict[str, Any]], bool]:
    """Raw task objects of up to ``pages`` pages of the list endpoint, and whether the
    simulator answered."""
    items: list[dict[str, Any]] = []
    simulated = False
    for page in range(page_num, page_num + max(1, pages)):
        path, params = V2.list_call(model=model, status=status, task_ids=task_ids,
                                    task_type=task_type, page_num=page, page_size=page_size)
        response = client._get(path, params)
        simulated = _simulated(response)
        with client._scrubbed():
            found, total = V2.parse_list(response.status_code,
                                         client._answer(response, "list answer"),
                                         _retry_after(response))
        items.extend(found)
        if len(found) < page_size or (total is not None and page * page_size >= total):
            break
    return items, simulated


def list_tasks(client: HailuoClient, *, model: str | None = None, status: str | None = None,
               task_ids: Sequence[str] = (), task_type: str | None = "generation",
               page_num: int = 1, page_size: int = 20) -> list[Job]:
    """One page of the account's v2 tasks of the last 7 days, as jobs (links included for
    succeeded ones). Items with an unsafe id are skipped."""
    jobs = []
    items, simulated = list_items(client, model=model, status=status, task_ids=task_ids,
                                  task_type=task_type, page_size=page_size, page_num=page_num)
    for item in items:
        try:
            jobs.append(client._clean_job(job_from_task(item)).model_copy(
                update={"simulated": simulated}))
        except (errors.HailuoError, ValueError) as exc:
            log.warning("list: skipped an item (%s)", type(exc).__name__)
    return jobs


# -- status, callback, cancel ------------------------------------------------------------
def query(client: HailuoClient, task_id: str) -> tuple[Job, httpx.Response]:
    """One query of a task (id in the path), checked to be about that task."""
    task_id = check_id(task_id, what="task id")
    response = client._get(*V2.status_call(task_id))
    return status_answer(client, task_id, response), response


def status_answer(client: HailuoClient, task_id: str, response: httpx.Response) -> Job:
    """The job a status answer (already read) reports, checked to be about ``task_id``
    (``AsyncHailuoClient`` reads its own GET's answer with it too)."""
    job = client._parse("status answer", task_id, lambda: V2.parse_status(
        task_id, response.status_code, client._answer(response, "status answer"),
        _retry_after(response), lenient=True))
    return client._same_task(job, task_id)


def status_result(client: HailuoClient, job: Job, response: httpx.Response) -> Job:
    """What ``status`` returns for a queried job: the task remembered as v2,
    ``ResultMissingError`` for a succeeded one without ``content.url``
    (``decisions.v2_result_missing``), else the clean job."""
    remember(client, job.task_id, job.model)
    missing = decisions.v2_result_missing(job)
    if missing is not None:
        raise missing
    return client._clean_job(job).model_copy(update={"simulated": _simulated(response)})


def status(client: HailuoClient, task_id: str) -> Job:
    """The task now; a succeeded task carries a fresh ``content.url`` (each query signs a
    new one, which is how an expired link is refreshed)."""
    job, response = query(client, task_id)
    return status_result(client, job, response)


def is_v2_body(client: HailuoClient, body: Any) -> bool:
    """A v2 callback body (``{"task": {...}}``) on a MiniMax client."""
    return (client.provider is Provider.MINIMAX and isinstance(body, dict)
            and isinstance(body.get("task"), dict))


def parse_callback(client: HailuoClient, body: Any, task_id: str | None = None) -> Job:
    task = body["task"]
    tid = check_id(task_id or task.get("id"), what="task id")
    job = client._parse("callback body", tid, lambda: V2.parse_status(tid, 200, body, None))
    job = client._same_task(job, tid)
    remember(client, tid, job.model)
    return client._clean_job(job)


def cancel(client: HailuoClient, task_id: str, *, delete_finished: bool = False) -> Job:
    """Cancel a QUEUED v2 task (``DELETE /v2/video_generation/{id}``; not charged).

    The task is queried first: a running task cannot be cancelled (MiniMax answers an
    error) and a finished one would be DELETED, its record gone - both are returned
    unchanged, unless ``delete_finished`` asks to delete a succeeded / failed task. The
    returned job says what happened (``CANCELLED`` when it was cancelled)."""
    current, _ = query(client, task_id)
    remember(client, current.task_id, current.model)
    if current.status is JobStatus.QUEUED or (current.status.terminal and delete_finished
                                              and current.status is not JobStatus.CANCELLED):
        return _delete(client, current)
    if current.status is not JobStatus.CANCELLED:
        log.info("MiniMax task %s is %s: not cancelled (only queued tasks can be)",
                 current.task_id, current.status.value)
    return client._clean_job(current)


def _delete(client: HailuoClient, current: Job) -> Job:
    path = V2.cancel_path(current.task_id)
    attempt = 0
    while True:
        try:
            with netguard.deadline(client.call_deadline):
                response = client._http.delete(path)
        except httpx.TransportError as exc:
            if attempt >= client.max_retries:
                raise errors.ProviderUnavailableError(
                    f"cancelling MiniMax task {current.task_id} failed ({type(exc).__name__})",
                    task_id=current.task_id) from None
            after, _ = query(client, current.task_id)  # did the first DELETE land?
            if after.status is not current.status:
                return client._clean_job(after)
        else:
            try:
                with client._scrubbed():
                    action, job = V2.parse_cancel(current.task_id, response.status_code,
                                                  client._json(response), _retry_after(response))
            except (errors.RateLimitedError, errors.ProviderUnavailableError) as exc:
                if attempt >= client.max_retries:
                    raise
                client._sleep(client._delay(attempt, exc.retry_after))
                attempt += 1
                continue
            log.info("MiniMax task %s: %s", current.task_id, action or job.status.value)
            return job.model_copy(update={"model": current.model,
                                          "simulated": _simulated(response)})
        client._sleep(client._delay(attempt))
        attempt += 1


def cancel_all(client: HailuoClient, task_ids: Iterable[str]) -> dict[str, Job | Exception]:
    """Cancel every queued task of ``task_ids`` (a flow run being cancelled): the outcome
    per task, errors included, never raised."""
    out: dict[str, Job | Exception] = {}
    for task_id in task_ids:
        try:
            out[task_id] = cancel(client, task_id)
        except Exception as exc:  # noqa: BLE001 - one bad id must not stop the others
            out[task_id] = exc
    return out
