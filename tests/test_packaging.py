"""The built wheel, installed (not editable) next to a user's own Prefect project.

The repository keeps ``flows/``, ``tasks/``, ``blocks/``, ``deployments/`` and
``examples/`` at its root and maps them under ``prefect_hailuo`` (pyproject.toml,
``package-dir``). These tests prove what a user gets from ``pip install prefect-hailuo``:
only ``hailuo`` and ``prefect_hailuo`` at the top of site-packages, the package data in
place, and a project with its own ``flows``/``tasks``/``blocks``/``deployments`` packages
running our flows, registering our block and loading our collection without either side
shadowing the other.

How the install stays quick: the fresh virtualenv gets the wheel with ``--no-deps`` and a
``.pth`` file naming this environment's site-packages, so Prefect and the other
dependencies resolve without downloading them. A directory added by a ``.pth`` file is not
itself a site directory (its own ``.pth`` files are not run), so this environment's
editable install of the project (its ``__editable__`` finder) is NOT active there: every
test checks that ``prefect_hailuo`` comes from the fresh site-packages, not the checkout.

The ``hailuo init`` tests at the top run in-process and are quick.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import textwrap
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from email.parser import Parser
from pathlib import Path

import httpx
import pytest
import yaml

from prefect_hailuo import scaffold
from prefect_hailuo.cli import main
from tests.prefect_servers import _stop

ROOT = Path(__file__).resolve().parents[1]


# -- hailuo init (in-process, quick) ----------------------------------------------------
def _packaged(relative: str) -> bytes:
    return dict(scaffold.template_files())[relative].read_bytes()


def test_init_writes_prefect_yaml_and_examples(tmp_path, capsys):
    target = tmp_path / "new" / "project"  # created, parents included
    assert main(["init", str(target)]) == 0
    out = capsys.readouterr().out
    assert (target / "prefect.yaml").read_bytes() == (ROOT / "deployments/prefect.yaml"
                                                       ).read_bytes()
    examples = sorted(p.name for p in (target / "examples").iterdir())
    assert "storyboard.yaml" in examples and "__init__.py" not in examples
    assert all(Path(name).suffix in scaffold.EXAMPLE_SUFFIXES for name in examples)
    assert (target / "examples/storyboard.yaml").read_bytes() == _packaged(
        "examples/storyboard.yaml")
    for written in ("prefect.yaml", "examples/storyboard.yaml"):
        assert f"wrote {target / written}" in out
    assert "prefect --no-prompt deploy --all" in out
    assert "prefect worker start --pool hailuo" in out
    assert "python -m prefect_hailuo.deployments.setup" in out


def test_init_refuses_to_overwrite_and_writes_nothing(tmp_path, capsys):
    (tmp_path / "prefect.yaml").write_text("# mine\n")
    assert main(["init", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hailuo: error: ")
    assert "prefect.yaml" in lines[0] and "--force" in lines[0]
    assert (tmp_path / "prefect.yaml").read_text() == "# mine\n"
    assert not (tmp_path / "examples").exists()  # nothing written, not even the new files


def test_init_refuses_when_only_an_example_exists(tmp_path, capsys):
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples/storyboard.yaml").write_text("title: mine\n")
    assert main(["init", str(tmp_path)]) == 2
    assert "storyboard.yaml" in capsys.readouterr().err
    assert not (tmp_path / "prefect.yaml").exists()


def test_init_force_overwrites(tmp_path, capsys):
    (tmp_path / "prefect.yaml").write_text("# mine\n")
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples/storyboard.yaml").write_text("title: mine\n")
    assert main(["init", str(tmp_path), "--force"]) == 0
    assert (tmp_path / "prefect.yaml").read_bytes() == _packaged("prefect.yaml")
    assert (tmp_path / "examples/storyboard.yaml").read_bytes() == _packaged(
        "examples/storyboard.yaml")
    assert not list(tmp_path.rglob("*.tmp"))


def test_init_refuses_a_file_in_the_way(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(["init", str(tmp_path / "file")]) == 2
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir/examples").write_text("x")
    assert main(["init", str(tmp_path / "dir")]) == 2
    err = capsys.readouterr().err
    assert err.count("hailuo: error: ") == 2 and "not a directory" in err
    assert not (tmp_path / "dir/prefect.yaml").exists()


# -- the wheel ------------------------------------------------------------------------
def _source_files() -> list[str]:
    """The tracked files (plus new, not yet committed and not ignored ones, so a working
    tree with work in progress builds what its editable install runs)."""
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "--cached", "--others", "--exclude-standard",
         "-z"], capture_output=True, check=True).stdout.decode()
    return sorted({name for name in listed.split("\0") if name and (ROOT / name).exists()})


#: interpreter settings of this session that would change what the fresh Python imports
#: (pip's own settings, such as an index mirror, are kept: the build may need them)
_PYTHON_ENV = frozenset({"PYTHONPATH", "PYTHONHOME", "PYTHONSAFEPATH", "PYTHONSTARTUP",
                         "PYTHONUSERBASE", "VIRTUAL_ENV", "__PYVENV_LAUNCHER__"})


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment for every subprocess: nothing of this test session's Prefect,
    simulator or Python path settings leaks in."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PREFECT_", "HAILUO_")) and k not in _PYTHON_ENV}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONDONTWRITEBYTECODE="1")
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Build the wheel from a copy of the source tree (as a clean clone would)."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the source tree is what `git ls-files` lists")
    src = tmp_path_factory.mktemp("src")
    for name in _source_files():
        target = src / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)  # follows the root prefect.yaml symlink
    out = tmp_path_factory.mktemp("dist")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), "."],
        cwd=src, env=_clean_env(), capture_output=True, text=True, timeout=300,
        stdin=subprocess.DEVNULL)
    assert build.returncode == 0, (build.stdout + build.stderr)[-4000:]
    wheels = list(out.glob("prefect_hailuo-*.whl"))
    assert len(wheels) == 1, list(out.iterdir())
    return wheels[0]


@pytest.mark.slow
def test_wheel_installs_only_our_two_packages(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        entry_points = zf.read(f"{dist_info}/entry_points.txt").decode()
        metadata = Parser().parsestr(zf.read(f"{dist_info}/METADATA").decode())
        top_level_txt = (zf.read(f"{dist_info}/top_level.txt").decode().split()
                         if f"{dist_info}/top_level.txt" in names else None)
    top = {name.split("/")[0] for name in names} - {dist_info}
    assert top == {"hailuo", "prefect_hailuo"}, sorted(top)
    if top_level_txt is not None:
        assert sorted(top_level_txt) == ["hailuo", "prefect_hailuo"]
    for generic in ("flows", "tasks", "blocks", "deployments", "benchmarks", "tests",
                    "examples"):
        assert not any(n.split("/")[0] == generic for n in names), generic
    for data in ("prefect_hailuo/py.typed", "prefect_hailuo/deployments/prefect.yaml",
                 "prefect_hailuo/examples/storyboard.yaml", "prefect_hailuo/scaffold.py",
                 "prefect_hailuo/flows/generation.py", "prefect_hailuo/blocks/__init__.py"):
        assert data in names, data
    assert not [n for n in names if n.endswith(".pyc") or "__pycache__" in n]
    assert [n for n in names if n.endswith("prefect.yaml")] == [
        "prefect_hailuo/deployments/prefect.yaml"]
    assert "hailuo = prefect_hailuo.cli:main" in entry_points
    collections = entry_points.split("[prefect.collections]", 1)[1].split("[", 1)[0]
    assert collections.split() == ["prefect_hailuo", "=", "prefect_hailuo"]
    assert metadata["Name"] == "prefect-hailuo"
    from prefect_hailuo import __version__

    assert metadata["Version"] == __version__


# -- a fresh environment and a Prefect server ------------------------------------------
@dataclass
class Fresh:
    """A fresh virtualenv with the wheel installed, and a user's project beside it."""

    python: Path
    site_packages: Path
    project: Path
    env: dict[str, str]

    @property
    def bin(self) -> Path:
        return self.python.parent

    def run(self, *args: str | Path, cwd: Path | None = None, timeout: float = 180,
            **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(a) for a in args], cwd=cwd or self.project,
                              env={**self.env, **env}, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def py(self, *args: str | Path, **kwargs) -> subprocess.CompletedProcess[str]:
        return self.run(self.python, *args, **kwargs)


