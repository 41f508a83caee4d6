"""Every knob of the simulator in one validated model.

Why one pydantic model: the same knobs arrive from Python (``run_simulator(**knobs)``),
from the CLI and from ``POST /_sim/config`` at run time; validating them in one place
means a typo'd knob fails loudly everywhere instead of silently doing nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Rate = float  # a probability in [0, 1]

# Knobs that only take effect when the server starts; everything else may change live.
STARTUP_ONLY = frozenset({"host", "port", "data_dir", "render_workers", "signing_secret"})

#: Faults that ``scripted_faults`` / ``fault_rates`` can produce, and where.
FAULTS: dict[str, str] = {
    "build_request_failed": "APIMart submit: HTTP 500 build_request_failed (bad parameters), "
                            "nothing created",
    "success_false": 'APIMart submit: HTTP 200 {"success": false, "message": ...}, nothing '
                     "created",
    "idempotency_in_progress": "APIMart submit: HTTP 409 idempotency_in_progress with "
                               "Retry-After: 1, nothing created",
    "idempotency_result_indeterminate": "APIMart submit: HTTP 409 "
                                        "idempotency_result_indeterminate",
    "idempotency_key_reused": "APIMart submit: HTTP 409 idempotency_key_reused",
    "idempotency_unavailable": "APIMart submit: HTTP 503 idempotency_unavailable, not "
                               "executed",
    "error_after_accept": "Either submit: the task IS created, then HTTP 502 is answered",
    "completed_without_url": "APIMart status: completed without result.videos",
    "success_without_file_id": "MiniMax query: Success without file_id",
    "file_1013": "MiniMax files/retrieve: base_resp 1013 (transient)",
    "file_without_url": "MiniMax files/retrieve: a file without download_url",
    "h3_plan_key": "MiniMax v2 submit: HTTP 400, 2013 TokenPlan or Credit does not support "
                   "H3 (a plan key), nothing created",
    "v2_server_error": "MiniMax v2 submit: HTTP 500 server_error (1000) before the task "
                       "exists, nothing created",
}


def _rate(description: str) -> Any:
    return Field(0.0, ge=0.0, le=1.0, description=description)


class SimulatorConfig(BaseModel):
    """What the simulator does, including which faults it injects and how often."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # Server
    host: str = Field("127.0.0.1", description="Interface to bind.")
    port: int = Field(0, ge=0, le=65535, description="0 picks a free port.")
    public_base_url: str | None = Field(
        None, description="Base of the signed download links; default: the URL the client used."
    )
    data_dir: Path | None = Field(
        None, description="Where videos are written; default: a temporary directory removed "
        "when the server stops.")
    accepted_keys: list[str] | None = Field(
        None, description="Bearer keys accepted; None accepts any non-empty key.")

    # Timing and rendering
    queue_seconds: float = Field(0.0, ge=0, description="Time spent Preparing/Queueing.")
    render_seconds: float = Field(3.0, ge=0, description="Time spent Processing.")
    render_workers: int = Field(2, ge=1, description="Parallel renders (CPU bound).")
    cheap: bool = Field(False, description="Render one clip per size x duration and restamp "
                        "a copy per task, so encoding does not dominate load tests.")
    render_preset: str = Field("ultrafast", description="x264 preset for renders.")
    link_ttl_seconds: float = Field(3600.0, gt=0, description="Signed download link lifetime.")
    apimart_submit_shape: Literal["list", "object", "alternate"] = Field(
        "alternate", description="Which legacy APIMart submit answer to give.")
    apimart_response_version: Literal["auto", "legacy", "2026-07-27"] = Field(
        "auto", description="APIMart submit answers: auto gives HTTP 202 {code:202, data:{id, "
        "status:queued}} to requests sending X-APIMart-Response-Version: 2026-07-27 and the "
        "legacy shapes to others; legacy ignores the header; 2026-07-27 always answers 202.")
    apimart_error_style: Literal["code", "message"] = Field(
        "code", description="Where APIMart puts an error word (idempotency_*, "
        "build_request_failed): in error.code, or in error.message with the HTTP status as "
        "code.")
    apimart_invalid_answer: Literal["http_400", "build_request_failed"] = Field(
        "http_400", description="How APIMart refuses bad parameters: HTTP 400 "
        "invalid_request_error, or HTTP 500 build_request_failed.")
    apimart_data_urls: Literal["reject", "accept"] = Field(
        "reject", description="APIMart generation calls with a data: image: refused (APIMart "
        "today: upload first) or accepted (older docs).")
    model_idempotency: Literal["true", "false", "absent"] = Field(
        "true", description="What GET /v1/model-schema reports as idempotency for every "
        "model; with false or absent APIMart also ignores Idempotency-Key (no replays, no "
        "409s).")
    model_schema_shape: Literal["bool", "object"] = Field(
        "bool", description='idempotency as a boolean or as {"supported": bool, ...}.')
    upload_ttl_seconds: float = Field(259200.0, gt=0, description="Lifetime of an uploaded "
                                      "image URL (APIMart: 72 h).")
    apimart_cost_field: Literal["cost", "credits_cost", "both"] = Field(
        "cost", description="APIMart status reports cost (USD), credits_cost (credits, 10 = "
        "1 USD) or both.")
    submit_seconds: float = Field(0.0, ge=0, description="Time APIMart takes to accept a "
                                  "submit; another request with the same Idempotency-Key "
                                  "meanwhile gets 409 idempotency_in_progress.")
    unknown_status_word: str | None = Field(
        None, description="Report running tasks with this status word (both providers).")
    wrong_region_code: int | None = Field(
        None, description="MiniMax answers every call as for a key of the other region: "
        "base_resp 1004 or 2049.")
    undocumented_fields: Literal["reject", "ignore"] = Field(
        "reject", description="fast_pretreatment sent to a model that does not document it: "
        "refused (invalid params) or ignored.")
    file_bytes_zero: bool = Field(False, description="MiniMax files/retrieve reports bytes=0, "
                                  "as the real service sometimes does.")
    image_fetch_timeout: float = Field(5.0, gt=0, description="Timeout fetching image URLs.")
    signing_secret: str | None = Field(None, description="HMAC secret for download links; "
                                       "default: random per server.")

    # Faults
    seed: int | None = Field(None, description="Seed for every random fault decision.")
    rpm: int | None = Field(None, ge=1, description="Submits per minute per key (sliding "
                            "window); None: unlimited.")
    status_rpm: int | None = Field(None, ge=1, description="Status/file GETs per minute per "
                                   "key; None: unlimited.")
    error_rate: Rate = _rate("Random 500/502/503 on API routes.")
    rate_limit_rate: Rate = _rate("Random rate-limit answers (APIMart 429, MiniMax 1002) on "
                                  "API routes, with Retry-After: 1.")
    drop_before_rate: Rate = _rate("Close the connection before handling, with no response.")
    drop_after_submit_rate: Rate = _rate("Create the task, then close the connection with no "
                                         "response.")
    fail_rate: Rate = _rate("Tasks that end failed with one of fail_codes.")
    fail_codes: list[int] = Field(default_factory=lambda: [1026],
                                  description="Failure codes drawn for failed tasks.")
    slow_seconds: float = Field(0.0, ge=0, description="Delay before every API response.")
    truncate_rate: Rate = _rate("Downloads that send the full Content-Length but part of the "
                                "body, then close.")
    expired_link_rate: Rate = _rate("Hand out links that have already expired.")
    scripted_faults: dict[str, int] = Field(
        default_factory=dict, description="Faults produced this many times on their route, "
        "then normal answers (-1: every time); counting restarts when the knob is set. "
        "Names: " + ", ".join(FAULTS) + ".")
    fault_rates: dict[str, float] = Field(
        default_factory=dict, description="The same faults at random, each with this "
        "probability.")

    # Hostile answers (issue 13 C; see hailuo.simulator.hostile). All off by default.
    hostile_task_id: str | None = Field(
        None, description="Submit and status answers carry this task id (e.g. "
        "'../../etc/x') instead of the task's own; the task is still created.")
    status_id_mismatch: bool = Field(False, description="Status answers name another task.")
    echo_key_in_errors: bool = Field(
        False, description="Error answers and failure messages echo the caller's key "
        "(in 'Bearer <key>', URL-encoded, and a long prefix).")
    gzip_bomb_download: bool = Field(
        False, description="Downloads answer gzip that inflates ~1000-fold (64 MiB).")
    huge_status_body: bool = Field(False, description="Status answers are 4 MiB of JSON.")
    deep_json: bool = Field(
        False, description="Submit (after creating the task) and status answers are JSON "
        "nested 100000 deep.")
    trickle_bytes: float = Field(
        0.0, ge=0, description="Status answers and downloads are sent one byte every this "
        "many seconds (0: off).")
    redirect_download_to: str | None = Field(
        None, description="Downloads answer 302 to this URL; '{path}' in it becomes the "
        "original path and query.")
    undecodable_submit_body: bool = Field(
        False, description="Submit creates the task, then answers bytes that are not JSON.")
    broken_gzip: bool = Field(
        False, description="Submit (after creating the task) and status answers claim gzip "
        "over a corrupt stream.")

    # Callbacks
    callback_duplicate_rate: Rate = _rate("Deliver a callback twice.")
    callback_retry_delays: list[float] = Field(
        default_factory=lambda: [10.0, 30.0, 60.0],
        description="APIMart: delays before each retry after a failed delivery.")
    callback_timeout: float = Field(10.0, gt=0, description="APIMart: wait this long for a 2xx.")
    challenge_timeout: float = Field(3.0, gt=0, description="MiniMax: wait this long for the "
                                     "challenge echo.")

    # Money (APIMart reports a cost per task)
    price_per_second: dict[str, float] = Field(
        default_factory=lambda: {"512p": 0.04, "720p": 0.04, "768p": 0.04, "1080p": 0.08},
        description="Cost reported per second of video, by resolution (guide prices; 512p "
        "and 720p assumed).")

    @field_validator("scripted_faults", "fault_rates")
    @classmethod
    def _known_faults(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(value) - set(FAULTS))
        if unknown:
            raise ValueError(f"unknown fault(s) {', '.join(unknown)}; known: "
                             f"{', '.join(FAULTS)}")
        for name, amount in value.items():
            if isinstance(amount, float) and not 0.0 <= amount <= 1.0:
                raise ValueError(f"fault rate of {name} must be within [0, 1]")
        return value

    @field_validator("wrong_region_code")
    @classmethod
    def _region_code(cls, value: int | None) -> int | None:
        if value not in (None, 1004, 2049):
            raise ValueError("wrong_region_code must be 1004 or 2049")
        return value

    @field_validator("fail_codes")
    @classmethod
    def _codes_not_empty(cls, value: list[int]) -> list[int]:
        if not value:
            raise ValueError("fail_codes needs at least one code")
        return value

    def updated(self, **knobs: Any) -> SimulatorConfig:
        """A validated copy with ``knobs`` applied (unknown knobs raise)."""
        return SimulatorConfig.model_validate({**self.model_dump(), **knobs})

    def public(self) -> dict[str, Any]:
        """The config as JSON for the admin API; accepted keys are masked, never echoed."""
        data = self.model_dump(mode="json")
        if data["accepted_keys"] is not None:
            data["accepted_keys"] = f"<{len(data['accepted_keys'])} keys>"
        data["signing_secret"] = None if self.signing_secret is None else "<set>"
        return data
