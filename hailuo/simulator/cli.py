"""``python -m hailuo.simulator`` (and ``hailuo sim``): the simulator in the foreground.

Why flags are generated from ``SimulatorConfig``: every knob is then reachable from the
command line with the same name and validation, and a new knob needs no CLI change.
One line per request is printed (method, path, status, kind, code, task, fault): never
the API key, which is not even stored.
"""

from __future__ import annotations

import argparse
import logging
import sys
import types
import typing
from collections.abc import Sequence
from typing import Any

from hailuo.simulator.config import SimulatorConfig

_SPECIAL = {"accepted_keys", "fail_codes", "callback_retry_delays", "price_per_second",
            "signing_secret", "scripted_faults", "fault_rates"}


def _scalar(annotation: Any) -> Any:
    """The scalar type behind ``int | None`` and friends."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if args else str
    if typing.get_origin(annotation) is typing.Literal:
        return str
    return annotation


def _floats(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part.strip()]


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def _fault_count(text: str) -> tuple[str, int]:
    name, _, count = text.partition("=")
    return name.strip(), int(count) if count.strip() else -1


def _fault_rate(text: str) -> tuple[str, float]:
    name, _, rate = text.partition("=")
    if not rate.strip():
        raise argparse.ArgumentTypeError("expected NAME=RATE, e.g. file_1013=0.2")
    return name.strip(), float(rate)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hailuo sim",
        description="Local simulator of the APIMart and MiniMax Hailuo video APIs "
                    "(real MP4 output, injectable faults).")
    for name, field in SimulatorConfig.model_fields.items():
        if name in _SPECIAL:
            continue
        flag = "--" + name.replace("_", "-")
        kind = _scalar(field.annotation)
        help_text = field.description or ""
        if kind is bool:
            parser.add_argument(flag, dest=name, action="store_true", default=None,
                                help=help_text)
            continue
        extra: dict[str, Any] = {}
        if typing.get_origin(field.annotation) is typing.Literal:
            extra["choices"] = typing.get_args(field.annotation)
        parser.add_argument(flag, dest=name, type=kind if kind in (int, float) else str,
                            default=None, help=help_text, **extra)
    parser.add_argument("--link-ttl", dest="link_ttl_seconds", type=float, default=None,
                        help="Alias of --link-ttl-seconds.")
    parser.add_argument("--accept-key", dest="accepted_keys", action="append", default=None,
                        help="Accept only this bearer key (repeatable); default: any key.")
    parser.add_argument("--fail-codes", dest="fail_codes", type=_ints, default=None,
                        help="Comma-separated failure codes, e.g. 1000,1026.")
    parser.add_argument("--callback-retry-delays", dest="callback_retry_delays", type=_floats,
                        default=None, help="Comma-separated seconds, e.g. 10,30,60.")
    parser.add_argument("--fault", dest="scripted_faults", type=_fault_count, action="append",
                        default=None, help="NAME[=COUNT]: produce a fault COUNT times "
                        "(default: always), e.g. --fault file_1013=2. "
                        + (SimulatorConfig.model_fields["scripted_faults"].description or ""))
    parser.add_argument("--fault-rate", dest="fault_rates", type=_fault_rate, action="append",
                        default=None, help="NAME=RATE: produce a fault at random.")
    parser.add_argument("--quiet", action="store_true", help="Do not print request lines.")
    return parser


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    knobs = {k: v for k, v in vars(args).items() if v is not None and k != "quiet"}
    for name in ("scripted_faults", "fault_rates"):
        if name in knobs:
            knobs[name] = dict(knobs[name])
    return SimulatorConfig(**knobs)


def main(argv: Sequence[str] | None = None) -> int:
    """Run until interrupted; returns a process exit code."""
    import uvicorn

    from hailuo.simulator.app import create_app
    from hailuo.simulator.server import base_url_of, bind_socket, uvicorn_config

    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        print(f"invalid options: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        requests_logger = logging.getLogger("hailuo.simulator.requests")
        requests_logger.addHandler(handler)
        requests_logger.setLevel(logging.INFO)
    try:
        sock = bind_socket(config.host, config.port)
    except OSError as exc:
        print(f"cannot listen on {config.host}:{config.port}: {exc}", file=sys.stderr)
        return 1
    app = create_app(config)
    print(f"Hailuo simulator listening on {base_url_of(sock)}", flush=True)
    print("  APIMart: POST /v1/videos/generations, GET /v1/tasks/{id}", flush=True)
    print("  MiniMax: POST /v1/video_generation, GET /v1/query/video_generation, "
          "GET /v1/files/retrieve", flush=True)
    print("           POST /v1/uploads/images, GET /v1/model-schema", flush=True)
    print("  admin:   /_sim/requests, /_sim/config, /_sim/tasks, /_sim/reset", flush=True)
    server = uvicorn.Server(uvicorn_config(app, config))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    return 0
