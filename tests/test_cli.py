"""The ``hailuo`` command through real, terminal-less subprocesses.

Flow-backed commands talk to the session's Prefect test server (its URL is handed to the
subprocess) and to a simulator started here with a key only the credentials block holds.
The display and the exit-code table are also checked in-process, where a fake clock and a
fake terminal make them deterministic.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from hailuo import errors
from hailuo.progress import ProgressDisplay, choose_mode
from hailuo.simulator import run_simulator
from prefect_hailuo.cli import (
    EXIT_ACCOUNT,
    EXIT_AMBIGUOUS,
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_OTHER,
    EXIT_REFUSED,
    EXIT_TIMEOUT,
    EXIT_UNAVAILABLE,
    exit_code_for,
    main,
)
from tests.conftest import make_png, save_credentials

KEY = "hk-CLI-TEST-7c1e0b5a9d"
ROOT = Path(__file__).resolve().parents[1]
HAILUO = Path(sys.executable).parent / "hailuo"  # the installed console script


@pytest.fixture(scope="module")
def sim():
    with run_simulator(render_seconds=0.3, cheap=True, accepted_keys=[KEY]) as handle:
        yield handle


@pytest.fixture(scope="module")
def api_url(prefect_harness) -> str:
    import prefect.settings

    return prefect.settings.PREFECT_API_URL.value()


@pytest.fixture(scope="module")
def creds(api_url, sim) -> str:
    return save_credentials("cli-test", sim.base_url, KEY)


def hailuo(*args: str, api_url: str | None = None, timeout: float = 180
           ) -> subprocess.CompletedProcess[str]:
    """Run the console script with pipes for stdin/stdout/stderr: no terminal anywhere."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("HAILUO_CREDENTIALS_BLOCK", None)
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return subprocess.run([str(HAILUO), *args], env=env, cwd=ROOT, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)


def _gen(creds: str, out: Path, *extra: str) -> list[str]:
    return ["generate", "--credentials-block", creds, "--out", str(out),
            "--resolution", "512p", *extra]


def test_generate_prints_plain_progress_and_writes_the_video(sim, creds, api_url, tmp_path):
    from hailuo import media

    before = sim.submits()
    proc = hailuo(*_gen(creds, tmp_path, "[Pan left] a red kite above dunes at noon"),
                  api_url=api_url)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sim.submits() == before + 1
    lines = dict(line.split(None, 1) for line in proc.stdout.splitlines() if line.strip())
    video = Path(lines["video"].split()[0])
    assert video.parent == tmp_path / "clips" and media.probe(video).width == 912
    assert video.name.startswith("a-red-kite-above-dunes-at-noon-")  # named after the clip
    assert Path(lines["manifest"]).exists()
    # not a terminal: one plain line per change, no carriage returns or escape codes
    assert "\r" not in proc.stderr and "\x1b" not in proc.stderr
    progress = [line for line in proc.stderr.splitlines() if line.startswith("[")]
    assert any("status=completed progress=100%" in line for line in progress), proc.stderr
    assert [line.split()[1] for line in progress][-1] == "finishing"
    assert KEY not in proc.stdout + proc.stderr


def test_generate_json_is_one_document(sim, creds, api_url, tmp_path):
    from hailuo import media

    proc = hailuo(*_gen(creds, tmp_path, "[Zoom in] a paper boat on a rainy street", "--json"),
                  api_url=api_url)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)  # the whole of stdout parses: nothing else is printed
    assert doc["ok"] is True and doc["command"] == "generate"
    clip = doc["result"]
    assert media.sha256_file(Path(clip["local_path"])) == clip["sha256"]
    assert clip["simulated"] is True and clip["provider"] == "apimart"
    assert not [line for line in proc.stderr.splitlines() if line.startswith("[")]


@pytest.mark.parametrize("args, needle", [
    (["a sunset", "--resolution", "1080p", "--duration", "10"], "duration"),
    (["[Pan lft] a sunset"], "Pan left"),
    (["--image", "/no/such/image.png"], "not found"),
    (["a sunset", "--timeout", "-1"], "--timeout"),
    (["a sunset", "--max-cost", "0.01"], "--max-cost"),
    (["--last-frame", "x.png", "a sunset"], "--image"),
    ([], "prompt"),
])
def test_bad_input_exits_2_with_one_line_and_nothing_sent(sim, creds, args, needle):
    before = len(sim.requests())
    proc = hailuo("generate", "--credentials-block", creds, *args)
    assert proc.returncode == EXIT_BAD_INPUT, proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hailuo: error: ") and needle in err[0], err
    assert proc.stdout == ""
    assert len(sim.requests()) == before


