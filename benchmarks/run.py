"""Run the benchmarks of issues 8 and 16 and write ``results.json`` and ``results.md``.

    python -m benchmarks.run                 # everything, full sizes (make bench)
    python -m benchmarks.run --only B1,B3    # a subset (merged into existing results)
    python -m benchmarks.run --quick --out /tmp/b   # tiny sizes: proves the code runs
    python -m benchmarks.run --render-only   # rewrite results.md from results.json

Each benchmark runs its measured path and its comparison side by side in the same run,
repeats it (median of ``--reps``, at least 3 for full runs) and returns a record with its
figures, target, whether the target is met and notes (method, and for a miss the reason
and what would close it). A benchmark that crashes is recorded with its error; the others
still run.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import (
    ROOT,
    WORK,
    PrefectSession,
    Settings,
    loadavg,
    machine,
    prepare_prefect_env,
)

# id -> (module, function, needs Prefect, files that must exist first)
BENCHMARKS: dict[str, tuple[str, str, bool, tuple[str, ...]]] = {
    "B1": ("benchmarks.batch_bench", "b1_batch", True, ()),
    "B2": ("benchmarks.latency_bench", "b2_latency", False, ()),
    "B3": ("benchmarks.transfer_bench", "b3_download", False, ()),
    "B4": ("benchmarks.transfer_bench", "b4_upload", True, ()),
    "B5": ("benchmarks.stitch_bench", "b5_stitch", False, ("hailuo/stitch.py",)),
    "B6": ("benchmarks.media_bench", "b6_last_frame", False, ()),
    "B7": ("benchmarks.batch_bench", "b7_rerun", True, ()),
    "B8": ("benchmarks.batch_bench", "b8_rate_limit", True, ()),
    "B9": ("benchmarks.story_bench", "b9_storyboard", True,
           ("flows/continuity.py", "flows/storyboard.py")),
    "B10": ("benchmarks.media_bench", "b10_render", False, ()),
    "B11": ("benchmarks.scale_bench", "b11_thousand", True, ()),
    "B12": ("benchmarks.scale_bench", "b12_two_workers", False, ()),  # its own server
    "B13": ("benchmarks.film_bench", "b13_film", True, ("flows/film.py", "hailuo/mix.py")),
}

WHAT = {
    "B1": ("40 text-to-video clips through generate_batch (render 5 s, cheap mode)",
           "the guide's recipe: submit, sleep-poll 15 s, download, one after another",
           ">= 30x faster; within 2x of one clip"),
    "B2": ("delay render finished -> verified file; status calls per clip (5 s, 60 s renders)",
           "fixed 15 s polling; callbacks", "<= 1 s callbacks, <= 2 s adaptive, <= 6 calls"),
    "B3": ("streaming download of a 500 MB video", "curl, same loopback URL",
           ">= 80% of curl; peak memory growth <= 64 MB"),
    "B4": ("S3 upload of a 500 MB video (moto server)", "plain boto3 upload_file",
           ">= 90% of its throughput"),
    "B5": ("stitching ten 6 s 1080p clips", "re-encode; ffmpeg concat demuxer",
           "remux >= 50x re-encode, on par with ffmpeg"),
    "B6": ("last frame of a 10 s 1080p clip", "decoding the whole clip", "<= 100 ms"),
    "B7": ("re-running a finished 10-clip batch", "first run", "0 submits, wall <= 10%"),
    "B8": ("60 clips, 2 workers, simulator limit 120 requests/min", "the limit itself",
           "0 rate-limit errors, >= 90% of allowed rate"),
    "B9": ("storyboard of 6 clips vs chained continuity of 6 clips", "each other",
           "storyboard <= 1/3 of chained"),
    "B10": ("simulator render of a 6 s 768p clip", "-", "record it"),
    "B11": ("one batch of 1000 clips (cheap render mode), simulator limit 240 submits/min",
            "the provider-side bound: submits at the provider's full rate plus one render",
            "orchestrating process peak memory <= 1 GB, <= 0.1 CPU-s per clip, wall <= 1.5x "
            "the bound"),
    "B12": ("60 clips of 30 s renders spread over workers holding 10 clips each",
            "the same batch on one worker", "two workers <= 0.55x one worker's time"),
    "B13": ("what the audio stages add to a six-segment film",
            "the same film without audio (storyboard flow, keyframes as files)",
            "record it"),
}


def _missing(bid: str, files: tuple[str, ...]) -> dict[str, Any]:
    what, _, target = WHAT[bid]
    absent = [f for f in files if not (ROOT / f).exists()]
    return {"id": bid, "what": what, "target": target, "met": None, "not_measured": True,
            "headline": "not measured yet",
            "notes": [f"needs {', '.join(absent)} (issue 5, in progress); the runner measures "
                      "it automatically once those files exist."]}


def run_one(bid: str, settings: Settings, prefect: PrefectSession) -> dict[str, Any]:
    module, func, needs_prefect, files = BENCHMARKS[bid]
    started = time.perf_counter()
    load_before = loadavg()
    try:
        if any(not (ROOT / f).exists() for f in files) or (
                importlib.util.find_spec(module) is None):
            record = _missing(bid, files)
        else:
            if needs_prefect:
                prefect.ensure()
            fn: Callable[[Settings], dict[str, Any]] = getattr(importlib.import_module(module),
                                                               func)
            record = fn(settings)
    except Exception as exc:  # noqa: BLE001 - recorded, the other benchmarks still run
        traceback.print_exc()
        what, _, target = WHAT[bid]
        record = {"id": bid, "what": what, "target": target, "met": None,
                  "headline": f"ERROR: {type(exc).__name__}: {exc}"[:300],
                  "error": traceback.format_exc()[-4000:]}
    record.setdefault("target", WHAT[bid][2])
    record.setdefault("compared_with", WHAT[bid][1])
    record["seconds"] = round(time.perf_counter() - started, 1)
    record["loadavg_before"] = load_before
    record["loadavg_after"] = loadavg()
    record["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return record


def renote(data: dict[str, Any]) -> None:
    """Recompute each record's verdict notes from its figures (after improving the text)."""
    for record in data["results"]:
        module = BENCHMARKS[record["id"]][0]
        verdicts = getattr(importlib.import_module(module), "VERDICTS", {}) if (
            importlib.util.find_spec(module)) else {}
        if record["id"] in verdicts and record.get("figures"):
            record["notes"] = [n for n in record.get("notes", [])
                               if not n.startswith(("MISSED", "With the default "
                                                    "max_concurrency", "The default "
                                                    "max_concurrency"))]
            record["verdict_notes"] = verdicts[record["id"]](record["figures"])


