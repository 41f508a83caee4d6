"""The in-process progress channel (``hailuo.events``) and the CLI display it feeds.

The channel and ``RunProgress`` are checked with plain calls (no Prefect); the last tests
run real flows in this process and check what the tasks emit and what the command shows.
"""

from __future__ import annotations

import io
import threading

import pytest

from hailuo import events
from hailuo.progress import ProgressDisplay


@pytest.fixture(autouse=True)
def no_leftover_subscribers():
    before = events.subscriber_count()
    yield
    assert events.subscriber_count() == before, "a test left a subscription open"


def test_subscribers_get_each_event_until_they_close():
    got: list[events.Event] = []
    events.emit(events.SUBMITTING, provider="apimart")  # nobody listens: nothing happens
    with events.subscribe(got.append):
        events.emit(events.SUBMITTED, task_id="t1", provider="apimart")
    events.emit(events.STATUS, task_id="t1", status="processing", progress=10)
    assert [(e.kind, dict(e.fields)) for e in got] == [
        (events.SUBMITTED, {"task_id": "t1", "provider": "apimart"})]
    assert got[0].get("task_id") == "t1" and got[0].get("nope", 7) == 7
    assert got[0].thread == threading.current_thread().name and got[0].at > 0
    with pytest.raises(TypeError):
        got[0].fields["task_id"] = "changed"  # read-only: subscribers share one event


def test_a_failing_subscriber_never_fails_the_emitter_nor_the_others():
    got: list[str] = []

    def broken(event: events.Event) -> None:
        raise RuntimeError("display fell over")

    with events.subscribe(broken), events.subscribe(lambda e: got.append(e.kind)):
        events.emit(events.DOWNLOADING, task_id="t1")  # must not raise
        events.emit(events.DOWNLOADED, task_id="t1", path="x.mp4", reused=False)
    assert got == [events.DOWNLOADING, events.DOWNLOADED]


def test_close_is_idempotent_and_a_subscriber_may_close_itself_while_called():
    got: list[str] = []
    subscription: events.Subscription | None = None

    def once(event: events.Event) -> None:
        got.append(event.kind)
        assert subscription is not None
        subscription.close()

    subscription = events.subscribe(once)
    events.emit(events.THUMBNAIL, video_path="a.mp4")
    events.emit(events.THUMBNAIL_DONE, path="a.jpg")
    subscription.close()
    assert got == [events.THUMBNAIL]


def test_emitting_from_many_threads_while_others_subscribe():
    counts: list[int] = []
    lock = threading.Lock()

    def count(event: events.Event) -> None:
        with lock:
            counts.append(event.get("n"))

    def emitter(base: int) -> None:
        for n in range(200):
            events.emit(events.STATUS, task_id=f"t{base}", status="processing", n=n)

    def churn() -> None:
        for _ in range(200):
            events.subscribe(lambda e: None).close()

    with events.subscribe(count):
        threads = [threading.Thread(target=emitter, args=(i,)) for i in range(4)]
        threads.append(threading.Thread(target=churn))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(counts) == 4 * 200


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _lines(display_out: io.StringIO) -> list[str]:
    return [" ".join(line.split()[1:]) for line in display_out.getvalue().splitlines()]


def test_the_cli_display_is_fed_by_events():
    from prefect_hailuo.flows.cli import RunProgress

    out = io.StringIO()
    display = ProgressDisplay(out, "plain", clock=FakeClock())
    display.clips(2)
    with events.subscribe(RunProgress(display)):
        events.emit(events.SUBMITTING, provider="apimart", model="MiniMax-Hailuo-02")
        events.emit(events.SUBMITTED, task_id="task_1", provider="apimart")
        events.emit(events.STATUS, task_id="task_1", status="processing", progress=40)
        events.emit(events.STATUS, task_id="task_1", status="completed", progress=100)
        events.emit(events.DOWNLOADING, task_id="task_1")
        events.emit(events.DOWNLOADED, task_id="task_1", path="task_1.mp4", reused=False)
        events.emit(events.THUMBNAIL, video_path="task_1.mp4")
        events.emit(events.THUMBNAIL_DONE, path="task_1.thumb.jpg")
        events.emit("something-new", detail=1)  # unknown kinds are ignored
        events.emit(events.STITCHING, clips=2)
        events.emit(events.STITCHED, path="video.mp4", method="copy")
        events.emit(events.CONTACT_SHEET, clips=2)
        events.emit(events.CONTACT_SHEET_DONE, path="sheet.jpg")
    events.emit(events.UPLOADING, path="x", bucket="b", key="k")  # closed: not shown
    assert _lines(out) == [
        "submitting clips=0/2",
        "queued clips=0/2 task=task_1",
        "generating clips=0/2 task=task_1 status=processing progress=40%",
        "generating clips=0/2 task=task_1 status=completed progress=100%",
        "downloading clips=0/2 task=task_1",
        "downloading clips=1/2 task=task_1",
        "thumbnail clips=1/2 task=task_1",
        "finishing clips=1/2 task=task_1",
        "stitching clips=1/2 task=task_1",
        "poster clips=1/2 task=task_1",
        "contact sheet clips=1/2 task=task_1",
        "finishing clips=1/2 task=task_1",
    ]


