"""The shared submit rate limit: slot arithmetic, and slots taken from a real Prefect server."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from prefect_hailuo.tasks.submit_slots import seconds_until_free, take_submit_slot

NOW = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(("active", "limit", "decay", "ago", "expected"), [
    (0, 1, 1.0, 0.0, 0.0),          # empty bucket: go
    (4, 5, 1.0, 0.0, 0.0),          # one slot left: go
    (5, 5, 1.0, 0.0, 1.0),          # full, just updated: a whole decay step
    (5, 5, 1.0, 0.25, 0.75),        # full, a quarter step already leaked
    (5, 5, 2.0, 1.2, 0.3),          # 2.4 leaked (count already lowered by 2): next at 3
    (7, 5, 1.0, 0.0, 3.0),          # over-full after a lowered limit: three steps
    (5, 5, 1.0, None, 1.0),         # no timestamp: assume just updated
])
def test_seconds_until_free(active, limit, decay, ago, expected):
    updated = NOW - timedelta(seconds=ago) if ago is not None else None
    assert seconds_until_free(active, limit, decay, updated, NOW) == pytest.approx(expected)


def test_a_full_limit_without_decay_never_frees():
    assert seconds_until_free(3, 3, 0.0, NOW, NOW) == float("inf")


@pytest.mark.prefect
def test_slots_come_from_the_server_and_never_exceed_the_limit(prefect_harness):
    from prefect import get_client

    name = "hailuo-submit-test-pacing"
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(name, 2, slot_decay_per_second=4.0)
        waits: list[float] = []
        seen: list[int] = []

        def sleep(seconds: float) -> None:
            import time

            waits.append(seconds)
            time.sleep(seconds)

        for _ in range(6):
            assert take_submit_slot(name, sleep=sleep) is True
            seen.append(client.read_global_concurrency_limit_by_name(name).active_slots)
        # never more than the limit held; the first two go at once, the rest wait for decay
        assert max(seen) <= 2
        assert len(waits) >= 4 and all(0 < w <= 0.25 + 0.1 for w in waits)
        client.delete_global_concurrency_limit_by_name(name)


@pytest.mark.prefect
def test_no_limit_means_no_wait_and_a_dead_limit_is_an_error(prefect_harness):
    from prefect import get_client

    assert take_submit_slot("hailuo-submit-test-missing", sleep=pytest.fail) is False
    name = "hailuo-submit-test-no-decay"
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(name, 1, slot_decay_per_second=0.0)
        client.increment_concurrency_slots(names=[name], slots=1, mode="concurrency")
        with pytest.raises(ValueError, match="no slot decay"):
            take_submit_slot(name, sleep=pytest.fail)
        client.delete_global_concurrency_limit_by_name(name)


@pytest.mark.prefect
def test_waiting_past_the_deadline_takes_nothing(prefect_harness):
    from prefect import get_client

    name = "hailuo-submit-test-deadline"
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(name, 1, slot_decay_per_second=0.01)
        assert take_submit_slot(name) is True
        with pytest.raises(TimeoutError):
            take_submit_slot(name, max_wait_seconds=0.2)
        assert client.read_global_concurrency_limit_by_name(name).active_slots == 1
        client.delete_global_concurrency_limit_by_name(name)


def test_the_ask_is_the_public_increment_call():
    from prefect_hailuo.tasks.submit_slots import _increment_once

    calls: list[dict] = []

    class PublicOnly:
        def increment_concurrency_slots(self, **kwargs):
            calls.append(kwargs)

    _increment_once(PublicOnly(), "hailuo-submit")
    assert calls == [{"names": ["hailuo-submit"], "slots": 1, "mode": "rate_limit"}]


UPGRADE = "Prefect upgrade changed {what}: update asking_client in tasks/submit_slots.py"


@pytest.mark.parametrize("status", [503, 423, 200])
def test_a_busy_or_refused_ask_is_asked_once_and_never_slept_on(status, monkeypatch):
    """What ``asking_client`` relies on, checked against the installed Prefect: its public
    ``get_client(httpx_settings=...)`` passes an httpx response hook through, and an
    exception from that hook leaves the client's retry loop at once (no 2 s back-off)."""
    import time

    import httpx
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from prefect_hailuo.tasks.submit_slots import _increment_once, asking_client

    asks: list[tuple[str, dict]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/csrf-token"):
            return httpx.Response(422, json={"detail": "CSRF protection is disabled."})
        asks.append((request.url.path, json.loads(request.content)))
        return httpx.Response(status, json={"detail": "busy" if status == 503 else "full"})

    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    with temporary_settings({PREFECT_API_URL: "http://prefect.invalid/api"}), \
            asking_client({"transport": httpx.MockTransport(answer)}) as client:
        if status == 200:
            _increment_once(client, "hailuo-submit")
        else:
            with pytest.raises(httpx.HTTPStatusError) as caught:
                _increment_once(client, "hailuo-submit")
            assert caught.value.response.status_code == status, UPGRADE.format(
                what=f"the error a hook raises on a {status} (now {caught.value!r})")
    assert not slept, UPGRADE.format(what=f"its retry loop: it slept {slept} on a {status}")
    assert len(asks) == 1, UPGRADE.format(what=f"its retry loop: {len(asks)} asks on a "
                                          f"{status}, or no ask through the hooked client")
    assert asks[0] == ("/api/v2/concurrency_limits/increment",
                       {"names": ["hailuo-submit"], "slots": 1, "mode": "rate_limit"}), \
        UPGRADE.format(what=f"the increment route or body: {asks[0]}")


@pytest.mark.prefect
def test_a_full_limit_refuses_the_ask_at_once_on_a_real_server(prefect_harness):
    """The route and body on a real server: the first ask takes the slot, the next is
    refused (423) straight away, whatever ``PREFECT_CLIENT_RETRY_EXTRA_CODES`` says."""
    import time

    import httpx
    from prefect import get_client
    from prefect.settings import PREFECT_CLIENT_RETRY_EXTRA_CODES, temporary_settings

    from prefect_hailuo.tasks.submit_slots import _increment_once, asking_client

    name = "hailuo-submit-test-refusal"
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(name, 1, slot_decay_per_second=0.01)
        try:
            with temporary_settings({PREFECT_CLIENT_RETRY_EXTRA_CODES: {423}}), \
                    asking_client() as asking:
                _increment_once(asking, name)
                assert client.read_global_concurrency_limit_by_name(name).active_slots == 1
                started = time.monotonic()
                with pytest.raises(httpx.HTTPStatusError) as caught:
                    _increment_once(asking, name)
                assert caught.value.response.status_code == 423
                assert time.monotonic() - started < 1.0, UPGRADE.format(
                    what="its retry loop: a refused ask was slept on")
        finally:
            client.delete_global_concurrency_limit_by_name(name)
