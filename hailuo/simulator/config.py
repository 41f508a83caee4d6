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
        "alternate", description="Which documented APIMart submit answer to give.")
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
