"""The HTTP face of the simulator: both providers' routes, faults, auth, the admin API.

Why the order of checks in ``Exchange.begin`` (drop, slow, auth, 5xx) and then, for a
submit, scripted answers -> replay -> rate limit -> validation: a dropped connection
happens before the provider sees anything; an idempotent replay must return the original
task without spending quota; and the provider counts a request against the rate limit
before it looks at the body. Every request is logged with a sha256 of its body and
whether the key was accepted - never the key itself.

APIMart as it is today (api-contract-v2.md section 2): ``POST /v1/uploads/images`` and the
URLs it hands out, ``GET /v1/model-schema`` (whose ``idempotency`` answer also decides
whether ``Idempotency-Key`` is honoured), the 2026-07-27 answer (HTTP 202) when asked for,
409 ``idempotency_in_progress`` while the first request with a key is still being handled,
``idempotency_key_reused`` for the same key with another body, and data: URLs refused.
The other documented answers (``build_request_failed``, ``success: false``, the other
idempotency words, MiniMax 1013 and missing links, a key of the other region) come from
knobs: ``scripted_faults`` / ``fault_rates`` and the behaviour knobs in ``config.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import math
import time
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from pydantic import ValidationError
from starlette.responses import JSONResponse, Response

from hailuo.capabilities import Provider
from hailuo.providers import SIMULATOR_HEADER
from hailuo.simulator import hostile, uploads, v2
from hailuo.simulator.config import SimulatorConfig
from hailuo.simulator.core import Simulator
from hailuo.simulator.downloads import FileStream, cdn_error
from hailuo.simulator.faults import (
    IDEMPOTENCY_ERRORS,
    apimart_error,
    apimart_word_error,
    minimax_base,
    minimax_error,
    server_error_body,
)
from hailuo.simulator.media_apis import register_media_routes
from hailuo.simulator.state import Phase, Replay, Task
from hailuo.simulator.transport import DropConnection
from hailuo.simulator.validation import Rejected, parse_submission

RESPONSE_VERSION = "2026-07-27"
MAX_UPLOAD_REQUEST = 21 * 1024 * 1024  # 20 MB of image plus multipart framing

request_log = logging.getLogger("hailuo.simulator.requests")

APIMART, MINIMAX = Provider.APIMART, Provider.MINIMAX


class Exchange:
    """One request's journey: early faults, auth, the answer, and its log entry."""

    def __init__(self, sim: Simulator, request: Request, provider: Provider | None,
                 kind: str) -> None:
        self.sim = sim
        self.request = request
        self.provider = provider
        self.kind = kind
        self.who: str | None = None
        self.faults: list[str] = []
        self.entry: dict[str, Any] = {
            "time": time.time(), "method": request.method, "path": request.url.path,
            "query": _safe_query(request), "provider": str(provider) if provider else None,
            "kind": kind, "status": None, "code": None, "task_id": None,
            "idempotency_key": request.headers.get("idempotency-key"), "replay": False,
            "accepted": False, "fault": None, "body_sha256": None, "auth": None,
        }

    @property
    def base_url(self) -> str:
        return str(self.request.base_url).rstrip("/")

    async def begin(self) -> Response | DropConnection | None:
        """Faults that strike before the provider looks at the request, then auth."""
        config = self.sim.config
        if self.sim.dice.roll("drop_before", config.drop_before_rate):
            return self.drop("dropped_before")
        if config.slow_seconds > 0:
            self.faults.append("slow")
            await asyncio.sleep(config.slow_seconds)
        denied = self._authenticate()
        if denied is not None:
            return denied
        if self.sim.dice.roll("error_rate", config.error_rate):
            status = self.sim.dice.choice("error_status", [500, 502, 503])
            self.faults.append("server_error")
            return self.server_error(status)
        if self.sim.dice.roll("rate_limit_rate", config.rate_limit_rate):
            return self.too_many("random rate limit", retry_after=1)
        return None

    def server_error(self, status: int) -> Response:
        """A 5xx in the provider's shape (the v2 routes answer in theirs)."""
        assert self.provider is not None
        return self.reply(server_error_body(self.provider, status), status)

    def _authenticate(self) -> Response | None:
        header = self.request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        key = key.strip() if scheme.lower() == "bearer" else ""
        accepted = self.sim.config.accepted_keys
        if not key:
            self.entry["auth"] = "missing"
        elif accepted is None or any(hmac.compare_digest(key.encode(), k.encode())
                                     for k in accepted):
            region = self.sim.config.wrong_region_code
            if region is not None and self.provider is MINIMAX:
                # A key of the other region: MiniMax refuses it like a wrong key.
                self.entry["auth"] = "wrong_region"
                self.faults.append("wrong_region")
                return self.reply(minimax_error(region))
            self.entry["auth"] = "accepted"
            self.who = hashlib.sha256(key.encode()).hexdigest()[:16]
            return None
        else:
            self.entry["auth"] = "rejected"
        if self.provider is APIMART:
            return self.reply(apimart_error(401, "Invalid API key", "authentication_error"), 401)
        code = 1004 if self.entry["auth"] == "missing" else 2049
        return self.reply(minimax_error(code))

    def rate_limit(self, bucket: str, limit: int | None) -> Response | None:
        assert self.who is not None
        wait = self.sim.state.limiter.check(self.who, bucket, limit, time.time())
        if wait is None:
            return None
        return self.too_many(f"{limit} requests per minute", retry_after=int(wait))

    def too_many(self, why: str, *, retry_after: int) -> Response:
        """The provider's rate-limit answer: APIMart HTTP 429, MiniMax 200 + code 1002."""
        self.faults.append("rate_limited")
        headers = {"Retry-After": str(retry_after)}
        if self.provider is APIMART:
            body = apimart_error(429, f"Rate limit exceeded: {why}", "rate_limit_error")
            return self.reply(body, 429, headers)
        return self.reply(minimax_error(1002, f"rate limit exceeded ({why})"), 200, headers)

    def invalid(self, message: str, *, status: int = 400, type_: str = "invalid_request_error",
                **minimax_extra: Any) -> Response:
        """The provider's "bad request" (APIMart HTTP 400, MiniMax 200 + code 2013)."""
        if self.provider is APIMART:
            return self.reply(apimart_error(status, message, type_), status)
        return self.reply(minimax_error(2013, f"invalid params, {message}", **minimax_extra))

    def refuse(self, message: str) -> Response:
        """The provider refusing a submit's parameters: APIMart HTTP 400, or HTTP 500
        ``build_request_failed`` when so configured; MiniMax 200 + code 2013."""
        if self.provider is APIMART and (
                self.sim.config.apimart_invalid_answer == "build_request_failed"):
            return self.build_request_failed(message)
        return self.invalid(message, task_id="")

    def build_request_failed(self, message: str) -> Response:
        self.faults.append("build_request_failed")
        body = apimart_word_error("build_request_failed", message, 500,
                                  "invalid_request_error", self.sim.config.apimart_error_style)
        return self.reply(body, 500)

    def idempotency_error(self, word: str, retry_after: int | None = None) -> Response:
        status, message = IDEMPOTENCY_ERRORS[word]
        self.faults.append(word)
        body = apimart_word_error(word, message, status, "idempotency_error",
                                  self.sim.config.apimart_error_style)
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        return self.reply(body, status, headers)

    def reply(self, body: dict[str, Any], status: int = 200,
              headers: dict[str, str] | None = None) -> Response:
        body = hostile.echo_key(self, body, status)
        self.entry["code"] = _provider_code(body)
        self.finish(status)
        return JSONResponse(body, status_code=status, headers=headers)

    def drop(self, fault: str) -> DropConnection:
        self.faults.append(fault)
        self.finish(None)
        return DropConnection()

    def finish(self, status: int | None) -> None:
        entry = self.entry
        entry["status"] = status
        entry["fault"] = ",".join(self.faults) or None
        entry["duration"] = round(time.time() - entry["time"], 4)
        self.sim.state.log(entry)
        request_log.info(
            "%s %s -> %s [%s%s]%s%s%s", entry["method"], entry["path"],
            status if status is not None else "(connection closed)", entry["kind"],
            f" code={entry['code']}" if entry["code"] not in (None, 0, 200) else "",
            f" task={entry['task_id']}" if entry["task_id"] else "",
            " replay" if entry["replay"] else "",
            f" fault={entry['fault']}" if entry["fault"] else "",
        )


