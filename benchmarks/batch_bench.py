"""B1 (40-clip batch vs the guide's recipe), B7 (re-running a finished batch) and B8 (60
clips from two worker processes under a 120 requests/min limit), through the real flows.

Run as ``python -m benchmarks.batch_bench worker ...`` it is one of B8's two worker
processes: it runs ``generate_batch`` against the Prefect server named by
``PREFECT_API_URL`` and prints a JSON line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import (
    BENCH_KEY,
    CpuMeter,
    Settings,
    child_env,
    median,
    quiet_logs,
    result,
    save_sim_credentials,
    spread,
)


def _batch(n: int, tag: str, creds: str, out: Path, **kw: Any) -> tuple[float, Any]:
    from prefect_hailuo.flows import ClipSpec, Destination, GenerationOptions
    from prefect_hailuo.flows.batch import generate_batch

    clips = [ClipSpec(prompt=f"[Pan left] benchmark {tag} clip {i}: a harbour at dawn")
             for i in range(n)]
    started = time.perf_counter()
    with quiet_logs():
        res = generate_batch(clips, GenerationOptions(), Destination(output_dir=str(out)),
                             credentials_block=creds, **kw)
    seconds = time.perf_counter() - started
    assert not res.failed, res.failed
    assert len(res.clips) == n and all(Path(c.local_path).exists() for c in res.clips)
    return seconds, res


def _cpu_share(meters: list[dict[str, Any]]) -> float:
    """Median share of the machine's CPU the runner and the Prefect server used."""
    shares = [(m["runner_process_cpu_s"] + m["prefect_server_cpu_s"]
               + m["finished_children_cpu_s"]) / m["cpu_capacity_s"]
              for m in meters if m["cpu_capacity_s"]]
    return median(shares) if shares else float("nan")


def _loads(meters: list[dict[str, Any]]) -> str:
    """The range of 1-minute load averages seen at the end of the measured steps."""
    values = [m["loadavg_after"][0] for m in meters if m.get("loadavg_after")]
    return f"{min(values):.1f}-{max(values):.1f}" if values else "unknown"


def recipe_clip(base_url: str, prompt: str, dest: Path, interval: float) -> float:
    """The guide's recipe for one clip: submit, sleep-poll every 15 s, download (plain HTTP,
    ``.content`` into memory, no verification)."""
    headers = {"Authorization": f"Bearer {BENCH_KEY}"}
    started = time.perf_counter()
    with httpx.Client(base_url=base_url, headers=headers, timeout=60) as http:
        body = http.post("/v1/videos/generations", json={
            "model": "MiniMax-Hailuo-02", "prompt": prompt, "duration": 5,
            "resolution": "768p"}).json()
        data = body["data"]
        task_id = data[0]["task_id"] if isinstance(data, list) else data["id"]
        while True:
            time.sleep(interval)
            status = http.get(f"/v1/tasks/{task_id}").json()["data"]
            if status["status"] == "completed":
                url = status["result"]["videos"][0]["url"][0]
                break
            if status["status"] == "failed":
                raise RuntimeError(f"task {task_id} failed")
        dest.write_bytes(httpx.get(url, timeout=60).content)
    return time.perf_counter() - started