def _ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, (
        f"{proc.args} exited {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}"
        f"\n--- stderr\n{proc.stderr[-5000:]}")
    return proc


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


USER_FILES = {
    # The user's own packages, named like ours were at the repository root.
    "flows/__init__.py": 'Destination = "the user\'s own"\n',
    "tasks/__init__.py": 'def build_prompt():\n    return "the user\'s own"\n',
    "blocks/__init__.py": 'HailuoCredentials = "the user\'s own"\n',
    "deployments/__init__.py": 'NAME = "the user\'s own"\n',
    "flows/my_pipeline.py": '''
        """A user's flow calling prefect-hailuo's flows as subflows."""
        import json
        import sys
        from pathlib import Path

        from prefect import flow

        import blocks
        import deployments
        import flows
        import tasks
        import prefect_hailuo
        import prefect_hailuo.flows
        from prefect_hailuo import ClipSpec, Destination, GenerationOptions
        from prefect_hailuo import generate_batch, text_to_video


        @flow(name="user-pipeline")
        def my_pipeline(out: str) -> dict:
            options = GenerationOptions(resolution="512p")
            single = text_to_video(prompt="[Pan left] a lighthouse at dusk", options=options,
                                   credentials_block="simulator",
                                   destination=Destination(output_dir=f"{out}/single"))
            batch = generate_batch(clips=[ClipSpec(prompt="a red kite over the dunes"),
                                          ClipSpec(prompt="[Push in] a fox in the snow")],
                                   options=options, credentials_block="simulator",
                                   destination=Destination(output_dir=f"{out}/batch"))
            return {"single": single.model_dump(mode="json"),
                    "batch": [clip.model_dump(mode="json") for clip in batch.clips]}


        if __name__ == "__main__":
            summary = my_pipeline(sys.argv[1])
            summary["modules"] = {
                "user_flows": flows.__file__, "user_tasks": tasks.__file__,
                "user_blocks": blocks.__file__, "user_deployments": deployments.__file__,
                "prefect_hailuo": prefect_hailuo.__file__,
                "prefect_hailuo.flows": prefect_hailuo.flows.__file__}
            summary["user_values"] = [flows.Destination, tasks.build_prompt(),
                                      blocks.HailuoCredentials, deployments.NAME]
            print("SUMMARY " + json.dumps(summary))
    ''',
}


