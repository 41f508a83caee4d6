"""The credentials block: Prefect's block standard checks, key handling, registration."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from prefect.testing.standard_test_suites import BlockStandardTestSuite
from pydantic import SecretStr

from hailuo.errors import AuthenticationError
from prefect_hailuo.blocks import HailuoCredentials

ROOT = Path(__file__).resolve().parents[1]


class TestHailuoCredentialsStandards(BlockStandardTestSuite):
    @pytest.fixture
    def block(self):
        return HailuoCredentials

    def test_has_a_valid_image(self, block) -> None:  # type: ignore[override]
        pytest.skip("downloads the logo from the internet, which this machine cannot reach")


def test_key_from_field_never_in_repr_or_dump():
    creds = HailuoCredentials(api_key=SecretStr("sk-visible-nowhere"), base_url="http://x")
    assert "sk-visible-nowhere" not in repr(creds)
    assert "sk-visible-nowhere" not in creds.model_dump_json()
    with creds.get_client() as client:
        assert "sk-visible-nowhere" not in repr(client)


@pytest.mark.prefect
def test_key_from_secret_block_and_missing_block_error(prefect_harness):
    from prefect.blocks.system import Secret

    Secret(value="123456").save("numeric-key", overwrite=True)  # Secret.get() would give int
    creds = HailuoCredentials(api_key_secret_block="numeric-key", base_url="http://x")
    assert creds._key().get_secret_value() == "123456"
    with pytest.raises(AuthenticationError, match="no Secret block named 'nope'"):
        HailuoCredentials(api_key_secret_block="nope").get_client()


@pytest.mark.prefect
def test_block_registers_with_prefect_cli(prefect_harness):
    import prefect.settings

    env_url = prefect.settings.PREFECT_API_URL.value()
    proc = subprocess.run([sys.executable, "-m", "prefect", "block", "register", "-m", "blocks"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "PREFECT_API_URL": env_url})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Hailuo Credentials" in proc.stdout


@pytest.mark.prefect
def test_key_is_read_once_per_flow_run_and_a_rotated_key_reaches_the_next_run(prefect_harness):
    """Each task of a clip builds a client; the block and its Secret are loaded once per
    flow run, and a key rotated between runs is used by the next run."""
    from prefect import flow, task
    from prefect.blocks.system import Secret

    from prefect_hailuo.blocks.credentials import HailuoConnection
    from tests.conftest import save_credentials

    save_credentials("rotating", "http://127.0.0.1:9", "key-one")
    conn = HailuoConnection(credentials_block="rotating", base_url="http://127.0.0.1:9")

    def key() -> str:
        with conn.client() as client:
            return client._key.get_secret_value()

    @task
    def key_in_a_task() -> str:
        return key()

    @flow
    def keys_seen() -> list[str]:
        first = key()
        Secret(value="key-rotated").save("rotating-key", overwrite=True)
        return [first, key_in_a_task(), key()]

    assert keys_seen() == ["key-one"] * 3
    assert keys_seen() == ["key-rotated"] * 3
    assert key() == "key-rotated"  # outside a flow run: read every time