# ---------------------------------------------------------------------------------- B1
def b1_verdict_notes(f: dict[str, Any]) -> list[str]:
    """Why B1's targets are met or missed, from its figures (also used by --renote)."""
    notes: list[str] = []
    cpu = f["cpu_during_batch_concurrency_all"]
    vs_one_all = f["batch_over_one_clip_concurrency_all"]
    speedup_all = f["speedup_vs_recipe_concurrency_all"]
    vs_one_8 = f["batch_over_one_clip_concurrency_8"]
    speedup_8 = f["speedup_vs_recipe_concurrency_8"]
    best = f["batch_concurrency_all_seconds"]["median"]
    default8 = f["batch_concurrency_8_seconds"]["median"]
    busy = _cpu_share(cpu)
    loads = _loads(cpu)
    n = f.get("clips", 40)
    one = f["one_clip_seconds"]["median"]
    flow_cpu = median([m["runner_process_cpu_s"] for m in cpu]) if cpu else float("nan")
    server_cpu = median([m["prefect_server_cpu_s"] for m in cpu]) if cpu else float("nan")
    if vs_one_all > 2 or speedup_all < 30:
        notes.append(
            f"MISSED: {n} clips all in flight take {vs_one_all:.1f}x one clip and are "
            f"{speedup_all:.1f}x faster than the recipe. The 5 s renders overlap fully (the "
            "simulator has no limit); what does not overlap is the per-clip orchestration: "
            "five Prefect task runs per clip (generate-clip, submit, wait, download, "
            "thumbnail), each with state transitions, result persistence, progress "
            "artifacts and a rate-limit lookup through the Prefect server. CPU during the "
            f"{n}-clip batch (median): the flow process {flow_cpu:.1f} CPU-s "
            f"({flow_cpu / n:.2f} per clip, simulator threads included) and the Prefect "
            f"server {server_cpu:.1f} CPU-s ({server_cpu / n:.2f} per clip) - together "
            f"{busy:.0%} of the two cores, while other developers' test suites kept the "
            f"1-minute load average at {loads}. The flow process is one Python process "
            "(one GIL), so even on an idle machine the batch would take on the order of "
            f"its {flow_cpu:.0f} CPU-s (of which an unmeasured part is the in-process "
            f"simulator), about {flow_cpu / one:.1f}x one clip ({one:.1f} s): the 2x target "
            "needs the per-clip CPU cost cut, not only a quiet "
            "machine (the rest of the gap here is waiting for a core and for server round "
            "trips). What would close it: fewer task runs per clip (one task per clip doing "
            "submit-wait-download, keeping the submit cache), no progress-artifact update "
            "per poll, thumbnail and manifest folded into the download task; for large "
            "batches a PostgreSQL-backed server; then re-measure on an idle machine.")
    if default8 <= best * 1.1:
        notes.append(f"The default max_concurrency=8 was as fast as 40 here ({speedup_8:.1f}x "
                     f"the recipe, {vs_one_8:.1f}x one clip): raising the bound does not help "
                     "while the per-clip orchestration is the bottleneck.")
    else:
        notes.append(f"With the default max_concurrency=8 the batch runs in waves of 8 "
                     f"({speedup_8:.1f}x the recipe, {vs_one_8:.1f}x one clip): pass "
                     "max_concurrency to use all the provider allows.")
    return notes


def b1_batch(s: Settings) -> dict[str, Any]:
    from hailuo.simulator import run_simulator

    n = s.pick(40, 3)
    render = s.pick(5.0, 0.5)
    interval = s.pick(15.0, 1.0)
    recipe_n = s.pick(2, 1)
    out = s.work / "b1"
    one, default8, all_at_once, recipe = [], [], [], []
    cpu: list[dict[str, Any]] = []
    with run_simulator(render_seconds=render, cheap=True) as sim:
        creds = save_sim_credentials("bench-b1", sim.base_url)
        _batch(1, "b1-warmup", creds, out / "warmup")  # template render, first-run costs
        for rep in range(s.reps):
            one.append(_batch(1, f"b1-one-r{rep}", creds, out / f"one-{rep}")[0])
            default8.append(_batch(n, f"b1-c8-r{rep}", creds, out / f"c8-{rep}")[0])
            with CpuMeter() as meter:
                all_at_once.append(_batch(n, f"b1-cn-r{rep}", creds, out / f"cn-{rep}",
                                          max_concurrency=n)[0])
            cpu.append(meter.figures)
            per_clip = [recipe_clip(sim.base_url, f"B1 recipe r{rep} clip {i}",
                                    out / f"recipe-{rep}-{i}.mp4", interval)
                        for i in range(recipe_n)]
            recipe.append(sum(per_clip) / len(per_clip))
        sim_submits = sim.submits()
    recipe_total = median(recipe) * n
    best = median(all_at_once)
    speedup_all = recipe_total / best
    speedup_8 = recipe_total / median(default8)
    vs_one_all = best / median(one)
    vs_one_8 = median(default8) / median(one)
    met = speedup_all >= 30 and vs_one_all <= 2
    notes = [
        f"Simulator: render_seconds={render:g}, cheap render mode, no rate limit, APIMart "
        f"dialect; clips are the flow defaults (MiniMax-Hailuo-02, 768p, 5 s), each with a "
        "distinct prompt so no submit cache is hit. Files land in benchmarks/work/b1/.",
        "generate_batch runs in this process against the Prefect test server (flow run "
        "creation included in the wall time); each clip is submit -> adaptive wait -> "
        "verified download -> thumbnail -> manifest, five Prefect task runs per clip. "
        "Reported for the default max_concurrency=8 and for max_concurrency=40 (all clips "
        "in flight: with no rate limit nothing else needs bounding).",
        f"Guide's recipe: submit (plain HTTP), `sleep({interval:g})` + status until "
        "completed, `httpx.get(url).content` to a file, one clip after another, in this "
        f"process. Measured on {recipe_n} consecutive clips per repetition; the 40-clip "
        "figure is the median per-clip time x 40 (every clip costs the same: one 15 s "
        "sleep covers the 5 s render, then a download), so one 40-clip run would take "
        f"about {recipe_total / 60:.0f} minutes.",
        f"One clip: generate_batch with a single clip, same options. A warm-up one-clip "
        f"batch ran first (renders the cheap-mode template). Simulator tasks created: "
        f"{sim_submits}.",
    ]
    figures = {
        "clips": n,
        "one_clip_seconds": spread(one),
        "batch_concurrency_all_seconds": spread(all_at_once),
        "batch_concurrency_8_seconds": spread(default8),
        "recipe_seconds_per_clip": spread(recipe),
        "recipe_40_clips_seconds_extrapolated": round(recipe_total, 1),
        "speedup_vs_recipe_concurrency_all": round(speedup_all, 1),
        "speedup_vs_recipe_concurrency_8": round(speedup_8, 1),
        "batch_over_one_clip_concurrency_all": round(vs_one_all, 2),
        "batch_over_one_clip_concurrency_8": round(vs_one_8, 2),
        "cpu_during_batch_concurrency_all": cpu,
    }
    return result("B1", "40 text-to-video clips through generate_batch", figures=figures,
                  verdict_notes=b1_verdict_notes(figures),
                  headline=f"{best:.1f} s ({speedup_all:.0f}x the recipe's ~{recipe_total:.0f} s; "
                f"{vs_one_all:.1f}x one clip {median(one):.1f} s) with max_concurrency={n}; "
                f"default 8: {median(default8):.1f} s", met=met, notes=notes)


