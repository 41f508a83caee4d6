"""One-time operator setup against a Prefect server
(``python -m prefect_hailuo.deployments.setup``).

Creates or updates, idempotently:

- the process work pool the deployments in ``prefect.yaml`` target (default ``hailuo``);
- the ``hailuo-submit`` global concurrency limit, sized from the provider's requests per
  minute with slot decay (see ``deployments.limits``), so every worker's submits together
  stay under the provider's limit;
- the ``Secret`` block holding the API key, read from an environment variable so the key
  never appears on a command line, in shell history or in this script's output;
- the ``HailuoCredentials`` block the deployments name by default (``hailuo``);
- with ``--results-bucket BLOCK`` (a prefect-aws ``S3Bucket`` block, any S3-compatible
  endpoint): the pool's base job template, so that every flow run a worker of the pool
  starts persists its results (the submit cache of paid task ids above all, and the flow
  results callers read) in that bucket and locks identical submits on the Prefect server
  rather than on one machine (``shared_state_env``). Without it each worker keeps its
  own cache, and a re-run landing on another worker pays again;
- with ``--in-flight N``: the account's cap on tasks in flight at the provider
  (``hailuo-inflight-<account>``, ``tasks/inflight.py``), for the key being saved or the
  one the credentials block already holds.

Why a Python script rather than a list of ``prefect`` commands: it is idempotent (safe to
re-run after changing the rate), it sizes the limit with the same code the tests check,
and it never echoes the key.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from hailuo.capabilities import Provider
from prefect_hailuo.defaults import (
    API_KEY_ENV,
    DEFAULT_CREDENTIALS_BLOCK,
    DEFAULT_SECRET_BLOCK,
    DEFAULT_WORK_POOL,
    PERSIST_RESULTS_ENV,
    RESULTS_STORAGE_ENV,
    SUBMIT_LIMIT_NAME,
    SUBMIT_LOCK_MANAGER_ENV,
)
from prefect_hailuo.deployments.limits import submit_limit


def ensure_work_pool(client, name: str) -> str:
    """Create the process work pool unless it exists; returns what happened."""
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.process import ProcessWorker

    try:
        pool = client.read_work_pool(name)
    except ObjectNotFound:
        client.create_work_pool(WorkPoolCreate(
            name=name, type="process", description="prefect-hailuo flows (process worker)",
            base_job_template=ProcessWorker.get_default_base_job_template()))
        return f"work pool {name!r} created (process)"
    return f"work pool {name!r} exists ({pool.type})"


def shared_state_env(bucket_block: str) -> dict[str, str]:
    """The environment every flow run of the pool gets: results persisted by default, in
    the bucket block, and identical submits locked on the Prefect server (which every
    worker shares) instead of lock files on one machine."""
    return {PERSIST_RESULTS_ENV: "true",
            RESULTS_STORAGE_ENV: f"s3-bucket/{bucket_block}",
            SUBMIT_LOCK_MANAGER_ENV: "prefect"}


def check_results_bucket(name: str) -> str:
    """The S3Bucket block exists (its bucket is reached by the workers, with their
    network and credentials, not necessarily from here)."""
    from prefect_aws import S3Bucket

    try:
        block = S3Bucket.load(name)
    except ValueError:
        raise SystemExit(f"setup: error: no S3Bucket block named {name!r}: create it first "
                         "(prefect-aws S3Bucket, any S3-compatible endpoint)") from None
    return str(block.bucket_name)


def share_results(client, pool: str, bucket_block: str) -> str:
    """Put ``shared_state_env`` into the pool's base job template (the default of its
    ``env`` variable, merged with what is there). A deployment that sets its own ``env``
    job variable replaces this default: it must repeat these variables."""
    from prefect.client.schemas.actions import WorkPoolUpdate

    template = client.read_work_pool(pool).base_job_template
    env_var = template.setdefault("variables", {}).setdefault("properties", {}).setdefault(
        "env", {"type": "object", "title": "Environment Variables"})
    env_var["default"] = {**(env_var.get("default") or {}), **shared_state_env(bucket_block)}
    client.update_work_pool(pool, WorkPoolUpdate(base_job_template=template))
    return (f"work pool {pool!r}: flow runs persist results to S3Bucket block "
            f"{bucket_block!r} and lock submits on the Prefect server")


def ensure_inflight_limit(client, account: str, in_flight: int) -> str:
    """The account's in-flight cap: a concurrency-mode limit of ``in_flight`` slots."""
    from prefect_hailuo.tasks.inflight import inflight_limit_name

    name = inflight_limit_name(account)
    client.upsert_global_concurrency_limit_by_name(name, in_flight)
    return f"{name}: at most {in_flight} tasks in flight at the provider for this key"


