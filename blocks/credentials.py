"""``HailuoCredentials``: provider, base URL and the API key, handing out a ``HailuoClient``.

The key lives either in this block's own ``SecretStr`` field or, preferably, in a Prefect
``Secret`` block referenced by name (default ``hailuo-api-key``), so operators rotate it
in one place. Either way it is read only inside ``get_client()`` and never returned,
logged, or put into task inputs or results: tasks receive the block's *name* and build
their client themselves.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from typing import TypeVar

from prefect.blocks.core import Block
from prefect.blocks.system import Secret
from pydantic import BaseModel, Field, SecretStr

from hailuo.aclient import AsyncHailuoClient
from hailuo.capabilities import Provider
from hailuo.client import HailuoClient
from hailuo.errors import AuthenticationError, ConfigurationError
from hailuo.providers import DEFAULT_BASE_URLS
from prefect_hailuo.defaults import (
    API_KEY_ENV,
    DEFAULT_CREDENTIALS_BLOCK,
    DEFAULT_SECRET_BLOCK,
    SIMULATE_ENV,
    SIMULATOR,
)

#: Either client: both take the same settings (hailuo.client / hailuo.aclient).
ClientT = TypeVar("ClientT", HailuoClient, AsyncHailuoClient)


class HailuoCredentials(Block):
    """Connection settings for MiniMax Hailuo through APIMart or MiniMax's own API.

    Example:
        ```python
        from prefect_hailuo.blocks import HailuoCredentials
        from hailuo.models import VideoRequest

        hailuo_credentials = HailuoCredentials.load("BLOCK_NAME")
        with hailuo_credentials.get_client() as client:
            job = client.submit(VideoRequest(prompt="[Pan left] a lighthouse at dusk"))
        ```
    """

    _block_type_name = "Hailuo Credentials"
    _block_type_slug = "hailuo-credentials"
    _logo_url = "https://images.ctfassets.net/gm98wzqotmnx/4CD4wwbiIKPkZDt4U3TEuW/c112fe85653da054b6d5334ef662bec4/prefect.png?h=250"  # noqa: E501
    _description = "Provider, base URL and API key for MiniMax Hailuo video generation."
    _documentation_url = "https://github.com/prefect-hailuo/prefect-hailuo#readme"

    provider: Provider = Field(
        default=Provider.APIMART,
        description="Which API dialect to speak: 'apimart' (api.apimart.ai) or 'minimax' "
        "(MiniMax's own API, api.minimax.io / api.minimaxi.com).",
    )
    base_url: str | None = Field(
        default=None,
        description="API base URL. Empty means the provider's public URL; set it to a local "
        "simulator (e.g. http://127.0.0.1:8123) to try pipelines without paying.",
    )
    api_key: SecretStr | None = Field(
        default=None,
        description="The API key itself. Prefer api_key_secret_block so the key lives in one "
        "Secret block; if both are set, this field wins.",
    )
    api_key_secret_block: str | None = Field(
        default=DEFAULT_SECRET_BLOCK,
        description="Name of a Prefect Secret block holding the API key.",
    )
    request_timeout_seconds: float = Field(
        default=30.0, gt=0,
        description="Timeout for each API call in seconds (connect timeout 10 s).",
    )
    max_retries: int = Field(
        default=4, ge=0,
        description="Retries of idempotent calls on 408/429/5xx and transport errors. Submits "
        "are only retried when that cannot pay twice.",
    )

    def _key(self) -> SecretStr:
        if self.api_key is not None:
            return self.api_key
        if not self.api_key_secret_block:
            raise AuthenticationError("no API key: set api_key or api_key_secret_block")
        try:
            secret = Secret.load(self.api_key_secret_block)
        except ValueError:
            raise AuthenticationError(
                f"no Secret block named {self.api_key_secret_block!r}: create it with "
                f"`python -m prefect_hailuo.deployments.setup --api-key-env {API_KEY_ENV}` "
                "or in the UI"
            ) from None
        # Secret.get() json-decodes (a numeric key would come back as an int): read raw.
        raw = secret.value
        raw = raw.get_secret_value() if hasattr(raw, "get_secret_value") else raw
        return SecretStr(str(raw))

    def get_client(self) -> HailuoClient:
        """A configured client; the caller closes it (it is a context manager)."""
        return self._make(HailuoClient)

    def get_async_client(self) -> AsyncHailuoClient:
        """The asyncio client with the same settings (``async with``; it runs its rare
        submits through a sync client in a thread and awaits everything else)."""
        return self._make(AsyncHailuoClient)

    def _make(self, cls: type[ClientT]) -> ClientT:
        return cls(self.provider, api_key=self._key(), base_url=self.base_url,
                   timeout=self.request_timeout_seconds, max_retries=self.max_retries)


EMBEDDED_KEY = "embedded-simulator-key"
#: The account of the embedded simulator (it has no real key).
SIMULATOR_ACCOUNT = "acct-simulator"
#: Fixed salt of the account hash: the hash identifies a key without being a plain
#: sha256 of it (which could be looked up against a list of leaked keys).
_ACCOUNT_SALT = b"prefect-hailuo/account/v1\x00"


def account_of(key: SecretStr | str) -> str:
    """Which account a key submits on, for cache keys: ``acct-`` + 16 hex digits of
    sha256(salt + key). Never the key, and not reversible to it."""
    raw = key.get_secret_value() if isinstance(key, SecretStr) else key
    digest = hashlib.sha256(_ACCOUNT_SALT + raw.encode()).hexdigest()
    return f"acct-{digest[:16]}"


class HailuoConnection(BaseModel):
    """What tasks receive instead of a client or a key: enough to build a client.

    It is hashable plain data (so it can sit in task inputs and cache keys) and holds no
    secret: the key is loaded from the named block inside ``client()``. ``account`` (a
    salted hash of the key, computed by ``resolve_connection``) is part of the submit
    cache key, so a run with another key never receives a task that key cannot see.
    """

    credentials_block: str = Field(
        description=f"Saved HailuoCredentials block, or {SIMULATOR!r} for the embedded "
        "simulator.")
    provider: Provider = Provider.APIMART
    base_url: str
    account: str | None = Field(
        None, description="Salted hash of the API key (never the key), set when the "
        "connection is resolved; computed from the block when missing.")

    @property
    def simulated(self) -> bool:
        """Known before any call for the embedded simulator; a credentials block that
        points at a simulator is recognised from its answers (``Job.simulated``)."""
        return self.credentials_block == SIMULATOR

    def account_id(self) -> str:
        """``account``, or (for a connection built by hand) the hash of the block's key."""
        if self.account:
            return self.account
        if self.credentials_block == SIMULATOR:
            return SIMULATOR_ACCOUNT
        creds = _credentials_for_this_run(self.credentials_block)
        return account_of(creds.api_key or creds._key())

    def client(self) -> HailuoClient:
        return self._client(HailuoClient)

    def async_client(self) -> AsyncHailuoClient:
        """``client()`` for asyncio code (waits without a thread each)."""
        return self._client(AsyncHailuoClient)

    def _client(self, cls: type[ClientT]) -> ClientT:
        if self.credentials_block == SIMULATOR:
            return cls(self.provider, api_key=EMBEDDED_KEY, base_url=self.base_url)
        creds = _credentials_for_this_run(self.credentials_block)
        if self.account and creds.api_key is not None \
                and account_of(creds.api_key) != self.account:
            # Tasks were keyed on the account resolved at the start of the run: a client
            # with another key would pay for (or look up) tasks under the wrong account.
            raise ConfigurationError(
                f"the API key of credentials block {self.credentials_block!r} changed "
                "during this run; run the flow again to use the new key",
                field="credentials_block")
        return creds.model_copy(update={"base_url": self.base_url})._make(cls)


