"""The benchmark runner works end to end on tiny inputs (no timing is asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_runner_quick_writes_both_files(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--only", "B2,B3,B6,B10",
         "--out", str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["quick"] is True
    assert data["machine"]["cores"] and data["machine"]["python"]
    by_id = {r["id"]: r for r in data["results"]}
    assert set(by_id) == {"B2", "B3", "B6", "B10"}
    for record in by_id.values():
        assert "error" not in record, record.get("error")
        assert record["figures"] and record["headline"]
    markdown = (tmp_path / "results.md").read_text()
    assert "Quick mode" in markdown
    for bid in by_id:
        assert f"### {bid}:" in markdown


def _quick(tmp_path: Path, only: str) -> dict:
    """``benchmarks.run --quick --only <only>`` into ``tmp_path``; its one record."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--only", only,
         "--out", str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [record] = json.loads((tmp_path / "results.json").read_text())["results"]
    assert record["id"] == only
    assert "error" not in record, record.get("error")
    assert record["figures"] and record["headline"]
    assert f"### {only}:" in (tmp_path / "results.md").read_text()
    return record["figures"]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_b11_quick_measures_the_orchestrating_process(tmp_path: Path) -> None:
    """B11 at 6 clips (about 30 s): the batch ran in a child process whose memory and CPU
    were read, and the figures say which batch flow that was."""
    figures = _quick(tmp_path, "B11")
    assert figures["clips"] == 6
    assert figures["flow"] in ("agenerate_batch (async)", "generate_batch (threads)")
    [run] = figures["runs"]
    assert run["clips"] == 6 and run["accepted"] == 6
    assert run["peak_rss_bytes"] > 0 and run["cpu_process_s"] >= run["cpu_flow_s"] > 0
    assert figures["provider_bound_seconds"] > 0 and figures["wall_over_provider_bound"] > 0


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_b12_quick_spreads_a_batch_over_one_and_two_workers(tmp_path: Path) -> None:
    """B12 at 2 clips of one clip per chunk run (about 60 s, most of it `prefect server
    start`, setup and deploy): both batches ran as chunk runs of the deployed chunk
    deployment on real workers."""
    figures = _quick(tmp_path, "B12")
    assert figures["clips"] == 2 and figures["clips_per_worker_in_flight"] == 1
    for key in ("runs_one_worker", "runs_two_workers"):
        [run] = figures[key]
        assert run["clips"] == 2
        assert [c["state"] for c in run["chunks"]] == ["COMPLETED", "COMPLETED"]
    assert figures["submits"] == 4  # 2 clips x 2 batches, fresh prompts each
    assert figures["two_over_one"] > 0