def account_for(credentials_block: str, env_var: str | None) -> str:
    """The account hash of the key being saved, else of the key the block holds."""
    from prefect_hailuo.blocks.credentials import HailuoCredentials, account_of

    if env_var and os.environ.get(env_var, "").strip():
        return account_of(os.environ[env_var].strip())
    try:
        creds = HailuoCredentials.load(credentials_block)
    except ValueError:
        raise SystemExit(f"setup: error: --in-flight needs the key: give --api-key-env or "
                         f"save the credentials block {credentials_block!r} first") from None
    return account_of(creds.api_key or creds._key())


def ensure_submit_limit(client, rpm: int, headroom: float) -> str:
    sized = submit_limit(rpm, headroom)
    client.upsert_global_concurrency_limit_by_name(
        SUBMIT_LIMIT_NAME, sized.limit, slot_decay_per_second=sized.slot_decay_per_second)
    return sized.describe()


def save_secret(name: str, env_var: str) -> str:
    """Store the key from ``env_var`` in a Secret block; the key itself is never printed."""
    from prefect.blocks.system import Secret
    from pydantic import SecretStr

    key = os.environ.get(env_var, "").strip()
    if not key:
        raise SystemExit(f"setup: error: environment variable {env_var} is empty or not set")
    Secret(value=SecretStr(key)).save(name, overwrite=True)
    return f"Secret block {name!r} saved from ${env_var} ({len(key)} characters)"


def save_credentials(name: str, provider: str, base_url: str | None, secret_block: str) -> str:
    from prefect_hailuo.blocks.credentials import HailuoCredentials

    HailuoCredentials(provider=provider, base_url=base_url or None,
                      api_key_secret_block=secret_block).save(name, overwrite=True)
    where = base_url or "the provider's public URL"
    return f"HailuoCredentials block {name!r} saved ({provider}, {where}, key in {secret_block!r})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m prefect_hailuo.deployments.setup",
        description=f"Create the work pool, the {SUBMIT_LIMIT_NAME} rate limit and the "
        "key/credential blocks on the Prefect server named by PREFECT_API_URL. Safe to re-run.")
    parser.add_argument("--pool", default=DEFAULT_WORK_POOL, help="process work pool name")
    parser.add_argument("--rpm", type=int, default=20,
                        help="provider submits per minute for this key (default 20)")
    parser.add_argument("--headroom", type=float, default=0.1,
                        help="fraction of the provider's rate left unused (default 0.1)")
    parser.add_argument("--api-key-env", default=None, metavar="VAR",
                        help=f"save the key from this environment variable (e.g. "
                        f"{API_KEY_ENV}) into the Secret block; omit to leave it alone")
    parser.add_argument("--secret-block", default=DEFAULT_SECRET_BLOCK,
                        help=f"Secret block holding the key (default {DEFAULT_SECRET_BLOCK})")
    parser.add_argument("--credentials-block", default=DEFAULT_CREDENTIALS_BLOCK,
                        help=f"HailuoCredentials block to save (default "
                        f"{DEFAULT_CREDENTIALS_BLOCK}); '' to skip")
    parser.add_argument("--provider", choices=[p.value for p in Provider],
                        default=Provider.APIMART.value)
    parser.add_argument("--base-url", default=None,
                        help="API base URL; empty means the provider's public URL")
    parser.add_argument("--results-bucket", default=None, metavar="BLOCK",
                        help="S3Bucket block every worker of the pool persists results "
                        "(the submit cache of paid task ids) to, with submits locked on the "
                        "Prefect server: needed as soon as workers run on more than one "
                        "machine")
    parser.add_argument("--in-flight", type=int, default=None, metavar="N",
                        help="most tasks of this key in flight at the provider at once, "
                        "across all workers (the provider's concurrent-generation limit)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        submit_limit(args.rpm, args.headroom)  # bad numbers fail before touching the server
    except ValueError as exc:
        print(f"setup: error: {exc}", file=sys.stderr)
        return 2
    if args.in_flight is not None and args.in_flight < 1:
        print("setup: error: --in-flight must be at least 1", file=sys.stderr)
        return 2
    from prefect.client.orchestration import get_client

    from prefect_hailuo.blocks.credentials import HailuoCredentials

    HailuoCredentials.register_type_and_schema()
    if args.results_bucket:
        check_results_bucket(args.results_bucket)  # before changing anything
    with get_client(sync_client=True) as client:
        print(ensure_work_pool(client, args.pool))
        print(ensure_submit_limit(client, args.rpm, args.headroom))
        if args.results_bucket:
            print(share_results(client, args.pool, args.results_bucket))
    if args.api_key_env:
        print(save_secret(args.secret_block, args.api_key_env))
    if args.credentials_block:
        print(save_credentials(args.credentials_block, args.provider, args.base_url,
                               args.secret_block))
    if args.in_flight is not None:
        account = account_for(args.credentials_block or DEFAULT_CREDENTIALS_BLOCK,
                              args.api_key_env)
        with get_client(sync_client=True) as client:
            print(ensure_inflight_limit(client, account, args.in_flight))
    return 0


if __name__ == "__main__":
    sys.exit(main())
