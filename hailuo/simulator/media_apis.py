"""The simulator's speech, music and image APIs (issue 15), in MiniMax's and APIMart's shapes.

Routes (registered by ``register_media_routes(app, sim)`` from ``app.create_app``):

* ``POST /v1/t2a_v2`` - MiniMax speech: real audio in the asked format (mp3, wav, flac,
  pcm, opus, pcmu_raw, pcmu_wav), hex or URL (``data.audio``, or ``data.audio_url`` with
  ``url_field="audio_url"``), ``extra_info`` (``audio_length`` in ms ...), and with
  ``subtitle_enable`` a subtitle file whose sentence times match the audio.
* ``POST /v1/music_generation`` - MiniMax music: a real track whose length comes from the
  prompt ("a 40 second ..."), the lyrics, or ``music_seconds``; ``extra_info.music_duration``.
* ``POST /v1/image_generation`` - MiniMax image-01: PNGs of the asked size, seeded by the
  prompt; URLs or base64; counts under ``metadata`` (strings) or ``data`` (numbers).
* ``POST /v1/images/generations`` + ``GET /v1/tasks/{id}`` - APIMart's async image tasks,
  legacy or 2026-07-27 answers, ``Idempotency-Key`` replays. The status route only matches
  image task ids; video task ids fall through to the video route.
* ``GET /_media/files/{name}`` - result links (no key needed, like a CDN; 410 once expired).
* ``GET|POST /_sim/media/config`` - the knobs below; ``GET /_sim/media/calls`` - paid calls.

Every API route goes through the video routes' ``Exchange``: the same key check
(``accepted_keys``, ``wrong_region_code``), the same random faults (``error_rate``,
``rate_limit_rate``, ``drop_before_rate``, ``slow_seconds``, ``seed``) and the same request
log, where a produced (billed) call is marked ``accepted`` - ``paid_media_calls`` counts
them. Validation answers like the provider: MiniMax HTTP 200 + ``base_resp`` 2013, APIMart
HTTP 400.

Media knobs live in ``MediaConfig`` (``configure_media(handle, **knobs)`` or
``POST /_sim/media/config``), including scripted faults per endpoint (``MEDIA_FAULTS``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, Request
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.responses import JSONResponse, Response
from starlette.routing import Match

from hailuo.audio import AUDIO_SUFFIX, encode_audio
from hailuo.capabilities import Provider
from hailuo.simulator import media_render
from hailuo.simulator.faults import apimart_error, minimax_base, minimax_error
from hailuo.simulator.state import new_apimart_id

MINIMAX, APIMART = Provider.MINIMAX, Provider.APIMART
PAID_KINDS = ("speech", "music", "image", "image_submit")
RESPONSE_VERSION = "2026-07-27"

SPEECH_MODELS = ("speech-2.8-hd", "speech-2.8-turbo", "speech-2.6-hd", "speech-2.6-turbo",
                 "speech-02-hd", "speech-02-turbo", "speech-01-hd", "speech-01-turbo")
MUSIC_MODELS = ("music-3.0", "music-2.6", "music-cover", "music-3.0-free", "music-2.6-free",
                "music-cover-free", "music-2.5+", "music-2.5", "music-2.0")
IMAGE_RATIOS = {"1:1": (1024, 1024), "16:9": (1280, 720), "4:3": (1152, 864),
                "3:2": (1248, 832), "2:3": (832, 1248), "3:4": (864, 1152),
                "9:16": (720, 1280), "21:9": (1344, 576)}
APIMART_IMAGE_MODELS = {"gpt-image-2": 1, "gemini-3-pro-image-preview": 1,
                        "gemini-3.1-flash-image-preview": 1, "qwen-image-2.0": 6,
                        "qwen-image-2.0-pro": 6}
_CONTENT_TYPES = {".mp3": "audio/mpeg", ".wav": "audio/wav", ".flac": "audio/flac",
                  ".pcm": "application/octet-stream", ".opus": "audio/ogg",
                  ".ulaw": "audio/basic", ".png": "image/png", ".json": "application/json"}

#: Scripted faults, ``{name: count}`` (-1: every time). What each answers:
MEDIA_FAULTS: dict[str, str] = {
    **{f"{ep}_rate_limited": f"{ep}: HTTP 200 base_resp 1002 with Retry-After: 1, nothing "
       "made" for ep in ("speech", "music", "image")},
    **{f"{ep}_server_error": f"{ep}: HTTP 503 base_resp 1033, nothing made"
       for ep in ("speech", "music", "image")},
    **{f"{ep}_gateway_502": f"{ep}: made and billed, then a proxy's HTTP 502 without a "
       "provider code (ambiguous)" for ep in ("speech", "music", "image")},
    **{f"{ep}_drop_after": f"{ep}: made and billed, then the connection closes unanswered"
       for ep in ("speech", "music", "image")},
    "speech_sensitive": "speech: base_resp 1026 (input judged sensitive)",
    "image_sensitive": "image: base_resp 1026",
    "music_discontinued": "music: the account cannot use music models (Discontinued)",
    "image_all_blocked": "image: status 0 with an empty image list (all blocked)",
    "image_task_failed": "APIMart image task: ends failed (content_policy_violation)",
    "echo_key": "any media API: base_resp 1004 whose message echoes the Authorization "
                "header (tests that clients scrub it)",
    "expired_links": "result links handed out already expired (410 on fetch)",
}


class MediaConfig(BaseModel):
    """Knobs of the media APIs (the video knobs stay in ``SimulatorConfig``)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    ms_per_char: float = Field(55.0, gt=0, description="Speech: ms per letter at speed 1.0 "
                               "(plus 90 ms per word and pauses).")
    url_field: Literal["audio", "audio_url"] = Field(
        "audio", description="Where URL-mode audio goes (C:MCP reads data.audio, C:MMX "
        "data.audio_url).")
    counts_style: Literal["metadata", "data"] = Field(
        "metadata", description="Image counts as strings under metadata (D:IMG) or numbers "
        "under data (C:MMX).")
    music_seconds: float | None = Field(None, gt=0, le=300, description="Force every track "
                                        "to this length.")
    music_available: bool = Field(True, description="False: every music call is refused as "
                                  "for an account without music (Discontinued).")
    music_unavailable_code: int = Field(2013, description="base_resp code of that refusal.")
    image_blocked: int = Field(0, ge=0, description="Images per request blocked by the "
                               "safety filter (fewer than n come back).")
    media_rpm: int | None = Field(None, ge=1, description="Paid media calls per minute per "
                                  "key; None: unlimited.")
    call_seconds: float = Field(0.0, ge=0, description="Extra time each sync call takes "
                                "(real music takes 15-60 s).")
    image_task_seconds: float = Field(0.3, ge=0, description="APIMart image task run time.")
    link_ttl_seconds: float = Field(86400.0, gt=0, description="Result link lifetime (24 h).")
    scripted_faults: dict[str, int] = Field(default_factory=dict, description="Fault name "
                                            "-> count (-1: always). Names: "
                                            + ", ".join(MEDIA_FAULTS))

    @field_validator("scripted_faults")
    @classmethod
    def _known(cls, value: dict[str, int]) -> dict[str, int]:
        unknown = sorted(set(value) - set(MEDIA_FAULTS))
        if unknown:
            raise ValueError(f"unknown media fault(s) {', '.join(unknown)}; known: "
                             f"{', '.join(MEDIA_FAULTS)}")
        return value