def test_bad_image_exits_2_and_json_reports_it(sim, creds, tmp_path):
    small = make_png(tmp_path / "tiny.png", size=(120, 90))
    before = len(sim.requests())
    proc = hailuo("generate", "--credentials-block", creds, "--image", str(small), "--json")
    assert proc.returncode == EXIT_BAD_INPUT, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["ok"] is False and doc["exit_code"] == EXIT_BAD_INPUT
    assert "first_frame_image" in doc["message"]
    assert len(sim.requests()) == before


def test_content_refusal_exits_3_with_task_id(sim, creds, api_url, tmp_path):
    sim.configure(fail_rate=1.0, fail_codes=[1026])
    try:
        proc = hailuo(*_gen(creds, tmp_path, "a harmless cat, refused for the test", "--json"),
                      api_url=api_url)
    finally:
        sim.configure(fail_rate=0.0)
    assert proc.returncode == EXIT_REFUSED, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert doc["error"] == "ContentRejectedError" and doc["task_id"].startswith("task_")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_timeout_exits_5_and_says_how_to_resume(sim, creds, api_url, tmp_path):
    sim.configure(render_seconds=120)
    try:
        proc = hailuo(*_gen(creds, tmp_path, "a glacier calving, slowly", "--timeout", "2"),
                      api_url=api_url)
    finally:
        sim.configure(render_seconds=0.3)
    assert proc.returncode == EXIT_TIMEOUT, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("hailuo: error: ") and "task_id=task_" in last and "resume" in last


