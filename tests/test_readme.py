"""The README works as written (issue 17, item 5): every shell command and Python example
in its fenced ``bash`` / ``python`` / ``yaml`` blocks that needs no real key is run.

How: the blocks are extracted from README.md; each shell command (continuation lines
joined, comments dropped, split like a shell would) runs as a subprocess in a fresh folder
per block, holding a link to the repository's ``examples/``, with ``hailuo`` and ``python``
from this environment on the PATH, against the session's Prefect test server
(``PREFECT_API_URL``: the commands would otherwise each start a temporary server, ~15 s)
and on the default provider. ``HAILUO_SIMULATE`` is unset: a command that uses the
simulator must ask for it the way the README says. Python blocks run the same way.

What does not run is in ``SKIP`` (shell) and ``SKIP_PYTHON`` with the reason, and
``test_skip_lists_are_honest`` fails on an entry that no longer matches the README, so
the lists stay reviewable. Every Python block, run or not, is checked for syntax errors
and undefined names. The Automation examples are checked for what they claim: the YAML
trigger is the one Prefect's ``deploy`` would build, and the Python one, deployed against
the test server, starts its follow-up run when a clip's event arrives.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BIN = Path(sys.executable).parent

#: Shell commands not run, by how they start, each with the reason.
SKIP: dict[str, str] = {
    "pip install .": "installs the package (network, minutes); tests/test_packaging.py "
                     "builds the wheel and installs it into a fresh environment",
    "make demo": "first (re)installs .venv with pip when pyproject.toml changed; its recipe, "
                 "`python -m prefect_hailuo.flows.demo`, runs in test_make_demo_recipe",
    "make test": "runs this whole suite (recursion); CI runs it",
    "hailuo generate [Push in] the balloon rises --image balloon.png --credentials-block "
    "hailuo": "needs a real key (the `hailuo` credentials block), an S3 bucket block "
              "`videos` and the user's balloon.png",
    "hailuo storyboard my-film.yaml --credentials-block hailuo": "needs a real key (the "
        "`hailuo` credentials block) and the user's own my-film.yaml",
    "export HAILUO_API_KEY=...": "a placeholder for the real key",
    "python -m prefect_hailuo.deployments.setup": "needs the real key and a running Prefect "
        "server; tests/test_deployments.py runs these deployment steps exactly",
    "prefect --no-prompt deploy --all": "needs a running Prefect server with the work pool; "
        "tests/test_deployments.py and tests/test_run_forms.py run it",
    "prefect worker start --pool hailuo": "a worker runs until stopped; "
        "tests/test_deployments.py starts workers and runs deployments on them",
    "prefect deployment run hailuo-text-to-video/text-to-video": "needs the deployments "
        "registered and a worker (tests/test_deployments.py triggers the same deployment)",
}
#: Python examples not run, by a line they contain, each with the reason.
SKIP_PYTHON: dict[str, str] = {
    'with HailuoClient("apimart", api_key=...': "needs a real key (`api_key=...`); the "
        "client is tested against the simulator in tests/test_client.py",
    'Secret(value="<your key>").save("hailuo-api-key")': "saves your real key as blocks on "
        "your Prefect server; tests/conftest.py save_credentials does the same with a test key",
    'run = run_deployment("hailuo-text-to-video/text-to-video"': "needs the deployment "
        "registered, a worker and shared result storage (tests/test_deployments.py)",
    "def my_pipeline(prompt: str) -> str:": "needs a real key (the `hailuo` block) and an "
        "S3 bucket block `videos`",
    'S3Bucket(bucket_name="my-videos"': "needs your AWS credentials and bucket",
    "publish_clip.serve(": "serves until stopped; test_python_automation_starts_the_follow_"
        "up_deployment deploys the same trigger and checks the run it starts",
}


def fenced(language: str) -> list[str]:
    return [m.group(1) for m in re.finditer(rf"^```{language}\n(.*?)^```", README,
                                            re.MULTILINE | re.DOTALL)]


def shell_commands() -> list[tuple[int, list[str]]]:
    """(block number, argv) for every command of every bash block."""
    found = []
    for number, block in enumerate(fenced("bash")):
        for line in block.replace("\\\n", " ").splitlines():
            argv = shlex.split(line, comments=True)
            if argv:
                found.append((number, argv))
    return found


def _skip_reason(argv: list[str]) -> str | None:
    text = " ".join(argv)
    return next((why for start, why in SKIP.items() if text.startswith(start)), None)


def _python_skip_reason(block: str) -> str | None:
    return next((why for line, why in SKIP_PYTHON.items() if line in block), None)


@pytest.fixture(scope="module")
def env(prefect_harness) -> dict[str, str]:
    import prefect.settings

    environ = {k: v for k, v in os.environ.items()
               if k not in ("HAILUO_SIMULATE", "HAILUO_CREDENTIALS_BLOCK")}
    return {**environ, "PREFECT_API_URL": prefect.settings.PREFECT_API_URL.value(),
            "PATH": f"{BIN}{os.pathsep}{environ.get('PATH', '')}",
            "HAILUO_SIM_RENDER_SECONDS": "0.3", "PYTHONPATH": str(ROOT)}


def _workdir(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    (work / "examples").symlink_to(ROOT / "examples", target_is_directory=True)
    return work


def _ids(items) -> list[str]:
    return [" ".join(argv)[:70] for _, argv in items]


COMMANDS = shell_commands()
BLOCKS = sorted({number for number, _ in COMMANDS})


def test_the_readme_has_what_this_test_expects():
    assert len(COMMANDS) >= 15 and len(fenced("python")) >= 6 and fenced("yaml")


def test_skip_lists_are_honest():
    """Every entry still matches something in the README (no stale excuses)."""
    texts = [" ".join(argv) for _, argv in COMMANDS]
    for start in SKIP:
        assert any(t.startswith(start) for t in texts), f"SKIP entry matches nothing: {start}"
    for line in SKIP_PYTHON:
        assert any(line in block for block in fenced("python")), f"stale: {line}"


@pytest.mark.prefect
@pytest.mark.parametrize("block", BLOCKS)
def test_shell_block_runs_as_written(block, env, tmp_path):
    work = _workdir(tmp_path)
    ran = 0
    for argv in [argv for number, argv in COMMANDS if number == block]:
        if _skip_reason(argv):
            continue
        if argv[:2] == ["hailuo", "sim"]:
            _run_foreground_simulator(argv, env, work)
        else:
            proc = subprocess.run(argv, cwd=work, env=env, text=True, capture_output=True,
                                  timeout=600, stdin=subprocess.DEVNULL)
            assert proc.returncode == 0, (argv, proc.stdout[-2000:], proc.stderr[-3000:])
            _check_output(argv, proc.stdout, work)
        ran += 1
    if not ran:
        pytest.skip("; ".join(sorted({_skip_reason(a) or "" for n, a in COMMANDS
                                      if n == block})))


def _check_output(argv: list[str], stdout: str, work: Path) -> None:
    """What the README promises beyond exit code 0."""
    if argv[:2] == ["hailuo", "generate"]:
        video = work / dict(line.split(None, 1) for line in stdout.splitlines()
                            if line.strip())["video"].split()[0]
        assert video.is_file() and video.parent == work / "out" / "clips", video
        assert video.name.startswith("a-lighthouse-at-dusk-")
    if argv[:2] == ["hailuo", "continuity"]:
        assert "film" in stdout and (work / "out" / "lighthouse-at-dusk").is_dir()
    if argv[:2] == ["hailuo", "init"]:
        assert (work / argv[2] / "prefect.yaml").is_file()
    if argv[:2] == ["hailuo", "estimate"]:
        assert stdout.strip().splitlines()[-1].startswith("$")


def _run_foreground_simulator(argv: list[str], env: dict[str, str], work: Path) -> None:
    """``hailuo sim --port 8123``: it must answer on its port; then it is stopped."""
    port = int(argv[argv.index("--port") + 1])
    with contextlib.suppress(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
        pytest.skip(f"port {port} is taken on this machine: cannot run {' '.join(argv)}")
    proc = subprocess.Popen(argv, cwd=work, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.stdout.read().decode()[-2000:]  # type: ignore[union-attr]
            with contextlib.suppress(httpx.HTTPError):
                answer = httpx.get(f"http://127.0.0.1:{port}/v1/tasks/nope", timeout=1)
                assert answer.headers.get("x-hailuo-simulator"), answer.headers
                break
            assert time.monotonic() < deadline, "hailuo sim never answered"
            time.sleep(0.3)
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@pytest.mark.parametrize("number", range(len(fenced("python"))))
def test_python_example_has_no_undefined_names(number, tmp_path):
    """Run or not, every example compiles and names only what it defines or imports."""
    block = fenced("python")[number]
    compile(block, f"README python block {number}", "exec")
    script = tmp_path / f"block{number}.py"
    script.write_text(block)
    proc = subprocess.run([str(BIN / "ruff"), "check", "--no-cache", "--isolated",
                           "--select", "F821,F822,F823,E9", str(script)],
                          text=True, capture_output=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.prefect
@pytest.mark.parametrize("number", range(len(fenced("python"))))
def test_python_example_runs(number, env, tmp_path):
    block = fenced("python")[number]
    reason = _python_skip_reason(block)
    if reason:
        pytest.skip(reason)
    work = _workdir(tmp_path)
    proc = subprocess.run([sys.executable, "-c", block], cwd=work, env=env, text=True,
                          capture_output=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.prefect
@pytest.mark.slow
def test_make_demo_recipe(env, tmp_path):
    """``make demo`` is ``.venv`` (pip) then this: the demo itself, as the Makefile runs it."""
    recipe = re.search(r"^demo: venv\n\t\$\(PY\) (.+)$", (ROOT / "Makefile").read_text(),
                       re.MULTILINE)
    assert recipe, "the Makefile's demo recipe changed: update this test"
    argv = [sys.executable, *recipe.group(1).split()]
    proc = subprocess.run(argv, cwd=tmp_path, env={**env, "HAILUO_DEMO_OUT": str(tmp_path /
                          "out")}, text=True, capture_output=True, timeout=600,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "would have cost" in proc.stdout
    assert len(list((tmp_path / "out" / "clips").glob("*.mp4"))) >= 2  # named clips


# -- the Automation examples -------------------------------------------------------------
def _automation_python() -> str:
    [block] = [b for b in fenced("python") if "DeploymentEventTrigger" in b]
    return block


def test_yaml_trigger_is_the_one_prefect_deploy_builds():
    from prefect.events import DeploymentEventTrigger

    [block] = [b for b in fenced("yaml") if "triggers:" in b]
    [spec] = yaml.safe_load(block)["deployments"]
    [trigger] = spec["triggers"]
    built = DeploymentEventTrigger(**trigger)
    namespace: dict = {"__name__": "readme_example"}
    exec(compile(_automation_python(), "README automation", "exec"), namespace)
    python = namespace["on_clip"]
    for field in ("expect", "match", "parameters", "posture", "threshold"):
        assert getattr(built, field) == getattr(python, field), field


@pytest.mark.prefect
def test_python_automation_starts_the_follow_up_deployment(prefect_harness, tmp_path):
    """The README's trigger, deployed against the test server: a clip's event starts the
    follow-up run with the clip's task id and URI as parameters."""
    import importlib.util
    import uuid

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.events import emit_event
    from prefect.events.worker import EventsWorker

    script = tmp_path / "publish.py"  # the file the YAML example's entrypoint names
    script.write_text(_automation_python())
    spec = importlib.util.spec_from_file_location("readme_publish", script)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["readme_publish"] = module
    spec.loader.exec_module(module)
    deployment = module.publish_clip.to_deployment(
        name=f"publish-clip-{uuid.uuid4().hex[:6]}", triggers=[module.on_clip])
    deployment_id = deployment.apply()
    task_id = f"task_README{uuid.uuid4().hex[:10].upper()}"
    uri = f"s3://videos/hailuo/apimart/{task_id}/video.mp4"
    time.sleep(2)  # the automation is loaded by the triggers service
    emit_event("hailuo.clip.completed",
               resource={"prefect.resource.id": f"hailuo.clip.{task_id}"},
               payload={"task_id": task_id, "uri": uri, "cost_usd": 0.2})
    EventsWorker.drain_all()
    deadline = time.monotonic() + 60
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_flow_runs(deployment_filter=DeploymentFilter(
                id=DeploymentFilterId(any_=[deployment_id])))
            if runs or time.monotonic() > deadline:
                break
            time.sleep(1)
    assert runs, "the automation did not start the follow-up deployment"
    assert runs[0].parameters == {"task_id": task_id, "uri": uri}