@dataclass
class MediaFile:
    path: Path
    content_type: str
    expires_at: float


@dataclass
class ImageTask:
    id: str
    created_at: float
    ready_at: float
    n: int
    prompt: str
    size: str
    fail: bool
    urls: list[str] = field(default_factory=list)
    expires_at: int = 0


@dataclass
class Replay:
    body_hash: str
    task_id: str
    answer: dict[str, Any]
    status: int


class MediaState:
    """The media APIs' knobs, files, image tasks and idempotency replays."""

    def __init__(self, sim: Any) -> None:
        self.sim = sim
        self.config = MediaConfig()
        self.lock = threading.Lock()
        self.files: dict[str, MediaFile] = {}
        self.tasks: dict[str, ImageTask] = {}
        self.replays: dict[tuple[str, str], Replay] = {}
        self._left: dict[str, int] = {}

    def configure(self, **knobs: Any) -> MediaConfig:
        new = MediaConfig.model_validate({**self.config.model_dump(), **knobs})
        with self.lock:
            if "scripted_faults" in knobs:
                self._left = dict(new.scripted_faults)
            self.config = new
        return new

    def fault(self, name: str) -> bool:
        with self.lock:
            left = self._left.get(name, 0)
            if left == 0:
                return False
            if left > 0:
                self._left[name] = left - 1
            return True

    @property
    def directory(self) -> Path:
        folder = Path(self.sim.data_dir) / "media"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def store(self, data: bytes, suffix: str, base_url: str) -> str:
        """Keep ``data`` as a file and return its link (expiring, unguessable)."""
        name = f"{secrets.token_urlsafe(18)}{suffix}"
        path = self.directory / name
        path.write_bytes(data)
        expired = self.fault("expired_links")
        ttl = -60.0 if expired else self.config.link_ttl_seconds
        with self.lock:
            self.files[name] = MediaFile(path, _CONTENT_TYPES.get(suffix, "application/"
                                                                  "octet-stream"),
                                         time.time() + ttl)
        base = (self.sim.config.public_base_url or base_url).rstrip("/")
        return f"{base}/_media/files/{name}"