# ---------------------------------------------------------------------------------- B7
def b7_verdict_notes(f: dict[str, Any]) -> list[str]:
    """Why B7's targets are met or missed, from its figures."""
    notes: list[str] = []
    submits = f["rerun_submits"]
    ratio = f["rerun_over_first"]
    again, first = f["rerun_seconds"]["median"], f["first_run_seconds"]["median"]
    if max(submits) != 0:
        notes.append("MISSED (0 submits): a re-run submitted again - a money bug.")
    if ratio > 0.10:
        long_render = f.get("long_render")
        settled = f.get("rerun_settled_seconds", {}).get("median")
        text = (
            f"MISSED (wall <= 10%): the re-run takes {again:.1f} s, {ratio:.0%} of the first "
            f"run ({first:.1f} s). The first run is short here: a "
            f"{f.get('render_seconds', 5.0):g} s render with all clips "
            "in parallel, so 10% is well under a second, less than Prefect's own fixed cost "
            "of a flow run on this server (creating the run, state changes, heartbeat "
            "thread, the preflight, the table artifact), before any clip: per clip the re-run "
            "only reads its ledger entry and re-hashes and probes the local file (no task "
            "run, no API or provider call: flows/ledger.py).")
        if settled is not None:
            text += (f" Started {f.get('settle_seconds', 10.0):g} s after the previous run "
                     f"instead of at once, the re-run takes {settled:.1f} s")
            text += (": right after a run the SQLite-backed server is still recording it, "
                     "answers 503 'database is locked' and Prefect's client backs off 2 s "
                     "(seen in a profile of create_flow_run)." if settled < again - 0.5
                     else ".")
        if long_render:
            text += (f" Measured with a {long_render['render_seconds']:g} s render (nearer "
                     f"real Hailuo times): first run {long_render['first']:.1f} s, re-run "
                     f"{long_render['rerun']:.1f} s = {long_render['ratio']:.0%}.")
        text += (" What is left is per batch, not per clip: a PostgreSQL-backed server "
                 "(no 503 back-off) is what would shorten it further.")
        notes.append(text)
    return notes