_RUN_CACHE: OrderedDict[tuple[str, str], HailuoCredentials] = OrderedDict()
_RUN_CACHE_LOCK = threading.Lock()


def _credentials_for_this_run(block_name: str) -> HailuoCredentials:
    """The block with its key resolved into ``api_key`` (in memory only, never saved),
    loaded once per flow run: each task of a clip builds a client, and loading the block
    and its Secret every time costs several API round trips.

    A new flow run loads them afresh, so a rotated key is picked up by the next run;
    outside a flow run nothing is kept. Only the most recent runs are remembered."""
    from prefect.runtime import flow_run

    run_id = flow_run.id
    with _RUN_CACHE_LOCK:
        hit = _UNSAVED.get(block_name) or (
            _RUN_CACHE.get((run_id, block_name)) if run_id else None)
    if hit is not None:
        return hit
    creds = HailuoCredentials.load(block_name)
    resolved = creds.model_copy(update={"api_key": creds._key()})
    if run_id:
        with _RUN_CACHE_LOCK:
            _RUN_CACHE[(run_id, block_name)] = resolved
            while len(_RUN_CACHE) > 32:
                _RUN_CACHE.popitem(last=False)
    return resolved


def simulation_requested() -> bool:
    """The process asked for the simulator whenever no credentials are named
    (``HAILUO_SIMULATE=1``: the test suite, a sandbox worker)."""
    return os.environ.get(SIMULATE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


#: Blocks handed over as objects that were never saved, by the name their connection
#: carries (``unsaved-<account>-<hash of provider and URL>``): in this process only.
_UNSAVED: dict[str, HailuoCredentials] = {}


def _name_of(block: HailuoCredentials) -> str:
    """The name a block object is used by: its saved name (a flow's block picker hands
    over the loaded block), else an in-process name for a block built in code and never
    saved (its key resolved once, kept in memory, never saved or logged)."""
    saved = getattr(block, "_block_document_name", None)
    if saved:
        return saved
    try:
        key = block._key()
    except AuthenticationError as exc:
        raise ConfigurationError(f"credentials: {exc.message}", field="credentials") from None
    where = hashlib.sha256(f"{block.provider}|{block.base_url or ''}".encode()).hexdigest()
    name = f"unsaved-{account_of(key)}-{where[:8]}"
    with _RUN_CACHE_LOCK:
        _UNSAVED[name] = block.model_copy(update={"api_key": key})
    return name


def resolve_connection(credentials_block: str | HailuoCredentials | None,
                       provider: Provider | str = Provider.APIMART) -> HailuoConnection:
    """Load the named credentials block, or start the embedded simulator when asked for.

    The simulator is never a silent default: a deployment run whose credentials are empty
    would otherwise "succeed" without producing anything real. It runs when the name is
    ``"simulator"``, or when nothing is named and the process set ``HAILUO_SIMULATE=1``.
    An empty string means "not set". ``provider`` only applies to the simulator.
    ``credentials_block`` may also be the block itself (a flow's block picker): a saved
    one is used by its name, one never saved by an in-process name (``_name_of``).
    """
    if isinstance(credentials_block, HailuoCredentials):
        credentials_block = _name_of(credentials_block)
    name = (credentials_block or "").strip() or None
    if name is None and simulation_requested():
        name = SIMULATOR
    if name is None:
        raise ConfigurationError(
            "no credentials block given. Save one with `python -m "
            f"prefect_hailuo.deployments.setup --api-key-env {API_KEY_ENV}` (it creates the "
            f"{DEFAULT_CREDENTIALS_BLOCK!r} block) and pass "
            f"credentials_block={DEFAULT_CREDENTIALS_BLOCK!r}, or pass "
            f"credentials_block={SIMULATOR!r} to run on the embedded simulator (nothing is "
            "paid)", field="credentials_block")
    if name == SIMULATOR:
        from hailuo.simulator.embedded import embedded_simulator

        return HailuoConnection(credentials_block=SIMULATOR, provider=Provider(provider),
                                base_url=embedded_simulator().base_url,
                                account=SIMULATOR_ACCOUNT)
    try:
        # The block and its key, loaded once for this flow run (the tasks reuse them):
        # a missing Secret block or an empty key is found here, before anything is paid.
        creds = _credentials_for_this_run(name)
    except ValueError:
        raise ConfigurationError(
            f"no HailuoCredentials block named {name!r} on the Prefect server: create it "
            f"with `python -m prefect_hailuo.deployments.setup --credentials-block {name}` "
            "or in the UI", field="credentials_block") from None
    except AuthenticationError as exc:
        raise ConfigurationError(f"credentials block {name!r}: {exc.message}",
                                 field="credentials_block") from None
    key = creds.api_key.get_secret_value() if creds.api_key is not None else ""
    if not key.strip():
        raise ConfigurationError(
            f"credentials block {name!r}: the API key is empty (check its api_key or the "
            f"Secret block {creds.api_key_secret_block!r})", field="credentials_block")
    base_url = creds.base_url or DEFAULT_BASE_URLS[creds.provider]  # type: ignore[index]
    return HailuoConnection(credentials_block=name, provider=creds.provider,
                            base_url=base_url.rstrip("/"), account=account_of(key))