def _safe_query(request: Request) -> dict[str, str]:
    return {k: v for k, v in request.query_params.items() if k != "sig"}


def _provider_code(body: dict[str, Any]) -> int | str | None:
    if "base_resp" in body:
        return body["base_resp"].get("status_code")
    if "error" in body and isinstance(body["error"], dict):
        return body["error"].get("code")
    return body.get("code")


def _versioned(config: SimulatorConfig, request: Request) -> bool:
    """Whether APIMart answers a submit in the 2026-07-27 shape (HTTP 202)."""
    if config.apimart_response_version == "legacy":
        return False
    if config.apimart_response_version == RESPONSE_VERSION:
        return True
    return request.headers.get("x-apimart-response-version") == RESPONSE_VERSION


def _canonical_hash(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"))
                          .encode()).hexdigest()


class MarkSimulated:
    """Pure ASGI middleware adding ``SIMULATOR_HEADER`` to every answer. It only touches
    the ``http.response.start`` message, so streamed bodies and dropped connections pass
    through unchanged (a ``BaseHTTPMiddleware`` would buffer and wrap them)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_marked(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                headers.append((SIMULATOR_HEADER.lower().encode(), b"1"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_marked)


def create_app(config: SimulatorConfig | None = None, **knobs: Any) -> FastAPI:
    """The simulator as an ASGI app (serve it with ``run_simulator`` or the CLI, which
    install the protocol that makes dropped connections real)."""
    config = (config or SimulatorConfig()).updated(**knobs) if knobs else (
        config or SimulatorConfig())
    sim = Simulator(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202
        await sim.start()
        try:
            yield
        finally:
            await sim.stop()

    app = FastAPI(title="Hailuo simulator (APIMart + MiniMax)", lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.sim = sim
    app.add_middleware(MarkSimulated)
    v2.register(app, sim, Exchange)  # MiniMax video v2 (H3): hailuo.simulator.v2
    register_media_routes(app, sim, Exchange)  # speech, music, images: media_apis

    idem_locks: dict[tuple[str, str], asyncio.Lock] = {}

    # -- submit ----------------------------------------------------------------------
    def submit_fault(ex: Exchange) -> Response | None:
        """APIMart answers that replace a submit's outcome (scripted or random faults)."""
        for word in ("idempotency_in_progress", "idempotency_result_indeterminate",
                     "idempotency_key_reused", "idempotency_unavailable"):
            if sim.fault(word):
                retry = 1 if word in ("idempotency_in_progress",
                                      "idempotency_unavailable") else None
                return ex.idempotency_error(word, retry)
        if sim.fault("build_request_failed"):
            return ex.build_request_failed("failed to build the upstream request: invalid "
                                           "parameters for this model")
        if sim.fault("success_false"):
            ex.faults.append("success_false")
            return ex.reply({"success": False, "message": "no available channel for this "
                             "model, please try again later"})
        return None

    async def submit(request: Request, provider: Provider) -> Response | DropConnection:
        ex = Exchange(sim, request, provider, "submit")
        early = await ex.begin()
        if early is not None:
            return early
        raw = await request.body()
        ex.entry["body_sha256"] = hashlib.sha256(raw).hexdigest()
        if provider is APIMART:
            faulted = submit_fault(ex)
            if faulted is not None:
                return faulted
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            return ex.refuse("request body is not valid JSON")
        key = request.headers.get("idempotency-key") if provider is APIMART else None
        if sim.config.model_idempotency != "true":
            key = None  # this model does not honour Idempotency-Key: every POST is new
        if not key:
            return await accept(ex, provider, body, None)
        assert ex.who is not None
        lock = idem_locks.setdefault((ex.who, key), asyncio.Lock())
        if lock.locked():  # the first request with this key is still being handled
            return ex.idempotency_error("idempotency_in_progress",
                                        max(1, math.ceil(sim.config.submit_seconds)))
        async with lock:
            replay = sim.state.replays.get((ex.who, key))
            if replay is not None:
                if replay.body_hash != _canonical_hash(body):
                    return ex.idempotency_error("idempotency_key_reused")
                ex.entry.update(replay=True, task_id=replay.task_id)
                return ex.reply(replay.response, replay.status,
                                {**replay.headers, "Idempotency-Replayed": "true"})
            return await accept(ex, provider, body, key)

    def local_image(url: str, field: str) -> bytes | None:
        """An image in the simulator's own upload store (APIMart reads its own uploads)."""
        name = uploads.name_of(url)
        if name is None:
            return None
        upload = sim.state.upload(name)
        if upload is None or upload.expired():
            raise Rejected(f"{field} could not be downloaded (HTTP 404)", field)
        return upload.data

    async def accept(ex: Exchange, provider: Provider, body: Any,
                     key: str | None) -> Response | DropConnection:
        limited = ex.rate_limit("submit", sim.config.rpm)
        if limited is not None:
            return limited
        config = sim.config
        if config.submit_seconds > 0:
            await asyncio.sleep(config.submit_seconds)
        try:
            sub = await parse_submission(
                provider, body, client=sim.client, fetch_timeout=config.image_fetch_timeout,
                data_urls=provider is MINIMAX or config.apimart_data_urls == "accept",
                undocumented_fields=config.undocumented_fields, local_images=local_image)
        except Rejected as exc:
            return ex.refuse(exc.message)
        task = sim.create_task(sub, base_url=ex.base_url, idempotency_key=key)
        ex.entry.update(task_id=task.id, accepted=True)
        status, headers = 200, {}
        if provider is APIMART:
            versioned = _versioned(config, ex.request)
            answer = sim.apimart_submit_body(task, versioned=versioned)
            if versioned:
                status, headers = 202, {"X-APIMart-Response-Version": RESPONSE_VERSION}
        else:
            answer = {"task_id": task.id, "base_resp": minimax_base(0)}
        if key is not None:
            assert ex.who is not None
            sim.state.replays[(ex.who, key)] = Replay(_canonical_hash(body), task.id, answer,
                                                      status, headers)
        if sim.dice.roll("drop_after_submit", config.drop_after_submit_rate):
            return ex.drop("dropped_after_submit")
        if sim.fault("error_after_accept"):
            ex.faults.append("error_after_accept")
            return ex.reply(server_error_body(provider, 502), 502)
        made_hostile = hostile.submit_answer(ex, answer, task.id, status)
        if isinstance(made_hostile, Response):
            return made_hostile
        return ex.reply(made_hostile or answer, status, headers)

    @app.post("/v1/videos/generations")
    async def apimart_submit(request: Request) -> Any:
        return await submit(request, APIMART)

    @app.post("/v1/video_generation")
    async def minimax_submit(request: Request) -> Any:
        return await submit(request, MINIMAX)

    # -- status and files ------------------------------------------------------------
    async def lookup(request: Request, provider: Provider, kind: str
                     ) -> tuple[Exchange, Response | DropConnection | None]:
        ex = Exchange(sim, request, provider, kind)
        early = await ex.begin()
        if early is None:
            early = ex.rate_limit("status", sim.config.status_rpm)
        return ex, early

    @app.get("/v1/tasks/{task_id}")
    async def apimart_status(task_id: str, request: Request) -> Any:
        ex, early = await lookup(request, APIMART, "status")
        if early is not None:
            return early
        ex.entry["task_id"] = task_id
        task = sim.state.task(task_id, APIMART)
        if task is None:
            return ex.invalid(f"Task {task_id} not found", status=404, type_="not_found_error")
        without_url = (task.phase()[0] is Phase.COMPLETED and sim.fault("completed_without_url"))
        if without_url:
            ex.faults.append("completed_without_url")
        return hostile.status_answer(
            ex, sim.apimart_status_body(task, ex.base_url, without_url=without_url), task.id)

    @app.get("/v1/query/video_generation")
    async def minimax_query(request: Request) -> Any:
        ex, early = await lookup(request, MINIMAX, "status")
        if early is not None:
            return early
        task_id = request.query_params.get("task_id", "")
        ex.entry["task_id"] = task_id or None
        task = sim.state.task(task_id, MINIMAX) if task_id else None
        if task is None:
            reason = "task not found" if task_id else "task_id is required"
            return ex.reply({"task_id": task_id, "status": "",
                             "base_resp": minimax_base(2013, f"invalid params, {reason}")})
        without = (task.phase()[0] is Phase.COMPLETED and sim.fault("success_without_file_id"))
        if without:
            ex.faults.append("success_without_file_id")
        return hostile.status_answer(
            ex, sim.minimax_query_body(task, without_file_id=without), task.id)

    @app.get("/v1/files/retrieve")
    async def minimax_file(request: Request) -> Any:
        ex, early = await lookup(request, MINIMAX, "file")
        if early is not None:
            return early
        file_id = request.query_params.get("file_id", "")
        task = sim.state.task_by_file_id(file_id) if file_id else None
        if task is not None:
            ex.entry["task_id"] = task.id
        if task is None or task.phase()[0] is not Phase.COMPLETED:
            return ex.reply(minimax_error(2013, "invalid params, file not found"))
        if sim.fault("file_1013"):
            ex.faults.append("file_1013")
            return ex.reply(minimax_error(1013))
        without_url = sim.fault("file_without_url")
        if without_url:
            ex.faults.append("file_without_url")
        return ex.reply(sim.minimax_file_body(task, ex.base_url, without_url=without_url))

    # -- APIMart uploads and model schema --------------------------------------------
    @app.post("/v1/uploads/images")
    async def apimart_upload(request: Request) -> Any:
        ex = Exchange(sim, request, APIMART, "upload")
        early = await ex.begin()
        if early is not None:
            return early
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_UPLOAD_REQUEST:
            return ex.reply(apimart_error(413, "file too large; the maximum is 20 MB",
                                          "invalid_request_error"), 413)
        raw = await request.body()
        ex.entry["body_sha256"] = hashlib.sha256(raw).hexdigest()
        try:
            data, filename = uploads.file_field(request.headers.get("content-type", ""), raw)
            assert ex.who is not None
            upload = uploads.store(data, filename, who=ex.who,
                                   ttl=sim.config.upload_ttl_seconds)
        except uploads.UploadRefused as exc:
            return ex.reply(apimart_error(exc.status, exc.message, "invalid_request_error"),
                            exc.status)
        sim.state.add_upload(upload)
        ex.entry["accepted"] = True
        base = sim.config.public_base_url or ex.base_url
        return ex.reply(uploads.answer(upload, base))

    @app.api_route(uploads.UPLOAD_ROUTE + "/{name}", methods=["GET", "HEAD"])
    async def uploaded_image(name: str, request: Request) -> Any:
        ex = Exchange(sim, request, None, "image")
        upload = sim.state.upload(name)
        if upload is None or upload.expired():
            ex.finish(404)
            return cdn_error(404, "NoSuchKey", "The specified key does not exist.")
        ex.finish(200)
        content = b"" if request.method == "HEAD" else upload.data
        return Response(content, media_type=upload.content_type,
                        headers={"Content-Length": str(len(upload.data))})

    @app.get("/v1/model-schema")
    async def model_schema(request: Request) -> Any:
        ex = Exchange(sim, request, APIMART, "schema")
        early = await ex.begin()
        if early is not None:
            return early
        model = request.query_params.get("model", "")
        operation = request.query_params.get("operation") or "video_generation"
        if not uploads.known_model(model):
            return ex.invalid(f"model {model or '(none)'} not found", status=404,
                              type_="not_found_error")
        if operation != "video_generation":
            return ex.invalid(f"model {model} does not support operation {operation}")
        return ex.reply(uploads.model_schema(model, operation, sim.config.model_idempotency,
                                             sim.config.model_schema_shape))

    # -- downloads -------------------------------------------------------------------
    async def download(request: Request, route: str, token: str) -> Any:
        ex = Exchange(sim, request, None, "download")
        task = sim.state.task_by_token(token)
        if task is not None:
            ex.entry.update(task_id=task.id, provider=str(task.provider))
        problem = sim.check_signature(route, token, request.query_params.get("expires"),
                                      request.query_params.get("sig"))
        if problem == "bad_signature":
            ex.faults.append(problem)
            ex.finish(403)
            return cdn_error(403, "SignatureDoesNotMatch", "The request signature does not "
                             "match.")
        if problem == "link_expired":
            ex.faults.append(problem)
            ex.finish(410)
            return cdn_error(410, "AccessDenied", "Request has expired")
        if task is None or task.path is None or not task.path.exists():
            ex.finish(404)
            return cdn_error(404, "NoSuchKey", "The specified key does not exist.")
        made_hostile = hostile.download_answer(ex, task.path)
        if made_hostile is not None:
            return made_hostile
        truncate = request.method == "GET" and sim.dice.roll("truncate",
                                                             sim.config.truncate_rate)
        stream = FileStream(task.path, method=request.method,
                            range_header=request.headers.get("range"), truncate=truncate)
        if truncate:
            ex.faults.append("truncated")
        ex.finish(stream.status_code)
        return stream

    @app.api_route("/download/{token}.mp4", methods=["GET", "HEAD"])
    async def download_primary(token: str, request: Request) -> Any:
        return await download(request, "download", token)

    @app.api_route("/download-backup/{token}.mp4", methods=["GET", "HEAD"])
    async def download_backup(token: str, request: Request) -> Any:
        return await download(request, "backup", token)

    # -- admin -----------------------------------------------------------------------
    def admin(request: Request, body: Any, status: int = 200) -> Response:
        ex = Exchange(sim, request, None, "admin")
        ex.finish(status)
        return JSONResponse(body, status_code=status)

    @app.get("/_sim/health")
    async def health(request: Request) -> Any:
        return admin(request, {"ok": True})

    @app.get("/_sim/requests")
    async def requests_log(request: Request) -> Any:
        return admin(request, sim.state.request_log(request.query_params.get("kind")))

    @app.get("/_sim/callbacks")
    async def callbacks_log(request: Request) -> Any:
        return admin(request, sim.state.callback_log())

    @app.get("/_sim/config")
    async def get_config(request: Request) -> Any:
        return admin(request, sim.config.public())

    @app.post("/_sim/config")
    async def set_config(request: Request) -> Any:
        try:
            knobs = await request.json()
            if not isinstance(knobs, dict):
                raise ValueError("expected a JSON object of knobs")
            sim.configure(**knobs)
        except ValidationError as exc:
            return admin(request, {"error": json.loads(exc.json())}, 400)
        except ValueError as exc:
            return admin(request, {"error": str(exc)}, 400)
        return admin(request, sim.config.public())

    @app.post("/_sim/reset")
    async def reset(request: Request) -> Any:
        tasks = request.query_params.get("tasks", "").lower() in ("1", "true", "yes")
        sim.state.reset(tasks=tasks)
        return admin(request, {"reset": True, "tasks": tasks})

    @app.get("/_sim/tasks")
    async def list_tasks(request: Request) -> Any:
        with sim.state.lock:
            tasks = list(sim.state.tasks.values())
        return admin(request, [t.to_admin() for t in tasks])

    @app.get("/_sim/tasks/{task_id}")
    async def get_task(task_id: str, request: Request) -> Any:
        task = sim.state.task(task_id)
        if task is None:
            return admin(request, {"error": "no such task"}, 404)
        return admin(request, task.to_admin())

    @app.post("/_sim/tasks/{task_id}/complete-now")
    async def complete_now(task_id: str, request: Request) -> Any:
        task = sim.state.task(task_id)
        if task is None:
            return admin(request, {"error": "no such task"}, 404)
        await finish_now(task)
        return admin(request, task.to_admin())

    async def finish_now(task: Task) -> None:
        """End the simulated wait now and wait (bounded) for the file to exist."""
        with sim.state.lock:
            task.forced_at = time.time()
        if task.future is not None:
            # A failed render fails the task; its state says so, nothing to raise here.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.wrap_future(task.future), 120)

    return app