def media_state(target: Any) -> MediaState:
    """The media state of a simulator, its handle (``run_simulator``) or its app."""
    sim = getattr(target, "simulator", None) or getattr(getattr(target, "state", None),
                                                         "sim", None) or target
    return sim.media


def configure_media(target: Any, **knobs: Any) -> MediaConfig:
    """Change media knobs of a running simulator (``configure_media(handle, ...)``)."""
    return media_state(target).configure(**knobs)


def paid_media_calls(target: Any, kind: str | None = None) -> int:
    """Media calls that produced something billable (replays excluded, calls dropped or
    answered 502 after producing included): the counter behind "a re-run pays nothing"."""
    state = media_state(target)
    kinds = PAID_KINDS if kind is None else (kind,)
    return sum(1 for entry in state.sim.state.request_log()
               if entry["kind"] in kinds and entry.get("accepted") and not entry.get("replay"))


def _hash(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"))
                          .encode()).hexdigest()


class _Invalid(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _num(value: Any, name: str, low: float, high: float, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid(f"{name} must be a number")
    if not low <= value <= high:
        raise _Invalid(f"{name} {value} out of range [{low}, {high}]")
    return float(value)


# -- what the provider would check ---------------------------------------------------
def _check_speech(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _Invalid("body must be a JSON object")
    if body.get("model") not in SPEECH_MODELS:
        raise _Invalid(f"model {body.get('model')!r} is not supported")
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        raise _Invalid("text is required")
    if len(text) >= 10000:
        raise _Invalid("text must be shorter than 10000 characters")
    if body.get("stream"):
        raise _Invalid("the simulator serves stream=false only")
    voice = body.get("voice_setting") or {}
    weights = body.get("timbre_weights") or []
    if not isinstance(voice, dict) or (not voice.get("voice_id") and not weights):
        raise _Invalid("voice_setting.voice_id is required")
    setting = body.get("audio_setting") or {}
    fmt = setting.get("format", "mp3")
    if fmt not in AUDIO_SUFFIX:
        raise _Invalid(f"audio_setting.format {fmt!r} is not supported")
    rate = setting.get("sample_rate", 32000)
    if rate not in (8000, 16000, 22050, 24000, 32000, 44100):
        raise _Invalid(f"audio_setting.sample_rate {rate!r} is not supported")
    channel = setting.get("channel", 1)
    if channel not in (1, 2):
        raise _Invalid("audio_setting.channel must be 1 or 2")
    emotion = voice.get("emotion")
    if emotion == "whisper" and str(body["model"]).startswith("speech-2.8"):
        raise _Invalid("emotion whisper is not supported by speech-2.8")
    if body.get("output_format", "hex") not in ("hex", "url"):
        raise _Invalid("output_format must be hex or url")
    return {
        "text": text, "model": body["model"],
        "voice": str(voice.get("voice_id") or weights[0].get("voice_id", "mix")),
        "speed": _num(voice.get("speed"), "voice_setting.speed", 0.5, 2.0, 1.0),
        "vol": _num(voice.get("vol"), "voice_setting.vol", 0.01, 10.0, 1.0),
        "pitch": int(_num(voice.get("pitch"), "voice_setting.pitch", -12, 12, 0)),
        "emotion": emotion, "format": fmt, "sample_rate": rate, "channel": channel,
        "bitrate": setting.get("bitrate", 128000), "output": body.get("output_format", "hex"),
        "subtitles": bool(body.get("subtitle_enable")),
        "word_subtitles": body.get("subtitle_type") == "word",
    }


def _check_music(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _Invalid("body must be a JSON object")
    model = body.get("model")
    if model not in MUSIC_MODELS:
        raise _Invalid(f"model {model!r} is not supported")
    prompt, lyrics = body.get("prompt") or "", body.get("lyrics") or ""
    instrumental = bool(body.get("is_instrumental"))
    optimizer = bool(body.get("lyrics_optimizer"))
    if instrumental and lyrics:
        raise _Invalid("is_instrumental and lyrics are mutually exclusive")
    if optimizer and (lyrics or instrumental):
        raise _Invalid("lyrics_optimizer excludes lyrics and is_instrumental")
    if instrumental and not prompt:
        raise _Invalid("prompt is required when is_instrumental is true")
    if not (lyrics or instrumental or optimizer or str(model).startswith("music-cover")):
        raise _Invalid("lyrics is required")
    if len(lyrics) > 3500 or len(prompt) > 2000:
        raise _Invalid("lyrics or prompt too long")
    setting = body.get("audio_setting") or {}
    fmt = setting.get("format", "mp3")
    if fmt not in ("mp3", "wav", "pcm"):
        raise _Invalid(f"audio_setting.format {fmt!r} is not supported")
    rate = setting.get("sample_rate", 44100)
    if rate not in (16000, 24000, 32000, 44100):
        raise _Invalid(f"audio_setting.sample_rate {rate!r} is not supported")
    return {"model": model, "prompt": prompt, "lyrics": lyrics, "instrumental": instrumental,
            "format": fmt, "sample_rate": rate, "bitrate": setting.get("bitrate", 256000),
            "output": body.get("output_format", "hex")}


def _check_image(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _Invalid("body must be a JSON object")
    model = body.get("model")
    if model not in ("image-01", "image-01-live"):
        raise _Invalid(f"model {model!r} is not supported")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip() or len(prompt) > 1500:
        raise _Invalid("prompt is required (at most 1500 characters)")
    n = body.get("n", 1)
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 9:
        raise _Invalid("n must be 1-9")
    ratio = body.get("aspect_ratio")
    if ratio is not None:
        if ratio not in IMAGE_RATIOS or (ratio == "21:9" and model != "image-01"):
            raise _Invalid(f"aspect_ratio {ratio!r} is not supported")
        width, height = IMAGE_RATIOS[ratio]  # aspect_ratio wins over width/height
    elif body.get("width") is not None or body.get("height") is not None:
        width, height = body.get("width"), body.get("height")
        for name, value in (("width", width), ("height", height)):
            if not isinstance(value, int) or not 512 <= value <= 2048 or value % 8:
                raise _Invalid(f"{name} must be 512-2048 and a multiple of 8 (set both)")
        if model != "image-01":
            raise _Invalid("width/height are only supported by image-01")
    else:
        width, height = IMAGE_RATIOS["1:1"]
    if body.get("response_format", "url") not in ("url", "base64"):
        raise _Invalid("response_format must be url or base64")
    seed = body.get("seed")
    return {"model": model, "prompt": prompt, "n": n, "width": width, "height": height,
            "format": body.get("response_format", "url"),
            "seed": seed if isinstance(seed, int) else None}


# -- the routes --------------------------------------------------------------------------
class _ImageTaskRoute(APIRoute):
    """``GET /v1/tasks/{task_id}`` for image tasks only: any other id does not match, so
    the video route answers it."""

    media: MediaState | None = None

    def matches(self, scope: Any) -> tuple[Match, dict[str, Any]]:
        match, child = super().matches(scope)
        if match is Match.FULL:
            task_id = child.get("path_params", {}).get("task_id")
            if self.media is None or task_id not in self.media.tasks:
                return Match.NONE, {}
        return match, child


def register_media_routes(app: FastAPI, sim: Any, Exchange: Any) -> MediaState:  # noqa: N803
    """Add the media routes to the simulator ``app`` (ahead of its own routes, so the
    image-task status route is tried before the video one) and return their state.

    ``Exchange`` is the video routes' request handling (``hailuo.simulator.app``), handed
    in so that this module does not import the app that imports it."""

    media = MediaState(sim)
    sim.media = media
    router = APIRouter()

    async def begin(request: Request, provider: Provider, kind: str) -> tuple[Any, Any]:
        ex = Exchange(sim, request, provider, kind)
        early = await ex.begin()
        if early is None:
            early = ex.rate_limit("media", media.config.media_rpm)
        if early is None and media.fault("echo_key"):
            header = request.headers.get("authorization", "")
            ex.faults.append("echo_key")
            early = ex.reply(minimax_error(1004, f"login fail: invalid credential "
                                           f"'{header}' for this api"))
        return ex, early

    async def body_of(ex: Any, request: Request) -> Any:
        raw = await request.body()
        ex.entry["body_sha256"] = hashlib.sha256(raw).hexdigest()
        try:
            return json.loads(raw or b"null")
        except ValueError:
            return None

    def early_fault(ex: Any, endpoint: str) -> Response | None:
        """Faults that answer before anything is made (nothing billed)."""
        if media.fault(f"{endpoint}_rate_limited"):
            return ex.too_many("scripted", retry_after=1)
        if media.fault(f"{endpoint}_server_error"):
            ex.faults.append("server_error")
            return ex.reply(minimax_error(1033, "system error"), 503)
        if media.fault(f"{endpoint}_sensitive"):
            ex.faults.append("sensitive")
            return ex.reply(minimax_error(1026, "input new_sensitive"))
        return None

    def late_fault(ex: Any, endpoint: str) -> Response | None:
        """Faults that strike after the call was made and billed."""
        if media.fault(f"{endpoint}_drop_after"):
            return ex.drop("dropped_after_submit")
        if media.fault(f"{endpoint}_gateway_502"):
            ex.faults.append("gateway_502")
            ex.entry["code"] = None
            ex.finish(502)
            return Response("<html><body>502 Bad Gateway</body></html>", status_code=502,
                            media_type="text/html")
        return None

    async def slow() -> None:
        if media.config.call_seconds > 0:
            await asyncio.sleep(media.config.call_seconds)

    # -- speech --------------------------------------------------------------------
    @router.post("/v1/t2a_v2")
    async def speech(request: Request) -> Any:
        ex, early = await begin(request, MINIMAX, "speech")
        if early is not None:
            return early
        body = await body_of(ex, request)
        try:
            spec = _check_speech(body)
        except _Invalid as exc:
            return ex.invalid(exc.message)
        faulted = early_fault(ex, "speech")
        if faulted is not None:
            return faulted
        await slow()
        config = media.config
        plan = media_render.plan_speech(spec["text"], speed=spec["speed"],
                                        ms_per_char=config.ms_per_char)
        data = await asyncio.to_thread(_speech_bytes, plan, spec)
        ex.entry["accepted"] = True
        late = late_fault(ex, "speech")
        if late is not None:
            return late
        fmt = spec["format"]
        payload: dict[str, Any] = {"status": 2}
        if spec["output"] == "url":
            payload[config.url_field] = media.store(data, AUDIO_SUFFIX[fmt], ex.base_url)
        else:
            payload["audio"] = data.hex()
        if spec["subtitles"]:
            entries = ([(w.start_ms, w.end_ms, w.text, w.char_begin, w.char_end)
                        for w in plan.words] if spec["word_subtitles"] else plan.sentences)
            subtitle = [{"text": text, "time_begin": round(a, 1), "time_end": round(b, 1),
                         "text_begin": i, "text_end": j} for a, b, text, i, j in entries]
            payload["subtitle_file"] = media.store(json.dumps(subtitle).encode(), ".json",
                                                   ex.base_url)
        characters = len(_PAUSE_FREE(spec["text"]))
        answer = {
            "data": payload,
            "extra_info": {
                "audio_length": int(round(plan.total_ms)),
                "audio_sample_rate": spec["sample_rate"], "audio_size": len(data),
                "bitrate": spec["bitrate"], "word_count": len(plan.words),
                "invisible_character_ratio": 0, "usage_characters": characters,
                "audio_format": fmt, "audio_channel": spec["channel"]},
            "trace_id": secrets.token_hex(16), "base_resp": minimax_base(0)}
        return ex.reply(answer)

    # -- music ---------------------------------------------------------------------
    @router.post("/v1/music_generation")
    async def music(request: Request) -> Any:
        ex, early = await begin(request, MINIMAX, "music")
        if early is not None:
            return early
        body = await body_of(ex, request)
        config = media.config
        if not config.music_available or media.fault("music_discontinued"):
            ex.faults.append("music_discontinued")
            model = body.get("model") if isinstance(body, dict) else None
            return ex.reply(minimax_error(
                config.music_unavailable_code, f"invalid params, model {model} is "
                "discontinued and not available for this account"))
        try:
            spec = _check_music(body)
        except _Invalid as exc:
            return ex.invalid(exc.message)
        faulted = early_fault(ex, "music")
        if faulted is not None:
            return faulted
        await slow()
        seconds = config.music_seconds or media_render.music_seconds(spec["prompt"],
                                                                     spec["lyrics"])
        data = await asyncio.to_thread(_music_bytes, seconds, spec)
        ex.entry["accepted"] = True
        late = late_fault(ex, "music")
        if late is not None:
            return late
        payload: dict[str, Any] = {"status": 2}
        if spec["output"] == "url":
            payload[config.url_field] = media.store(data, AUDIO_SUFFIX[spec["format"]],
                                                    ex.base_url)
        else:
            payload["audio"] = data.hex()
        return ex.reply({
            "data": payload, "trace_id": secrets.token_hex(16),
            "extra_info": {"music_duration": int(round(seconds * 1000)),
                           "music_sample_rate": spec["sample_rate"], "music_channel": 2,
                           "bitrate": spec["bitrate"], "music_size": len(data)},
            "analysis_info": None, "base_resp": minimax_base(0)})

    # -- MiniMax images ------------------------------------------------------------
    @router.post("/v1/image_generation")
    async def image(request: Request) -> Any:
        ex, early = await begin(request, MINIMAX, "image")
        if early is not None:
            return early
        body = await body_of(ex, request)
        try:
            spec = _check_image(body)
        except _Invalid as exc:
            return ex.invalid(exc.message)
        faulted = early_fault(ex, "image")
        if faulted is not None:
            return faulted
        await slow()
        blocked = spec["n"] if media.fault("image_all_blocked") else min(
            spec["n"], media.config.image_blocked)
        made = spec["n"] - blocked
        pngs = await asyncio.to_thread(_images, spec, made)
        ex.entry["accepted"] = True
        late = late_fault(ex, "image")
        if late is not None:
            return late
        data: dict[str, Any] = {}
        if spec["format"] == "base64":
            data["image_base64"] = [base64.b64encode(p).decode("ascii") for p in pngs]
        else:
            data["image_urls"] = [media.store(p, ".png", ex.base_url) for p in pngs]
        answer: dict[str, Any] = {"id": secrets.token_hex(16), "data": data,
                                  "base_resp": minimax_base(0)}
        if media.config.counts_style == "metadata":
            answer["metadata"] = {"success_count": str(made), "failed_count": str(blocked)}
        else:
            data.update(success_count=made, failed_count=blocked)
        return ex.reply(answer)

    # -- APIMart images (async task) ----------------------------------------------
    @router.post("/v1/images/generations")
    async def apimart_images(request: Request) -> Any:
        ex, early = await begin(request, APIMART, "image_submit")
        if early is not None:
            return early
        body = await body_of(ex, request)
        key = request.headers.get("idempotency-key")
        if key:
            replay = media.replays.get((ex.who, key))
            if replay is not None:
                if replay.body_hash != _hash(body):
                    ex.faults.append("idempotency_key_reused")
                    return ex.reply({"error": {"code": "idempotency_key_reused", "message":
                                               "This Idempotency-Key was already used with "
                                               "a different request body",
                                               "type": "idempotency_error"}}, 409)
                ex.entry.update(replay=True, task_id=replay.task_id)
                return ex.reply(replay.answer, replay.status,
                                {"Idempotency-Replayed": "true"})
        if not isinstance(body, dict) or body.get("model") not in APIMART_IMAGE_MODELS:
            model = body.get("model") if isinstance(body, dict) else None
            return ex.reply(apimart_error(400, f"model {model!r} not found",
                                          "invalid_request_error"), 400)
        prompt, n = body.get("prompt"), body.get("n", 1)
        if not isinstance(prompt, str) or not prompt.strip():
            return ex.reply(apimart_error(400, "prompt is required",
                                          "invalid_request_error"), 400)
        if not isinstance(n, int) or isinstance(n, bool) or not (
                1 <= n <= APIMART_IMAGE_MODELS[body["model"]]):
            return ex.reply(apimart_error(400, f"n must be 1-"
                                          f"{APIMART_IMAGE_MODELS[body['model']]}",
                                          "invalid_request_error"), 400)
        now = time.time()
        task = ImageTask(id=new_apimart_id(), created_at=now,
                         ready_at=now + media.config.image_task_seconds, n=n, prompt=prompt,
                         size=str(body.get("size") or "1:1"),
                         fail=media.fault("image_task_failed"))
        media.tasks[task.id] = task
        ex.entry.update(accepted=True, task_id=task.id)
        versioned = request.headers.get("x-apimart-response-version") == RESPONSE_VERSION
        if versioned:
            status, answer = 202, {"code": 202, "data": {"id": task.id, "object":
                                                         "generation.task",
                                                         "status": "queued"},
                                   "request_id": f"req_{secrets.token_hex(8)}"}
        else:
            status, answer = 200, {"code": 200, "data": [{"status": "submitted",
                                                          "task_id": task.id}]}
        if key:
            media.replays[(ex.who, key)] = Replay(_hash(body), task.id, answer, status)
        late = late_fault(ex, "image")
        if late is not None:
            return late
        return ex.reply(answer, status, {"X-APIMart-Response-Version": RESPONSE_VERSION}
                        if versioned else None)

    async def image_task(task_id: str, request: Request) -> Any:
        ex = Exchange(sim, request, APIMART, "image_status")
        early = await ex.begin()
        if early is not None:
            return early
        ex.entry["task_id"] = task_id
        task = media.tasks[task_id]
        now = time.time()
        data: dict[str, Any] = {"id": task.id, "created": int(task.created_at)}
        if now < task.ready_at:
            span = max(task.ready_at - task.created_at, 1e-3)
            data.update(status="processing",
                        progress=min(99, int(100 * (now - task.created_at) / span)))
        elif task.fail:
            data.update(status="failed", progress=0, error={
                "code": 1026, "message": "the prompt was judged sensitive",
                "type": "content_policy_violation"})
        else:
            if not task.urls:
                pngs = await asyncio.to_thread(_apimart_pngs, task)
                task.urls = [media.store(p, ".png", ex.base_url) for p in pngs]
                task.expires_at = int(now + media.config.link_ttl_seconds)
            data.update(status="completed", progress=100, cost=0.0,
                        result={"images": [{"url": task.urls,
                                            "expires_at": task.expires_at}]})
        return ex.reply({"code": 200, "data": data})

    # -- result files and admin ----------------------------------------------------
    @router.api_route("/_media/files/{name}", methods=["GET", "HEAD"])
    async def media_file(name: str, request: Request) -> Any:
        ex = Exchange(sim, request, None, "media_file")
        with media.lock:
            found = media.files.get(name)
        if found is None or not found.path.exists():
            ex.finish(404)
            return JSONResponse({"error": "NoSuchKey"}, status_code=404)
        if found.expires_at < time.time():
            ex.faults.append("link_expired")
            ex.finish(410)
            return JSONResponse({"error": "Request has expired"}, status_code=410)
        ex.finish(200)
        data = b"" if request.method == "HEAD" else found.path.read_bytes()
        return Response(data, media_type=found.content_type,
                        headers={"Content-Length": str(found.path.stat().st_size)})

    @router.get("/_sim/media/config")
    async def get_media_config(request: Request) -> Any:
        ex = Exchange(sim, request, None, "admin")
        ex.finish(200)
        return JSONResponse(media.config.model_dump(mode="json"))

    @router.post("/_sim/media/config")
    async def set_media_config(request: Request) -> Any:
        ex = Exchange(sim, request, None, "admin")
        try:
            knobs = await request.json()
            if not isinstance(knobs, dict):
                raise ValueError("expected a JSON object of knobs")
            media.configure(**knobs)
        except ValidationError as exc:
            ex.finish(400)
            return JSONResponse({"error": json.loads(exc.json())}, status_code=400)
        except ValueError as exc:
            ex.finish(400)
            return JSONResponse({"error": str(exc)}, status_code=400)
        ex.finish(200)
        return JSONResponse(media.config.model_dump(mode="json"))

    @router.get("/_sim/media/calls")
    async def media_calls(request: Request) -> Any:
        ex = Exchange(sim, request, None, "admin")
        ex.finish(200)
        return JSONResponse({kind: paid_media_calls(sim, kind) for kind in PAID_KINDS})

    status_route = _ImageTaskRoute("/v1/tasks/{task_id}", image_task, methods=["GET"])
    status_route.media = media
    before = len(app.router.routes)
    app.include_router(router)
    added = app.router.routes[before:]
    del app.router.routes[before:]
    app.router.routes[0:0] = [status_route, *added]
    return media


# -- rendering (worker threads) ----------------------------------------------------------
def _PAUSE_FREE(text: str) -> str:  # noqa: N802 - reads like a constant transform
    return media_render._PAUSE.sub("", text)


def _speech_bytes(plan: media_render.SpeechPlan, spec: dict[str, Any]) -> bytes:
    samples = media_render.render_speech(
        plan, sample_rate=spec["sample_rate"], voice=spec["voice"], pitch=spec["pitch"],
        vol=spec["vol"], emotion=spec["emotion"], channels=spec["channel"])
    return encode_audio(samples, spec["sample_rate"], spec["format"], bitrate=spec["bitrate"])


def _music_bytes(seconds: float, spec: dict[str, Any]) -> bytes:
    samples = media_render.render_music(seconds, sample_rate=spec["sample_rate"],
                                        prompt=spec["prompt"] or spec["lyrics"],
                                        vocals=not spec["instrumental"])
    return encode_audio(samples, spec["sample_rate"], spec["format"], bitrate=spec["bitrate"])


def _images(spec: dict[str, Any], count: int) -> list[bytes]:
    return [media_render.render_image(spec["prompt"], spec["width"], spec["height"],
                                      seed=spec["seed"], index=i) for i in range(count)]


def _apimart_pngs(task: ImageTask) -> list[bytes]:
    sizes = {"1:1": (1024, 1024), "16:9": (1344, 768), "9:16": (768, 1344),
             "4:3": (1152, 864), "3:4": (864, 1152), "3:2": (1216, 832),
             "2:3": (832, 1216), "21:9": (1536, 640)}
    width, height = sizes.get(task.size, (1024, 1024))
    return [media_render.render_image(task.prompt, width, height, index=i)
            for i in range(task.n)]


__all__ = ["MEDIA_FAULTS", "MediaConfig", "MediaState", "configure_media", "media_state",
           "paid_media_calls", "register_media_routes"]
