"""The ``hailuo`` command: ``sim``, ``estimate`` and ``prompt`` (no Prefect, no network).

Exit codes: 0 success; 2 bad input (one clear line, nothing sent).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from hailuo import pricing
from hailuo.errors import InvalidRequestError
from hailuo.models import DEFAULT_MODEL, VideoRequest
from hailuo.prompts import lint_prompt, normalise_prompt

EXIT_BAD_INPUT = 2


def _estimate(args: argparse.Namespace) -> int:
    request = VideoRequest(model=args.model, prompt=args.prompt or "estimate",
                           duration=args.duration, resolution=args.resolution,
                           first_frame_image=args.first_frame_image)
    quote = pricing.quote(request, args.provider)
    validated = request.validate_for(args.provider)
    out = {"provider": args.provider, "model": validated.model,
           "resolution": request.output_resolution(args.provider),
           "duration": request.output_duration(args.provider), "usd": str(quote.usd),
           "basis": quote.basis}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"${quote.usd} for {out['model']} {out['resolution']} {out['duration']} s on "
              f"{args.provider} ({quote.basis})")
    return 0


def _prompt(args: argparse.Namespace) -> int:
    prompt = normalise_prompt(args.text)
    warnings = lint_prompt(prompt, image_to_video=args.image_to_video)
    if args.json:
        print(json.dumps({"prompt": prompt, "warnings": warnings}))
    else:
        print(prompt)
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hailuo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sim = sub.add_parser("sim", help="run the local simulator (see `hailuo sim --help`)",
                         add_help=False)
    sim.add_argument("rest", nargs=argparse.REMAINDER)
    est = sub.add_parser("estimate", help="cost of a request, no network")
    est.add_argument("--provider", choices=["apimart", "minimax"], default="apimart")
    est.add_argument("--model", default=DEFAULT_MODEL)
    est.add_argument("--prompt")
    est.add_argument("--duration", type=int)
    est.add_argument("--resolution")
    est.add_argument("--first-frame-image")
    est.add_argument("--json", action="store_true")
    est.set_defaults(func=_estimate)
    prm = sub.add_parser("prompt", help="normalise and lint a prompt (camera commands checked)")
    prm.add_argument("text")
    prm.add_argument("--image-to-video", action="store_true")
    prm.add_argument("--json", action="store_true")
    prm.set_defaults(func=_prompt)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["sim"]:
        from hailuo.simulator.cli import main as sim_main

        return sim_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (InvalidRequestError, ValueError) as exc:
        print(f"hailuo: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