@pytest.fixture(scope="module")
def fresh(wheel, tmp_path_factory) -> Fresh:
    """A new virtualenv with the wheel installed normally (not editable); dependencies come
    from this environment's site-packages through a .pth file."""
    base = tmp_path_factory.mktemp("fresh")
    venv = base / "venv"
    _ok(subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)],
                       capture_output=True, text=True, timeout=120, env=_clean_env()))
    python = venv / "bin" / "python"
    # Install before the .pth exists: pip then sees no other prefect-hailuo at all.
    _ok(subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                        "--no-deps", "--no-index", "--quiet", str(wheel)],
                       capture_output=True, text=True, timeout=180, env=_clean_env()))
    site = Path(subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True, env=_clean_env()).stdout.strip())
    ours = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    (site / "zz_project_dependencies.pth").write_text("".join(f"{p}\n" for p in ours))

    project = base / "user-project"
    for name, text in USER_FILES.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(textwrap.dedent(text).lstrip())
    home = base / "prefect-home"
    env = _clean_env(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
                     PREFECT_UI_ENABLED="false", PREFECT_LOCAL_STORAGE_PATH=str(home / "storage"),
                     HAILUO_SIM_RENDER_SECONDS="0.5")
    return Fresh(python=python, site_packages=site, project=project, env=env)