def _order(bid: str) -> int:
    return int(bid[1:])


def write(out: Path, data: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(data, indent=2, sort_keys=False,
                                                  default=str) + "\n")
    from benchmarks.report import render_markdown

    (out / "results.md").write_text(render_markdown(data))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="comma-separated ids, e.g. B1,B3")
    parser.add_argument("--quick", action="store_true",
                        help="tiny inputs, one repetition: checks the runner, not the speed")
    parser.add_argument("--reps", type=int, help="repetitions (default 3; 1 with --quick)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks",
                        help="where results.json and results.md go (default benchmarks/)")
    parser.add_argument("--work", type=Path, help="scratch folder (default benchmarks/work)")
    parser.add_argument("--render-only", action="store_true",
                        help="rewrite results.md from the existing results.json")
    parser.add_argument("--renote", action="store_true",
                        help="with --render-only: recompute the met/missed explanations "
                             "(verdict notes) from the recorded figures")
    args = parser.parse_args(argv)

    if args.render_only:
        data = json.loads((args.out / "results.json").read_text())
        if args.renote:
            renote(data)
        write(args.out, data)
        print(f"wrote {args.out / 'results.md'}")
        return 0

    ids = [b.strip().upper() for b in args.only.split(",")] if args.only else list(BENCHMARKS)
    unknown = [b for b in ids if b not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: "
                     f"{', '.join(BENCHMARKS)}")
    reps = args.reps or (1 if args.quick else 3)
    if not args.quick and reps < 3:
        print("note: fewer than 3 repetitions; the issue asks for a median of at least 3")
    work = args.work or (WORK if not args.quick else args.out / "work")
    work.mkdir(parents=True, exist_ok=True)
    prepare_prefect_env(work)  # before anything imports prefect
    settings = Settings(quick=args.quick, reps=reps, work=work)

    existing: dict[str, Any] = {}
    path = args.out / "results.json"
    if path.exists():
        try:
            old = json.loads(path.read_text())
            if old.get("quick") == args.quick:
                existing = {r["id"]: r for r in old.get("results", [])}
        except (ValueError, KeyError):
            existing = {}

    started = time.perf_counter()
    info = machine()
    prefect = PrefectSession()
    try:
        for bid in sorted(ids, key=_order):
            print(f"--- {bid}: {WHAT[bid][0]}", flush=True)
            record = run_one(bid, settings, prefect)
            existing[bid] = record
            print(f"    {record.get('headline')}  (target {record.get('target')}; "
                  f"met={record.get('met')}; {record.get('seconds', 0)} s)", flush=True)
            data = {"quick": args.quick, "reps": reps, "machine": info,
                    "prefect_startup_seconds": prefect.startup_seconds,
                    "ran": sorted(ids, key=_order),
                    "results": [existing[k] for k in sorted(existing, key=_order)]}
            write(args.out, data)  # after each benchmark: a crash later loses nothing
    finally:
        prefect.close()
    info["loadavg_end"] = loadavg()
    data["total_seconds"] = round(time.perf_counter() - started, 1)
    write(args.out, data)
    print(f"wrote {args.out / 'results.json'} and {args.out / 'results.md'} "
          f"in {data['total_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
