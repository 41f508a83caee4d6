"""A real ``prefect server start`` for the tests that need one, the REST helpers those
tests share (tests/test_deployments.py, tests/test_scale_out.py), and a throwaway
PostgreSQL cluster for a server to run on.

Every server, worker or serve process is started in its own session so that stopping it
stops its children (flow-run subprocesses) too; whatever a ``Server`` started is stopped
when its context ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
PREFECT = Path(sys.executable).parent / "prefect"
FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    """Stop a process started with its own session, children (uvicorn) included."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):  # anything the group left behind
        os.killpg(proc.pid, signal.SIGKILL)


@dataclass
class Server:
    url: str
    env: dict[str, str]
    home: Path
    procs: list[subprocess.Popen] = field(default_factory=list)
    logs: dict[str, Path] = field(default_factory=dict)

    def run(self, *args: str, timeout: float = 120, unset: tuple[str, ...] = (), **env: str
            ) -> subprocess.CompletedProcess[str]:
        full = {k: v for k, v in {**self.env, **env}.items() if k not in unset}
        return subprocess.run(list(args), cwd=ROOT, env=full, text=True,
                              capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def start(self, name: str, *args: str, cwd: Path | None = None,
              env: Mapping[str, str] | None = None) -> subprocess.Popen:
        """Start a long-running process (logging to ``<home>/<name>.log``), by default in
        the repository with the server's environment."""
        log = self.home / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(list(args), cwd=cwd or ROOT,
                                    env=dict(self.env if env is None else env), stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        self.procs.append(proc)
        self.logs[name] = log
        return proc

    def stop(self, name: str) -> None:
        for proc in self.procs:
            if name in proc.args:
                _stop(proc)

    def log(self, name: str) -> str:
        return self.logs[name].read_text(errors="replace")

    @contextlib.contextmanager
    def settings(self) -> Iterator[None]:
        """Point this test process's Prefect client at the server."""
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: self.url}):
            yield


@contextlib.contextmanager
def running_server(home: Path, startup_timeout: float = 120, **extra_env: str
                   ) -> Iterator[Server]:
    """``prefect server start`` on a free loopback port with its own PREFECT_HOME under
    ``home`` (SQLite there unless ``extra_env`` names another database); everything the
    returned ``Server`` started is stopped on exit."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(home / "home"),
           "PREFECT_LOCAL_STORAGE_PATH": str(home / "storage"),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_API_URL": url,
           "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_PREFETCH_SECONDS": "5",
           "PYTHONPATH": str(ROOT), **extra_env}
    env.pop("HAILUO_API_KEY", None)
    srv = Server(url=url, env=env, home=home)
    proc = srv.start("server", str(PREFECT), "server", "start", "--host", "127.0.0.1",
                     "--port", str(port))
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            assert proc.poll() is None, srv.log("server")[-3000:]
            assert time.monotonic() < deadline, "prefect server did not answer /api/health"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            time.sleep(0.5)
        yield srv
    finally:
        for started in reversed(srv.procs):
            _stop(started)


def _api(method: str, url: str, **kwargs) -> httpx.Response:
    """One REST call to the Prefect server, retried on 503 as Prefect's own client does.

    The server answers 503 when SQLite is briefly locked (workers and runs writing at the
    same time); that says "try again", not "failed".
    """
    for attempt in range(10):
        response = httpx.request(method, url, timeout=30, **kwargs)
        if response.status_code != 503:
            return response
        time.sleep(0.5 * (attempt + 1))
    return response


def _trigger(server: Server, name: str, parameters: dict) -> str:
    from prefect.deployments import run_deployment

    with server.settings():
        run = run_deployment(name, parameters=parameters, timeout=0)
    return str(run.id)


def _wait_final(server: Server, run_ids: list[str], timeout: float = 300) -> dict[str, dict]:
    """Poll the REST API until every run is final; returns the runs as JSON."""
    deadline = time.monotonic() + timeout
    while True:
        runs = {rid: _api("GET", f"{server.url}/flow_runs/{rid}").json() for rid in run_ids}
        if all(r["state"]["type"] in FINAL for r in runs.values()):
            return runs
        assert time.monotonic() < deadline, {
            rid: r["state"]["type"] for rid, r in runs.items()}
        time.sleep(1)


# -- a throwaway PostgreSQL cluster ----------------------------------------------------
PG_PROGRAMS = ("initdb", "pg_ctl", "postgres")
#: Set to 0 to run the PostgreSQL-capable tests on SQLite even where PostgreSQL exists.
PG_SWITCH = "HAILUO_TEST_POSTGRES"


def postgres_bin_dir() -> Path | None:
    """The folder holding initdb, pg_ctl and postgres: on PATH, else Debian's
    ``/usr/lib/postgresql/<version>/bin`` (newest first); None when there is none."""
    candidates = [Path(found).parent for found in [shutil.which("pg_ctl")] if found]
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True,
                         key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    for folder in candidates:
        if all(os.access(folder / name, os.X_OK) for name in PG_PROGRAMS):
            return folder
    return None


def _unprivileged() -> dict | None:
    """``subprocess`` arguments running PostgreSQL's programs as a user they accept: this
    one unless it is root (initdb and postgres refuse root), then the ``postgres`` or
    ``nobody`` account; None when root has neither."""
    if os.geteuid() != 0:
        return {}
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            account = pwd.getpwnam(name)
            return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    return None


@contextlib.contextmanager
def throwaway_postgres(database: str = "prefect") -> Iterator[str | None]:
    """A PostgreSQL cluster of its own (initdb into a temporary folder, trust auth,
    loopback only, on a free port, durability off: it is thrown away) with an empty
    ``database``; yields its SQLAlchemy asyncpg URL, or None when PostgreSQL is not
    installed (or ``HAILUO_TEST_POSTGRES=0``): the caller falls back to SQLite. The cluster
    is stopped and its folder removed on exit.

    As root the programs run as ``postgres``/``nobody`` in a folder that account owns
    (under the system temporary folder: pytest's own is private to root)."""
    bin_dir = postgres_bin_dir()
    run_as = _unprivileged()
    if os.environ.get(PG_SWITCH, "1") == "0" or bin_dir is None or run_as is None:
        yield None
        return
    base = Path(tempfile.mkdtemp(prefix="hailuo-pg-"))
    if run_as:
        os.chown(base, run_as["user"], run_as["group"])
    data, log, port = base / "data", base / "postgres.log", _free_port()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(base),
           "LC_ALL": "C", "LANG": "C", "TZ": "UTC"}

    def pg(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(bin_dir / args[0]), *args[1:]], cwd=base, env=env,
                              text=True, capture_output=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, **run_as)

    def check(done: subprocess.CompletedProcess[str]) -> None:
        logged = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        assert done.returncode == 0, (done.args, done.stdout[-2000:], done.stderr[-2000:],
                                      logged)

    try:
        check(pg("initdb", "-D", str(data), "-U", "prefect", "--auth=trust", "--no-sync",
                 "--encoding=UTF8", "--locale=C"))
        options = (f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        check(pg("pg_ctl", "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60",
                 "start"))
        asyncio.run(_create_database(port, database))
        yield f"postgresql+asyncpg://prefect:prefect@127.0.0.1:{port}/{database}"
    finally:
        if (data / "postmaster.pid").exists():
            pg("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "-t", "30", "stop")
        shutil.rmtree(base, ignore_errors=True)


async def _create_database(port: int, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(host="127.0.0.1", port=port, user="prefect",
                                 database="postgres", timeout=30, ssl=False)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
