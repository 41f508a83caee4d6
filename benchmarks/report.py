"""Render ``results.json`` as ``results.md``."""

from __future__ import annotations

import json
from typing import Any


def _met(value: Any, text: str | None = None) -> str:
    if text:
        return text
    return {True: "met", False: "**missed**", None: "-"}.get(value, str(value))


def _figure_lines(figures: dict[str, Any], indent: str = "") -> list[str]:
    lines = []
    for key, value in figures.items():
        if isinstance(value, dict) and "median" in value and "runs" in value:
            lines.append(f"{indent}- `{key}`: median **{value['median']}** "
                         f"(runs {', '.join(str(v) for v in value['runs'])})")
        elif isinstance(value, dict):
            lines.append(f"{indent}- `{key}`:")
            lines.extend(_figure_lines(value, indent + "  "))
        else:
            text = json.dumps(value, default=str) if isinstance(value, list) else value
            lines.append(f"{indent}- `{key}`: {text}")
    return lines


def _load_paragraph(data: dict[str, Any]) -> str:
    """Say whether the machine was quiet, from the load averages the runs recorded."""
    loads = [r.get(k) for r in data.get("results", [])
             for k in ("loadavg_before", "loadavg_after") if r.get(k)]
    busiest = max((load[0] for load in loads), default=0.0)
    if busiest > 2.0:  # more runnable processes than cores
        return ("The machine was shared while some benchmarks ran (a 1-minute load average "
                f"up to {busiest:.1f} on 2 cores; each section gives its load before and "
                "after). Times that depend on Prefect orchestration (B1, B7, B8, B9, B11, "
                "B12) suffer most from that.")
    return (f"The machine was otherwise quiet (1-minute load average at most {busiest:.1f} "
            "on 2 cores before and after each benchmark; each section gives its own).")


def render_markdown(data: dict[str, Any]) -> str:
    m = data["machine"]
    out = ["# Benchmark results (issues 8 and 16)", ""]
    if data.get("quick"):
        out += ["> **Quick mode**: tiny inputs and one repetition, to check the runner works. "
                "These numbers mean nothing; run `make bench` for real figures.", ""]
    out += [
        "Written by `python -m benchmarks.run` (`make bench`) from real runs on this machine; "
        "each benchmark's section says when it was measured (a run with `--only` replaces "
        "just those sections). Absolute times on a 2-core VM are noisy; the ratios between "
        "a path and its comparison, measured side by side in the same run, are what to "
        "read. Medians of the repetitions are shown, with every repetition in "
        "`results.json`.",
        "",
        _load_paragraph(data),
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        f"| date (UTC) | {m.get('date')} |",
        f"| CPU | {m.get('cpu_model')}, {m.get('cores')} cores |",
        f"| RAM | {m.get('ram_gb')} GB |",
        f"| OS | {m.get('os')} |",
        f"| Python | {m.get('python')} |",
        "| packages | " + ", ".join(f"{k} {v}" for k, v in m.get("packages", {}).items()
                                   if v) + " |",
        f"| curl | {m.get('curl')} |",
        f"| load average (1/5/15 min) at start / end | {m.get('loadavg_start')} / "
        f"{m.get('loadavg_end', '(run not finished)')} |",
        f"| repetitions | {data.get('reps')} (median reported) |",
        f"| Prefect test server start | {data.get('prefect_startup_seconds')} s (not in any "
        "figure) |",
        f"| whole run | {data.get('total_seconds', '?')} s |",
        "",
        "## Summary",
        "",
        "| id | what | result | compared with | target | target met? |",
        "|---|---|---|---|---|---|",
    ]
    for r in data["results"]:
        out.append(f"| {r['id']} | {r.get('what', '')} | {r.get('headline', '')} | "
                   f"{r.get('compared_with', '')} | {r.get('target', '')} | "
                   f"{_met(r.get('met'), r.get('met_text'))} |")
    out += ["", "## Details", ""]
    for r in data["results"]:
        out += [f"### {r['id']}: {r.get('what', '')}", ""]
        out.append(f"Target: {r.get('target', '')} — {_met(r.get('met'), r.get('met_text'))}. "
                   f"Load average before/after: {r.get('loadavg_before')} / "
                   f"{r.get('loadavg_after')}; took {r.get('seconds', '?')} s; "
                   f"measured {r.get('measured_at', '?')}.")
        out.append("")
        if r.get("figures"):
            out += _figure_lines(r["figures"])
            out.append("")
        for note in r.get("notes", []) + r.get("verdict_notes", []):
            out.append(f"- {note}")
        if r.get("error"):
            out += ["", "```", r["error"].strip()[-1500:], "```"]
        out.append("")
    return "\n".join(out).rstrip() + "\n"
