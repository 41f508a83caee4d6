"""The simulator is never a silent default, and results say ``simulated`` truthfully.

A deployment run whose credentials are empty must fail with a message naming the block to
create, not "succeed" on the embedded simulator; the simulator runs only when asked for
(the reserved credentials name, or ``HAILUO_SIMULATE=1`` as this test session sets). A
credentials block that points at a simulator is recognised from its answers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hailuo.errors import ConfigurationError
from hailuo.simulator import run_simulator
from prefect_hailuo.defaults import SIMULATE_ENV, SIMULATOR
from tests.conftest import save_credentials

pytestmark = pytest.mark.prefect

KEY = "hk-simulate-switch-key-0123456789"


def _options():
    from prefect_hailuo import GenerationOptions

    return GenerationOptions(resolution="512p", duration=5)


def _destination(tmp_path: Path):
    from prefect_hailuo import Destination

    return Destination(output_dir=str(tmp_path))


@pytest.mark.parametrize("credentials", [None, "", "   "])
def test_no_credentials_fails_naming_the_block_unless_the_simulator_is_asked_for(
        prefect_harness, monkeypatch, tmp_path, credentials):
    from prefect_hailuo import text_to_video

    monkeypatch.delenv(SIMULATE_ENV, raising=False)
    with pytest.raises(ConfigurationError) as caught:
        text_to_video(prompt="a lighthouse at dusk", options=_options(),
                      destination=_destination(tmp_path), credentials_block=credentials)
    message = str(caught.value)
    assert "credentials_block" in message and "'hailuo'" in message
    assert "prefect_hailuo.deployments.setup" in message and repr(SIMULATOR) in message
    assert not list(tmp_path.rglob("*.mp4")), "nothing may be generated"


def test_a_missing_credentials_block_is_a_configuration_error(prefect_harness, tmp_path):
    from prefect_hailuo import text_to_video

    with pytest.raises(ConfigurationError, match="no HailuoCredentials block named 'nope'"):
        text_to_video(prompt="a lighthouse at dusk", options=_options(),
                      destination=_destination(tmp_path), credentials_block="nope")


def test_the_reserved_name_runs_the_embedded_simulator(prefect_harness, monkeypatch,
                                                       tmp_path):
    from prefect_hailuo import text_to_video

    monkeypatch.delenv(SIMULATE_ENV, raising=False)
    clip = text_to_video(prompt="[Pan left] a lighthouse at dusk", options=_options(),
                         destination=_destination(tmp_path), credentials_block=SIMULATOR)
    assert clip.simulated and Path(clip.local_path).is_file()
    assert json.loads(Path(clip.manifest_path).read_text())["simulated"] is True


def test_a_credentials_block_pointing_at_a_simulator_says_simulated(prefect_harness,
                                                                    tmp_path):
    from prefect_hailuo import text_to_video

    with run_simulator(render_seconds=0.3, accepted_keys=[KEY]) as sim:
        block = save_credentials("simulate-switch", sim.base_url, KEY)
        clip = text_to_video(prompt="[Zoom in] a harbour at night", options=_options(),
                             destination=_destination(tmp_path), credentials_block=block)
    assert clip.simulated
    assert json.loads(Path(clip.manifest_path).read_text())["simulated"] is True