@pytest.fixture(scope="module")
def server(fresh) -> Iterator[str]:
    """``prefect server start`` from the fresh environment; its API URL."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    log = fresh.project.parent / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(fresh.python), "-m", "prefect", "server", "start", "--host", "127.0.0.1",
             "--port", str(port)], cwd=fresh.project.parent, env=fresh.env, stdout=out,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "prefect server did not answer /api/health"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            time.sleep(0.5)
        fresh.env["PREFECT_API_URL"] = url
        yield url
    finally:
        fresh.env.pop("PREFECT_API_URL", None)
        _stop(proc)


def _is_fresh(fresh: Fresh, path: str) -> bool:
    return Path(path).resolve().is_relative_to(fresh.site_packages.resolve())


@pytest.mark.slow
def test_fresh_environment_runs_the_wheel_not_the_checkout(fresh):
    probe = _ok(fresh.py("-c", textwrap.dedent("""
        import json, sys
        from importlib import metadata, resources
        import hailuo, prefect_hailuo, prefect_hailuo.flows, prefect_hailuo.deployments
        print(json.dumps({
            "files": [hailuo.__file__, prefect_hailuo.__file__, prefect_hailuo.flows.__file__,
                      str(resources.files("prefect_hailuo.deployments") / "prefect.yaml")],
            "finders": [type(f).__module__ + "." + type(f).__qualname__
                        for f in sys.meta_path],
            "dist": str(metadata.distribution("prefect-hailuo")._path),
        }))
    """)))
    found = json.loads(probe.stdout)
    for path in found["files"]:
        assert _is_fresh(fresh, path), path
        assert not Path(path).resolve().is_relative_to(ROOT), path
    assert not any("__editable__" in finder for finder in found["finders"]), found["finders"]
    assert _is_fresh(fresh, found["dist"]), found["dist"]


@pytest.mark.slow
def test_user_flow_runs_our_flows_as_subflows_next_to_its_own_packages(fresh, server):
    out = fresh.project.parent / "videos"
    started = time.monotonic()
    proc = _ok(fresh.py("-m", "flows.my_pipeline", str(out), timeout=300))
    line = next(x for x in proc.stdout.splitlines() if x.startswith("SUMMARY "))
    summary = json.loads(line.removeprefix("SUMMARY "))
    modules = summary["modules"]
    for user in ("user_flows", "user_tasks", "user_blocks", "user_deployments"):
        assert Path(modules[user]).resolve().is_relative_to(fresh.project.resolve()), modules
    assert _is_fresh(fresh, modules["prefect_hailuo"]), modules
    assert _is_fresh(fresh, modules["prefect_hailuo.flows"]), modules
    assert summary["user_values"] == ["the user's own"] * 4

    from hailuo import media

    clips = [summary["single"], *summary["batch"]]
    assert len(clips) == 3
    for clip in clips:
        video = Path(clip["local_path"])
        assert video.resolve().is_relative_to(out.resolve()), video
        assert video.stat().st_size > 0 and video.read_bytes()[4:8] == b"ftyp"
        info = media.probe(video)
        assert info.frames > 0
        assert clip["simulated"] is True
        assert Path(clip["manifest_path"]).is_file()
    # the runs are on the server: the user's flow and our three flows under it
    runs = httpx.post(f"{server}/flow_runs/filter", json={"limit": 50}, timeout=30).json()
    names = httpx.post(f"{server}/flows/filter", json={"limit": 50}, timeout=30).json()
    flow_names = {f["id"]: f["name"] for f in names}
    ran = {flow_names[r["flow_id"]] for r in runs if r["state_type"] == "COMPLETED"}
    assert {"user-pipeline", "hailuo-text-to-video", "hailuo-generate-batch"} <= ran, ran
    print(f"user pipeline: {time.monotonic() - started:.1f} s")


@pytest.mark.slow
def test_block_register_and_collection_load_find_our_package(fresh, server):
    register = _ok(fresh.py("-m", "prefect", "block", "register", "-m", "prefect_hailuo"))
    assert "Hailuo Credentials" in register.stdout, register.stdout
    block_type = httpx.get(f"{server}/block_types/slug/hailuo-credentials", timeout=30)
    assert block_type.status_code == 200 and block_type.json()["name"] == "Hailuo Credentials"

    loaded = _ok(fresh.py("-c", textwrap.dedent("""
        import json
        import blocks  # the user's own package, importable from here
        from prefect.plugins import load_prefect_collections
        collections = load_prefect_collections()
        ours = collections["prefect_hailuo"]
        print(json.dumps({"file": getattr(ours, "__file__", repr(ours)),
                          "block": ours.HailuoCredentials.__module__,
                          "slug": ours.HailuoCredentials.get_block_type_slug(),
                          "user_blocks": blocks.__file__}))
    """)))
    found = json.loads(loaded.stdout.strip().splitlines()[-1])
    assert _is_fresh(fresh, found["file"]), found
    assert found["block"] == "prefect_hailuo.blocks.credentials"
    assert found["slug"] == "hailuo-credentials"
    assert Path(found["user_blocks"]).resolve().is_relative_to(fresh.project.resolve())
    assert "Failed to load collection" not in loaded.stdout + loaded.stderr


@pytest.mark.slow
def test_serve_list_and_init_work_from_the_installed_package(fresh):
    listed = _ok(fresh.py("-m", "prefect_hailuo.deployments.serve", "--list"))
    rows = [line.split() for line in listed.stdout.splitlines() if line.strip()]
    # every deployment of the repository's prefect.yaml, in its order, from the wheel's copy
    expected = [spec["name"] for spec in yaml.safe_load(
        (ROOT / "deployments" / "prefect.yaml").read_text())["deployments"]]
    assert [row[0] for row in rows] == expected and "text-to-video" in expected
    assert all(row[1].startswith("prefect_hailuo.flows.") for row in rows)

    target = fresh.project.parent / "deploy-here"
    init = _ok(fresh.run(fresh.bin / "hailuo", "init", target))
    assert "prefect --no-prompt deploy --all" in init.stdout
    assert (target / "examples/storyboard.yaml").is_file()
    spec = yaml.safe_load((target / "prefect.yaml").read_text())
    entrypoints = [d["entrypoint"] for d in spec["deployments"]]
    assert entrypoints == [row[1] for row in rows]
    again = fresh.run(fresh.bin / "hailuo", "init", target)
    assert again.returncode == 2 and again.stdout == ""

    # the entrypoints import in the fresh environment, from the user's project folder
    imported = _ok(fresh.py("-c", textwrap.dedent("""
        import json, sys
        from prefect.flows import load_flow_from_entrypoint
        out = {}
        for entrypoint in sys.argv[1:]:
            flow = load_flow_from_entrypoint(entrypoint)
            out[entrypoint] = [flow.name, sys.modules[flow.fn.__module__].__file__]
        print(json.dumps(out))
    """), *entrypoints))
    loaded = json.loads(imported.stdout.strip().splitlines()[-1])
    assert set(loaded) == set(entrypoints)
    for name, module_file in loaded.values():
        assert name.startswith("hailuo-") and _is_fresh(fresh, module_file), (name, module_file)