def test_a_broken_display_does_not_reach_the_tasks():
    from prefect_hailuo.flows.cli import RunProgress

    class Broken(ProgressDisplay):
        def status(self, *args, **kwargs):
            raise OSError("stderr is gone")

    display = Broken(io.StringIO(), "plain")
    with events.subscribe(RunProgress(display)):
        events.emit(events.STATUS, task_id="t", status="processing", progress=5)
        events.emit(events.STATUS, task_id="t", status="processing", progress=None)


def test_the_media_tasks_emit_start_and_done(tmp_path, tiny_mp4):
    from prefect_hailuo.tasks.media import make_thumbnail
    from prefect_hailuo.tasks.stitching import make_contact_sheet, make_poster

    video = tmp_path / "clip.mp4"
    video.write_bytes(tiny_mp4)
    got: list[tuple[str, dict]] = []
    with events.subscribe(lambda e: got.append((e.kind, dict(e.fields)))):
        thumb = make_thumbnail.fn(str(video))
        make_thumbnail.fn(str(video))  # kept: still a start and a done
        poster = make_poster.fn(str(video))
        sheet = make_contact_sheet.fn([str(video)], str(tmp_path / "sheet.jpg"))
    assert got == [
        (events.THUMBNAIL, {"video_path": str(video)}),
        (events.THUMBNAIL_DONE, {"path": thumb}),
        (events.THUMBNAIL, {"video_path": str(video)}),
        (events.THUMBNAIL_DONE, {"path": thumb}),
        (events.POSTER, {"video_path": str(video)}),
        (events.POSTER_DONE, {"path": poster}),
        (events.CONTACT_SHEET, {"clips": 1}),
        (events.CONTACT_SHEET_DONE, {"path": sheet}),
    ]
    assert {kind for kind, _ in got} <= events.KINDS


# -- real flows in this process --------------------------------------------------------

KEY = "hk-EVENTS-TEST-3f9a0c7e21"


@pytest.fixture(scope="module")
def sim():
    from hailuo.simulator import run_simulator

    with run_simulator(render_seconds=0.6, cheap=True, accepted_keys=[KEY]) as handle:
        yield handle


@pytest.fixture(scope="module")
def creds(prefect_harness, sim) -> str:
    from tests.conftest import save_credentials

    return save_credentials("events-test", sim.base_url, KEY)


@pytest.mark.prefect
def test_a_flow_run_emits_each_step_in_order(sim, creds, tmp_path):
    from prefect_hailuo.flows import Destination, GenerationOptions, text_to_video

    got: list[events.Event] = []
    with events.subscribe(got.append):
        result = text_to_video(prompt="[Truck left] a lighthouse at dusk",
                               options=GenerationOptions(resolution="512p", duration=5),
                               destination=Destination(output_dir=str(tmp_path)),
                               credentials_block=creds)
    kinds = [e.kind for e in got]
    steps = [k for i, k in enumerate(kinds) if k != events.STATUS or kinds[i - 1] != k]
    assert steps == [events.SUBMITTING, events.SUBMITTED, events.STATUS, events.DOWNLOADING,
                     events.DOWNLOADED, events.THUMBNAIL, events.THUMBNAIL_DONE], kinds
    submitted = got[kinds.index(events.SUBMITTED)]
    assert submitted.get("task_id") == result.task_id
    statuses = [e for e in got if e.kind == events.STATUS]
    assert statuses[-1].get("status") == "completed" and statuses[-1].get("progress") == 100
    assert all(e.get("task_id") == result.task_id for e in statuses)
    assert got[kinds.index(events.DOWNLOADED)].get("path") == result.local_path


@pytest.mark.prefect
def test_the_command_in_process_shows_progress_from_events(sim, creds, tmp_path, capsys):
    """``hailuo generate`` run in this process: its display lines come from the events of
    the flow it runs (``--verbose`` leaves this test session's Prefect console alone)."""
    from prefect_hailuo.cli import main

    code = main(["generate", "[Pan left] a red kite above dunes", "--credentials-block", creds,
                 "--out", str(tmp_path), "--resolution", "512p", "--verbose"])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-3000:]
    progress = [line.split()[1:] for line in captured.err.splitlines()
                if line.startswith("[") and line.split()[0].endswith("s]")]
    stages = [words[0] for words in progress]
    assert stages[0] == "submitting" and stages[-1] == "finishing", captured.err[-3000:]
    assert {"queued", "generating", "downloading", "thumbnail"} <= set(stages), stages
    assert any("status=completed" in w and "progress=100%" in w for w in map(" ".join,
               progress)), progress