def b7_rerun(s: Settings) -> dict[str, Any]:
    from hailuo.simulator import run_simulator

    n = s.pick(10, 2)
    render = s.pick(5.0, 0.5)
    long_render = s.pick(60.0, 1.0)
    settle = s.pick(10.0, 0.5)
    first, again, settled, submits, downloads = [], [], [], [], []
    long_first, long_again = [], []
    with run_simulator(render_seconds=render, cheap=True) as sim:
        creds = save_sim_credentials("bench-b7", sim.base_url)
        _batch(1, "b7-warmup", creds, s.work / "b7" / "warmup")
        for rep in range(s.reps):
            out = s.work / "b7" / f"r{rep}"
            t1, _ = _batch(n, f"b7-r{rep}", creds, out, max_concurrency=n)
            before, dl_before = sim.submits(), len(sim.requests("download"))
            t2, _ = _batch(n, f"b7-r{rep}", creds, out, max_concurrency=n)
            time.sleep(settle)
            t3, _ = _batch(n, f"b7-r{rep}", creds, out, max_concurrency=n)
            first.append(t1)
            again.append(t2)
            settled.append(t3)
            submits.append(float(sim.submits() - before))
            downloads.append(float(len(sim.requests("download")) - dl_before))
        sim.configure(render_seconds=long_render)
        for rep in range(s.reps):
            out = s.work / "b7" / f"long-r{rep}"
            t1, _ = _batch(n, f"b7-long-r{rep}", creds, out, max_concurrency=n)
            before = sim.submits()
            t2, _ = _batch(n, f"b7-long-r{rep}", creds, out, max_concurrency=n)
            long_first.append(t1)
            long_again.append(t2)
            submits.append(float(sim.submits() - before))
    ratio = median(again) / median(first)
    met = max(submits) == 0 and ratio <= 0.10
    notes = [
        f"{n} clips (render {render:g} s, cheap mode, max_concurrency={n}), then the same "
        "generate_batch call again at once with the same clips, options and output folder "
        f"(the measured re-run), then once more {settle:g} s later (settled); fresh prompts "
        f"per repetition. Repeated with a {long_render:g} s render (first run and an "
        "immediate re-run). Submits and downloads counted in the simulator's log over all "
        "re-runs.",
        "What a re-run does per clip: the ledger of verified clips (flows/ledger.py, keyed "
        "like the submit cache) holds its result, and the file still verifies (size, sha256, "
        "it decodes): the clip is not run at all (no task run, no status call, no provider "
        "call). A clip without a valid entry takes the normal path: the submit is a Prefect "
        "cache hit, one status call, download_video finds the verified file.",
    ]
    figures = {
        "render_seconds": render,
        "settle_seconds": settle,
        "first_run_seconds": spread(first),
        "rerun_seconds": spread(again),
        "rerun_settled_seconds": spread(settled),
        "rerun_over_first": round(ratio, 3),
        "rerun_settled_over_first": round(median(settled) / median(first), 3),
        "long_render": {"render_seconds": long_render, "first": median(long_first),
                        "rerun": median(long_again),
                        "ratio": round(median(long_again) / median(long_first), 3),
                        "first_runs": long_first, "rerun_runs": long_again},
        "rerun_submits": submits,
        "rerun_downloads": downloads,
    }
    return result("B7", "re-running a finished 10-clip batch", figures=figures,
                  verdict_notes=b7_verdict_notes(figures),
                  headline=f"re-run {median(again):.1f} s = {ratio:.0%} of the first "
                f"{median(first):.1f} s (settled {median(settled):.1f} s; with "
                f"{long_render:g} s renders {median(long_again):.1f} s = "
                f"{figures['long_render']['ratio']:.0%}); {int(max(submits))} "
                f"submits, {int(max(downloads))} downloads", met=met, notes=notes)


# ---------------------------------------------------------------------------------- B8
def b8_verdict_notes(f: dict[str, Any]) -> list[str]:
    """Why B8's targets are met or missed, from its figures."""
    notes: list[str] = []
    rows = f["runs"]
    used = f["rate_used_of_allowed"]
    steady = f.get("steady_rate_used_of_allowed", float("nan"))
    limited_total = f["rate_limited_answers_total"]
    n = f.get("clips", 60)
    met = (limited_total == 0 and used >= 0.9
           and all(r["accepted"] == n for r in rows))
    if not met:
        spans = median([r["span"] for r in rows])
        notes.append(
            f"MISSED: rate used {used:.0%} of 120/min (steady state {steady:.0%}), "
            f"{limited_total} rate-limited answers; the {n} submits took {spans:.0f} s. "
            "The 90% target equals the limit's whole budget: `deployments.setup` sizes the "
            "bucket with 10% headroom (108 a minute: a burst of 10, then 1.65 per second, "
            "82.5% of 120), so only the burst lifts a run above 82.5% and a long batch "
            "cannot pass it by design. The measured steady rate sits a little under the "
            "bucket's 1.65/s because the server floors the decay at every grant (the "
            "fraction of a slot that leaked between the decay step and the grant - the "
            "read, the ask and a few ms of jitter - is lost each time, about 7%). "
            "What would close it: a smaller headroom (`deployments.setup --headroom "
            "0.05`; a 429 is still retried safely, as no task is created).")
    h5 = f.get("headroom_5pct")
    if h5:
        notes.append(
            f"Measured in the same run with --headroom 0.05 ({h5['limit']}): "
            f"{h5['rate_used_of_allowed']:.0%} of 120/min (steady state "
            f"{h5['steady_rate_used_of_allowed']:.0%}), {h5['rate_limited_answers_total']} "
            f"rate-limited answers, at most {h5['max_in_60s']} submits in any 60 s. The "
            "default stays at 10%: the real provider's window and clock are not known "
            "to us, and a batch's rate matters less than its never being refused.")
    return notes


