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