def test_hailuo_cli_imports_no_prefect():
    code = ("import sys, prefect_hailuo.cli, hailuo.progress; "
            "sys.exit(1 if any(m == 'prefect' or m.startswith(('prefect.', 'prefect_hailuo.flows', "
            "'prefect_hailuo.blocks')) for m in sys.modules) else 0)")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_estimate_and_prompt_without_prefect():
    proc = hailuo("estimate", "--resolution", "768p", "--duration", "10", "--json")
    assert proc.returncode == 0 and Decimal(json.loads(proc.stdout)["usd"]) == Decimal("0.40")
    proc = hailuo("prompt", "--subject", "a fox", "--camera", "pan left, pedestal up; zoom in",
                  "--scene", "a snowy forest at dawn", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["prompt"].startswith("[Pan left, Pedestal up] [Zoom in] A fox")


def test_prompt_rejects_unknown_camera_command(capsys):
    assert main(["prompt", "--subject", "a fox", "--camera", "pan lefty"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "did you mean 'Pan left'" in err[0]


def test_exit_codes_are_distinct_per_kind_of_failure():
    cases = {
        errors.InvalidRequestError("x", field="prompt"): EXIT_BAD_INPUT,
        errors.InvalidRequestError("bad", http_status=400): EXIT_REFUSED,
        errors.ContentRejectedError("no", code=1026): EXIT_REFUSED,
        errors.GenerationFailedError("failed", code=1000): EXIT_FAILED,
        errors.TimedOutError("slow", task_id="t"): EXIT_TIMEOUT,
        errors.AuthenticationError("key"): EXIT_ACCOUNT,
        errors.InsufficientBalanceError("money"): EXIT_ACCOUNT,
        errors.ProviderUnavailableError("down"): EXIT_UNAVAILABLE,
        errors.RateLimitedError("slow down"): EXIT_UNAVAILABLE,
        errors.AmbiguousSubmitError("maybe"): EXIT_AMBIGUOUS,
        RuntimeError("bug"): EXIT_OTHER,
    }
    for exc, code in cases.items():
        assert exit_code_for(exc) == code, exc
    assert len({EXIT_BAD_INPUT, EXIT_REFUSED, EXIT_FAILED, EXIT_TIMEOUT, EXIT_ACCOUNT,
                EXIT_UNAVAILABLE, EXIT_AMBIGUOUS, EXIT_OTHER}) == 8


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_terminal_display_redraws_one_line_with_bar_and_eta():
    term, clock = FakeTerminal(), FakeClock()
    assert choose_mode(term) == "tty" and choose_mode(io.StringIO()) == "plain"
    assert choose_mode(term, json_output=True) == "off"
    display = ProgressDisplay(term, "tty", label="generate", clock=clock)
    display.stage("queued", task_id="task_1")
    clock.now += 10
    display.status("processing", 10)  # progress starts moving here
    clock.now += 20
    display.status("processing", 50)  # 40 points in 20 s: the last 50 take ~25 s
    last = term.getvalue().split("\r\x1b[2K")[-1]
    assert "\n" not in term.getvalue()
    assert "[##########..........]  50%" in last and "00:30 elapsed" in last, last
    assert "~00:25 left" in last, last  # the pace since progress moved, not since start
    display.close()
    assert term.getvalue().endswith("\r\x1b[2K")


def test_plain_display_prints_each_change_once():
    out, clock = io.StringIO(), FakeClock()
    display = ProgressDisplay(out, "plain", clock=clock)
    display.stage("submitting")
    display.status("processing", 40, task_id="task_9")
    display.status("processing", 40, task_id="task_9")
    clock.now += 2
    display.stage("downloading")
    lines = out.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == ["submitting", "generating", "downloading"]
    assert "task=task_9 status=processing progress=40%" in lines[1]
    assert lines[2].startswith("[2.0s]") and "progress" not in lines[2]


def _board(path: Path, **overrides) -> Path:
    import yaml

    board = {"title": "CLI film", "resolution": "512p", "duration": 5, "segments": [
        {"prompt": "a kite rises over a beach", "camera": "Pedestal up"},
        {"prompt": "the kite drifts towards the sea", "camera": "Pan right"}]}
    board.update(overrides)
    path.write_text(yaml.safe_dump(board))
    return path


def test_continuity_runs_the_film_flow_from_a_storyboard_file(sim, creds, api_url, tmp_path):
    from hailuo import media

    board = _board(tmp_path / "film.yaml")
    before = sim.submits()
    proc = hailuo("continuity", str(board), "--credentials-block", creds,
                  "--out", str(tmp_path / "out"), api_url=api_url)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sim.submits() == before + 2
    film = Path(proc.stdout.split("film", 1)[1].split()[0])
    assert abs(media.probe(film).duration - 10) < 0.5
    assert "clips=2/2" in proc.stderr, proc.stderr


@pytest.mark.parametrize("overrides, needle", [
    ({"duration": 7}, "segment 1: duration"),
    ({"first_image": "missing.png"}, "not found"),
    ({"segments": []}, "segments"),
])
def test_bad_storyboard_exits_2_with_nothing_sent(sim, creds, tmp_path, overrides, needle):
    board = _board(tmp_path / "bad.yaml", **overrides)
    before = len(sim.requests())
    for command in ("continuity", "storyboard"):
        proc = hailuo(command, str(board), "--credentials-block", creds)
        assert proc.returncode == EXIT_BAD_INPUT, proc.stderr
        err = proc.stderr.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err
    assert hailuo("storyboard", str(tmp_path / "nope.yaml")).returncode == EXIT_BAD_INPUT
    assert len(sim.requests()) == before


def test_estimate_prices_every_clip_of_a_storyboard(tmp_path):
    board = _board(tmp_path / "film.yaml", segments=[
        {"prompt": "one"}, {"prompt": "two", "duration": 10}, {"prompt": "three"}])
    proc = hailuo("estimate", "--storyboard", str(board), "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert [c["duration"] for c in doc["clips"]] == [5, 10, 5]
    assert Decimal(doc["usd"]) == sum(Decimal(c["usd"]) for c in doc["clips"]) > 0


def test_unknown_credentials_block_exits_2_before_any_run(sim, api_url):
    before = len(sim.requests())
    proc = hailuo("generate", "a sunset", "--credentials-block", "no-such-block", "--json",
                  api_url=api_url)
    assert proc.returncode == EXIT_BAD_INPUT, proc.stderr[-2000:]
    assert "no-such-block" in json.loads(proc.stdout)["message"]
    assert len(sim.requests()) == before


def test_generate_on_a_terminal_redraws_one_line(sim, creds, api_url, tmp_path):
    """The same command under a pseudo-terminal: the display switches to redraws."""
    import pty

    sim.configure(render_seconds=3)
    leader, follower = pty.openpty()
    try:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PREFECT_API_URL": api_url}
        proc = subprocess.Popen([str(HAILUO), *_gen(creds, tmp_path, "a lantern in the wind")],
                                env=env, cwd=ROOT, stdin=follower, stdout=follower,
                                stderr=follower)
        os.close(follower)
        chunks = []
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:  # the terminal closes when the command exits
                break
            if not data:
                break
            chunks.append(data)
        assert proc.wait(timeout=120) == 0
    finally:
        sim.configure(render_seconds=0.3)
        os.close(leader)
    screen = b"".join(chunks).decode(errors="replace")
    redraws = screen.split("\r\x1b[2K")
    assert len(redraws) > 3, screen[-2000:]
    assert any("generating" in r and "%" in r and "elapsed" in r for r in redraws), screen
    assert "video " in redraws[-1]  # the result is printed after the display is cleared
