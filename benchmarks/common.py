"""Shared helpers: settings per size (full/quick), timing, machine description, Prefect.

Why every benchmark returns a plain dict: the runner writes them as they are to
``results.json`` and renders ``results.md`` from that file, so the Markdown can be
regenerated (``--render-only``) without measuring again.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "work"
BENCH_KEY = "bench-simulator-key"


@dataclass
class Settings:
    """Workload sizes. ``full`` is the issue's workload; ``quick`` only proves the code runs."""

    quick: bool
    reps: int
    work: Path
    extra: dict[str, Any] = field(default_factory=dict)

    def pick(self, full: Any, quick: Any) -> Any:
        return quick if self.quick else full


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def spread(values: list[float]) -> dict[str, Any]:
    """Median plus the raw repetitions (rounded), for the JSON file."""
    return {"median": round(median(values), 4), "runs": [round(v, 4) for v in values],
            "min": round(min(values), 4) if values else None,
            "max": round(max(values), 4) if values else None}


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


PACKAGES = ("prefect", "prefect-aws", "boto3", "botocore", "moto", "httpx", "fastapi",
            "uvicorn", "av", "numpy", "pillow", "pydantic")


def machine() -> dict[str, Any]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    curl = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        curl = subprocess.run(["curl", "--version"], capture_output=True, text=True,
                              timeout=5).stdout.split("\n", 1)[0]
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gb": _mem_total_gb(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": versions,
        "curl": curl,
        "loadavg_start": loadavg(),
    }


# ---------------------------------------------------------------------------- memory
def rss_bytes() -> int:
    """Current resident set size (Linux ``VmRSS``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def peak_rss_bytes() -> int:
    """Peak resident set size since start or the last ``reset_peak_rss`` (``VmHWM``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux >= 4.0); False when not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# ---------------------------------------------------------------------------- Prefect
def prepare_prefect_env(work: Path) -> Path:
    """Point everything Prefect persists at a fresh folder; call before importing prefect."""
    home = Path(tempfile.mkdtemp(prefix="prefect-home-", dir=work))
    os.environ["PREFECT_HOME"] = str(home)
    os.environ["PREFECT_LOCAL_STORAGE_PATH"] = str(home / "storage")
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.pop("PREFECT_API_URL", None)
    return home


class PrefectSession:
    """One Prefect test server for all benchmarks that need it, started on first use."""

    def __init__(self) -> None:
        self._stack: contextlib.ExitStack | None = None
        self.startup_seconds: float | None = None

    def ensure(self) -> None:
        if self._stack is not None:
            return
        from prefect.testing.utilities import prefect_test_harness

        started = time.perf_counter()
        stack = contextlib.ExitStack()
        stack.enter_context(prefect_test_harness(server_startup_timeout=120))
        self._stack = stack
        self.startup_seconds = round(time.perf_counter() - started, 2)

    @property
    def api_url(self) -> str:
        from prefect.settings import PREFECT_API_URL

        return str(PREFECT_API_URL.value())

    def close(self) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None


def save_sim_credentials(name: str, base_url: str) -> str:
    """A HailuoCredentials block pointing at a benchmark simulator (key inline)."""
    from pydantic import SecretStr

    from prefect_hailuo.blocks import HailuoCredentials

    HailuoCredentials(provider="apimart", base_url=base_url, api_key=SecretStr(BENCH_KEY),
                      api_key_secret_block=None).save(name, overwrite=True)
    return name


@contextlib.contextmanager
def quiet_logs() -> Iterator[None]:
    """Keep Prefect's per-task INFO lines off the terminal while timing."""
    import logging

    names = ("prefect", "hailuo", "httpx", "botocore", "boto3", "s3transfer")
    old = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.ERROR)
    try:
        yield
    finally:
        for n, level in old.items():
            logging.getLogger(n).setLevel(level)


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def run_child(module: str, *args: str, env: dict[str, str] | None = None,
              timeout: float = 900) -> dict[str, Any]:
    """Run ``python -m module args`` and parse the JSON its last stdout line holds."""
    proc = subprocess.run([sys.executable, "-m", module, *args], capture_output=True,
                          text=True, cwd=ROOT, env=env or child_env(), timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{module} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def result(bid: str, what: str, **fields: Any) -> dict[str, Any]:
    """A benchmark's record: id, what, then figures/target/met/notes as given."""
    record = {"id": bid, "what": what}
    record.update(fields)
    return record


# ---------------------------------------------------------------------------- CPU use
def _proc_stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds used) of a live process, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants_cpu() -> dict[int, float]:
    """CPU seconds of every live descendant process of this one (e.g. the Prefect server)."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            st = _proc_stat(int(entry.name))
            if st is not None:
                stats[int(entry.name)] = st
    mine, frontier = {}, {os.getpid()}
    while frontier:
        frontier = {pid for pid, (ppid, _) in stats.items() if ppid in frontier}
        mine.update({pid: stats[pid][1] for pid in frontier})
    return mine


class CpuMeter:
    """Where the CPU went during a measured step: this process (flows, simulator threads),
    live descendants (the Prefect server), and children waited for (worker processes)."""

    def __enter__(self) -> CpuMeter:
        import resource

        self._self = resource.getrusage(resource.RUSAGE_SELF)
        self._children = resource.getrusage(resource.RUSAGE_CHILDREN)
        self._desc = descendants_cpu()
        self._t = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        import resource

        wall = time.perf_counter() - self._t
        me = resource.getrusage(resource.RUSAGE_SELF)
        ch = resource.getrusage(resource.RUSAGE_CHILDREN)
        desc = descendants_cpu()
        server = sum(desc[p] - self._desc[p] for p in desc if p in self._desc)
        self.figures = {
            "wall_s": round(wall, 2),
            "runner_process_cpu_s": round(me.ru_utime + me.ru_stime - self._self.ru_utime
                                          - self._self.ru_stime, 2),
            "prefect_server_cpu_s": round(server, 2),
            "finished_children_cpu_s": round(ch.ru_utime + ch.ru_stime
                                             - self._children.ru_utime
                                             - self._children.ru_stime, 2),
            "cpu_capacity_s": round(wall * (os.cpu_count() or 1), 2),
            "loadavg_after": loadavg(),
        }
