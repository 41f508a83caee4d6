"""B2: how long a finished render waits before it is a verified file on disk, and at how
many status calls, for three ways of waiting: fixed 15 s polling (the guide's recipe),
``HailuoClient.wait``'s adaptive polling, and adaptive polling woken by callbacks."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.common import BENCH_KEY, Settings, median, result, spread

MODES = ("fixed15", "adaptive", "callbacks")


def _clip(handle: Any, mode: str, idx: int, render_s: float, start_at: float,
          receiver: Any, out: Path, fixed_interval: float, records: list[dict[str, Any]],
          lock: threading.Lock) -> None:
    from hailuo.callbacks import wait_with_callbacks
    from hailuo.client import HailuoClient
    from hailuo.models import JobStatus, VideoRequest

    time.sleep(max(0.0, start_at - time.monotonic()))
    request = VideoRequest(prompt=f"[Static shot] B2 {mode} render {render_s}s take {idx}",
                           callback_url=receiver.url_for() if mode == "callbacks" else None)
    error = None
    with HailuoClient("apimart", api_key=BENCH_KEY, base_url=handle.base_url) as client:
        try:
            job = client.submit(request)
            if mode == "fixed15":  # the guide: sleep 15 s, poll, repeat, then download
                while True:
                    time.sleep(fixed_interval)
                    job = client.status(job.task_id)
                    if job.status.terminal:
                        break
                if job.status is not JobStatus.COMPLETED:
                    raise RuntimeError(f"task ended {job.status}")
            elif mode == "adaptive":
                job = client.wait(job, timeout=600)
            else:
                job = wait_with_callbacks(client, job, receiver, timeout=600)
            video = client.download(job, out / mode / f"{render_s:g}s-{idx}.mp4")
            on_disk = time.time()
        except Exception as exc:  # noqa: BLE001 - recorded as a failed sample
            error = f"{type(exc).__name__}: {exc}"
            on_disk = time.time()
            video = None
    with lock:
        records.append({"mode": mode, "render_s": render_s, "idx": idx,
                        "task_id": getattr(job, "task_id", None), "on_disk": on_disk,
                        "size": video.size if video else None, "error": error})


def _round(render_s: float, s: Settings, reps: int, gap: float, fixed_interval: float,
           receiver: Any) -> list[dict[str, Any]]:
    from hailuo.simulator import run_simulator

    records: list[dict[str, Any]] = []
    lock = threading.Lock()
    out = s.work / "b2"
    with run_simulator(render_seconds=render_s, cheap=True) as handle:
        # Warm-up: the cheap-mode template is rendered once per size; keep that out.
        from hailuo.client import HailuoClient
        from hailuo.models import VideoRequest

        handle.configure(render_seconds=0.0)
        with HailuoClient("apimart", api_key=BENCH_KEY, base_url=handle.base_url) as c:
            c.download(c.wait(c.submit(VideoRequest(prompt="warm-up")), timeout=120),
                       out / "warmup.mp4")
        handle.configure(render_seconds=render_s)
        handle.reset()
        base = time.monotonic() + 0.5
        threads = []
        order = [(mode, i) for i in range(reps) for mode in MODES]  # interleaved
        for k, (mode, i) in enumerate(order):
            t = threading.Thread(target=_clip, args=(handle, mode, i, render_s,
                                                     base + k * gap, receiver, out,
                                                     fixed_interval, records, lock))
            t.start()
            threads.append(t)
        for t in threads:
            t.join()
        statuses = handle.requests("status")
        for rec in records:
            if rec["task_id"] is None:
                continue
            task = handle.task(rec["task_id"])
            rec["completed_at"] = task["completed_at"]
            rec["delay"] = (rec["on_disk"] - task["completed_at"]
                            if task["completed_at"] else None)
            rec["status_calls"] = sum(1 for e in statuses if e["task_id"] == rec["task_id"])
    return records


def b2_latency(s: Settings) -> dict[str, Any]:
    from hailuo.callbacks import CallbackReceiver

    renders = s.pick([5.0, 60.0], [0.5])
    reps = s.pick(max(s.reps, 3), 1)
    gap = s.pick(1.0, 0.2)
    fixed_interval = s.pick(15.0, 1.0)
    all_records: list[dict[str, Any]] = []
    with CallbackReceiver() as receiver:
        for render_s in renders:
            all_records += _round(render_s, s, reps, gap, fixed_interval, receiver)
    figures: dict[str, Any] = {}
    met = True
    errors = [r for r in all_records if r["error"]]
    parts = []
    for render_s in renders:
        for mode in MODES:
            recs = [r for r in all_records if r["render_s"] == render_s and r["mode"] == mode
                    and not r["error"] and r.get("delay") is not None]
            delays = [r["delay"] for r in recs]
            calls = [float(r["status_calls"]) for r in recs]
            figures[f"render_{render_s:g}s_{mode}"] = {
                "delay_s": spread(delays) if delays else None,
                "status_calls_per_clip": spread(calls) if calls else None,
            }
            if not delays:
                met = False
                continue
            d, c = median(delays), median(calls)
            if mode == "callbacks" and (d > 1.0 or c > 6):
                met = False
            if mode == "adaptive" and (d > 2.0 or c > 6):
                met = False
            parts.append(f"{render_s:g}s {mode} {d:.2f} s/{c:g} calls")
    if errors:
        met = False
        figures["errors"] = [r["error"] for r in errors][:5]
    notes = [
        f"{reps} clips per (render time, mode), submitted {gap:g} s apart and interleaved, "
        "against one simulator per render time (APIMart dialect, cheap render mode, 768p 5 s "
        "clip, no rate limit). Each clip has its own HailuoClient in its own thread.",
        "Delay = wall clock when `HailuoClient.download` returned (file streamed, sha256ed, "
        "probed, renamed into place) minus the simulator's `completed_at` for the task (the "
        "instant its status turns to completed). Status calls = status GETs the simulator "
        "logged for the task (the wait's, plus the one `download` makes if needed).",
        f"fixed15: `sleep({fixed_interval:g}); status()` until done, then the same verified "
        "download. adaptive: `client.wait()` with the default PollPolicy (first look at 95% "
        "of the provider's estimate, then 1 s growing x1.3). callbacks: "
        "`wait_with_callbacks` with a `CallbackReceiver`; the simulator POSTs the terminal "
        "status to `<callback_url>/callback` and the waiting client re-polls at once.",
        "Measured at the client layer (what every flow task calls), not through Prefect: a "
        "Prefect task adds its own state bookkeeping after the file is on disk.",
    ]
    if not s.quick:
        notes.append(
            "Fixed 15 s polling and a 60 s render: the poll grid (15, 30, 45, 60 s after "
            "submit) lines up with the simulator's exact 60 s render, so the 60 s poll lands "
            "a few milliseconds after completion and the fixed poller looks as fast as "
            "callbacks there. Real renders take 30-90 s and do not align: the expected "
            "delay of fixed 15 s polling is half the interval (7.5 s) on average, up to 15 s; "
            "the 5 s case shows the unaligned behaviour (first poll 10 s after completion).")
    figures["met"] = met
    return result("B2", "delay render finished -> verified file; status calls per clip",
                  figures=figures, headline="; ".join(parts), met=met, notes=notes,
                  verdict_notes=b2_verdict_notes(figures))


def b2_verdict_notes(f: dict[str, Any]) -> list[str]:
    """What the B2 figures say, and why a target is missed."""
    notes: list[str] = []

    def get(render: str, mode: str, what: str) -> float | None:
        entry = (f.get(f"render_{render}_{mode}") or {}).get(what)
        return entry["median"] if entry else None

    for render in ("5s", "60s"):
        a_calls, c_calls = get(render, "adaptive", "status_calls_per_clip"), get(
            render, "callbacks", "status_calls_per_clip")
        a_delay, c_delay = get(render, "adaptive", "delay_s"), get(render, "callbacks",
                                                                      "delay_s")
        if None in (a_calls, c_calls, a_delay, c_delay):
            continue
        notes.append(
            f"{render} render: callbacks cut the delay from {a_delay:.2f} s (adaptive) to "
            f"{c_delay:.2f} s but not the status calls ({c_calls:g} vs {a_calls:g}): the "
            "callback only wakes the wait early, which keeps its adaptive schedule until "
            "then (the callback is a hint; the status always comes from a poll).")
        if a_calls >= 6:
            notes.append(f"{render} render, adaptive: {a_calls:g} status calls is at the "
                         "target's limit of 6. The wait looks once right after submit, then "
                         "at most every 30 s (PollPolicy.max_interval) until 95% of the "
                         "estimate, then after 1 s, 1.3 s, 1.69 s ...: for a 60 s render "
                         "that is 0, 30, 57, 58, 59.3 and 61 s. A render finishing a few "
                         "seconds past its estimate would take a 7th call; a longer "
                         "max_interval before the estimate (or no look right after submit "
                         "when the estimate is known) would keep a margin.")
    if not f.get("met", True):
        notes.append("MISSED: see the per-mode figures above; a median over target means "
                     "the wait slept past completion (adaptive: the estimate was late or the "
                     "growth step too long; callbacks: the wake-up or the re-poll was slow).")
    return notes


VERDICTS = {"B2": b2_verdict_notes}