def _ensure_limit(rpm: int, headroom: float = 0.1) -> str:
    from prefect.client.orchestration import get_client

    try:
        from prefect_hailuo.deployments.setup import ensure_submit_limit
    except ImportError:  # operator setup not there: the same arithmetic, inline
        ensure_submit_limit = None
    with get_client(sync_client=True) as client:
        if ensure_submit_limit is not None:
            return "deployments.setup.ensure_submit_limit: " + ensure_submit_limit(
                client, rpm, headroom)
        client.upsert_global_concurrency_limit_by_name(
            "hailuo-submit", max(1, rpm // 10), slot_decay_per_second=rpm * 0.9 / 60)
        return f"hailuo-submit: limit {max(1, rpm // 10)}, decay {rpm * 0.9 / 60:.3f}/s"


def _burst(rpm: int, headroom: float = 0.1) -> int:
    """The limit's burst (slots that need no decay), as the operator setup sizes it."""
    try:
        from prefect_hailuo.deployments.limits import submit_limit
    except ImportError:
        return max(1, rpm // 10)
    return submit_limit(rpm, headroom).limit


def _max_in_window(times: list[float], window: float = 60.0) -> int:
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


def _b8_runs(s: Settings, sim: Any, creds: str, n: int, rpm: int, headroom: float
             ) -> list[dict[str, Any]]:
    """``s.reps`` runs of two worker processes sharing the limit (sized with ``headroom``)."""
    from prefect.settings import PREFECT_API_URL

    tag = f"h{round(headroom * 100):02d}"
    rows = []
    for rep in range(s.reps):
        time.sleep(s.pick(8.0, 0.0))  # let the leaky bucket drain between repetitions
        sim.reset()
        env = child_env(PREFECT_API_URL=str(PREFECT_API_URL.value()))
        started = time.perf_counter()
        meter = CpuMeter().__enter__()
        procs = [subprocess.Popen(
            [sys.executable, "-m", "benchmarks.batch_bench", "worker", "--creds", creds,
             "--n", str(n // 2), "--tag", f"b8-{tag}-r{rep}-w{w}",
             "--out", str(s.work / "b8" / f"{tag}-r{rep}-w{w}")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            for w in (1, 2)]
        outs = [p.communicate(timeout=900) for p in procs]
        wall = time.perf_counter() - started
        meter.__exit__(None, None, None)
        for p, (_so, se) in zip(procs, outs, strict=True):
            if p.returncode != 0:
                raise RuntimeError(f"B8 worker failed: {se[-2000:]}")
        workers = [json.loads(so.strip().splitlines()[-1]) for so, _ in outs]
        submits = sim.requests("submit")
        ok = sorted(e["time"] for e in submits if e["accepted"] and not e["replay"])
        limited = [e for e in sim.requests() if e["status"] == 429
                   or (e.get("fault") or "").find("rate_limited") >= 0]
        span = ok[-1] - ok[0] if len(ok) > 1 else float("nan")
        burst = _burst(rpm, headroom)
        steady = ((len(ok) - 1 - burst) / (ok[-1] - ok[burst])
                  if len(ok) > burst + 1 else float("nan"))
        rows.append({"wall": wall, "accepted": len(ok), "rate_limited": len(limited),
                     "span": span, "rate": (len(ok) - 1) / span if span else 0.0,
                     "steady_rate": steady, "max_in_60s": _max_in_window(ok),
                     "worker_seconds": [w["seconds"] for w in workers],
                     "cpu": meter.figures,
                     "submit_offsets_s": [round(t - ok[0], 2) for t in ok]})
    return rows


def b8_rate_limit(s: Settings) -> dict[str, Any]:
    from hailuo.simulator import run_simulator

    n = s.pick(60, 4)
    rpm = 120
    render = s.pick(5.0, 0.5)
    allowed = rpm / 60.0
    limit_desc = _ensure_limit(rpm)
    with run_simulator(render_seconds=render, cheap=True, rpm=rpm) as sim:
        creds = save_sim_credentials("bench-b8", sim.base_url)
        _batch(1, "b8-warmup", creds, s.work / "b8" / "warmup")
        rows = _b8_runs(s, sim, creds, n, rpm, 0.1)
        limit_05 = _ensure_limit(rpm, 0.05)
        rows_05 = _b8_runs(s, sim, creds, n, rpm, 0.05)
        _ensure_limit(rpm)
    rates = [r["rate"] for r in rows]
    used = median(rates) / allowed
    limited_total = sum(r["rate_limited"] for r in rows)
    met = limited_total == 0 and used >= 0.9 and all(r["accepted"] == n for r in rows)
    steady_used = median([r["steady_rate"] for r in rows]) / allowed
    notes = [
        f"Simulator: rpm={rpm} submits per minute per key (sliding 60 s window), render "
        f"{render:g} s cheap mode; both workers use the same key.",
        "Two workers = two OS processes, each running generate_batch for half the clips "
        "(max_concurrency 30) against the same Prefect server (the runner's test server, "
        "through PREFECT_API_URL), started together. Not `prefect worker` processes pulling "
        "deployments: the submit path and the shared limit are the same, without the "
        "deployment/infrastructure start-up.",
        f"Global concurrency limit created through the Prefect API with the project's "
        f"sizing ({limit_desc}); every submit_generation takes a slot with "
        "take_submit_slot('hailuo-submit') (tasks/submit_slots.py: reads the limit, asks "
        "only when a slot is free).",
        "Rate used = (accepted submits - 1) / (last submit - first submit), from the "
        "simulator's log, over the allowed 2 per second. Rate-limit errors = any request the "
        "simulator answered 429 (the client would have retried it, so flows alone would not "
        "show them). The simulator's log and limiter are reset between repetitions.",
        f"Steady rate after the first {_burst(rpm)} submits (the limit's burst): "
        f"{steady_used:.0%} of the allowed rate. The limit is sized to a 10% headroom and "
        "bounds any 60 s window, so a long batch settles at about "
        "(budget + 1 - burst) / 60 per second: 99 per minute here, 82.5% of 120.",
        "Before tasks/submit_slots.py (Prefect's rate_limit(), same limit, same machine "
        "on 2026-11-27): 32-44% of 120/min - refused asks reset the server's decay clock "
        "and each 503 from the busy SQLite server cost a 2 s client back-off.",
    ]
    figures = {
        "clips": n,
        "runs": rows,
        "rate_used_of_allowed": round(used, 3),
        "steady_rate_used_of_allowed": round(steady_used, 3),
        "rate_limited_answers_total": limited_total,
        "wall_seconds": spread([r["wall"] for r in rows]),
        "headroom_5pct": {
            "limit": limit_05,
            "rate_used_of_allowed": round(median([r["rate"] for r in rows_05]) / allowed, 3),
            "steady_rate_used_of_allowed": round(
                median([r["steady_rate"] for r in rows_05]) / allowed, 3),
            "rate_limited_answers_total": sum(r["rate_limited"] for r in rows_05),
            "max_in_60s": max(r["max_in_60s"] for r in rows_05),
            "accepted": [r["accepted"] for r in rows_05],
            "runs": rows_05,
        },
    }
    return result("B8", "60 clips, 2 workers, simulator limit 120 requests/min",
                  figures=figures, verdict_notes=b8_verdict_notes(figures),
                  headline=f"{limited_total} rate-limited answers; "
                           f"{median(rates) * 60:.0f} submits/min "
                f"= {used:.0%} of 120/min (steady state {steady_used:.0%})", met=met,
        notes=notes)


VERDICTS = {"B1": b1_verdict_notes, "B7": b7_verdict_notes, "B8": b8_verdict_notes}


def _worker_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--creds", required=True)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--tag", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    seconds, res = _batch(args.n, args.tag, args.creds, Path(args.out),
                          max_concurrency=args.n)
    print(json.dumps({"seconds": seconds, "clips": len(res.clips)}))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        _worker_main(sys.argv[2:])
    else:
        sys.exit("usage: python -m benchmarks.batch_bench worker --creds NAME --n N "
                 "--tag TAG --out DIR")

