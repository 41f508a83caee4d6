"""Names the Prefect side shares, each written once.

A leaf module (no imports): the blocks, tasks, flows, deployment scripts and the CLI all
read these, so a name used on a Prefect server (the rate limit, the blocks, the pool)
cannot drift between the code that creates it and the code that uses it.
"""

from __future__ import annotations

#: The global concurrency limit (rate-limit mode) every submit takes a slot of.
SUBMIT_LIMIT_NAME = "hailuo-submit"
#: The Secret block holding the API key, named by the credentials block.
DEFAULT_SECRET_BLOCK = "hailuo-api-key"
#: The HailuoCredentials block the deployments name by default.
DEFAULT_CREDENTIALS_BLOCK = "hailuo"
#: The process work pool the deployments target.
DEFAULT_WORK_POOL = "hailuo"
#: Environment variable the setup script reads the key from (never a command-line value).
API_KEY_ENV = "HAILUO_API_KEY"
#: Environment variable the CLI reads its default credentials block from.
CREDENTIALS_ENV = "HAILUO_CREDENTIALS_BLOCK"

#: Reserved credentials name: run on the embedded simulator (nothing is paid). The
#: simulator is never a silent default: a run without credentials fails unless it names
#: this, or its process sets ``SIMULATE_ENV=1`` (the test suite does).
SIMULATOR = "simulator"
SIMULATE_ENV = "HAILUO_SIMULATE"

#: Which lock manager serialises identical submits (tasks/submit_lock.py): unset or
#: "filesystem" (lock files on this machine), "prefect" (leases on the Prefect server's
#: concurrency limits: workers on several machines; set by deployments.setup
#: --results-bucket), "memory" (one process), or "module:attribute" naming any Prefect
#: LockManager (e.g. prefect-redis's).
SUBMIT_LOCK_MANAGER_ENV = "HAILUO_SUBMIT_LOCK_MANAGER"
#: Folder of the filesystem lock files (default: Prefect's local result storage folder).
SUBMIT_LOCK_DIR_ENV = "HAILUO_SUBMIT_LOCK_DIR"
#: Longest a submit lock is held by a holder whose process cannot be checked (another
#: machine, a plugged-in lock manager) before it counts as abandoned.
SUBMIT_LOCK_HOLD_ENV = "HAILUO_SUBMIT_LOCK_HOLD_SECONDS"
#: ``HAILUO_SUBMIT_LOCK_MANAGER=prefect`` (several machines sharing a Prefect server):
#: submit locks are slots of global concurrency limits of limit 1 named this prefix plus a
#: stripe number (``hailuo-lock-00`` .. ``hailuo-lock-63``), created on demand; a cache
#: key is hashed onto one of ``SUBMIT_LOCK_STRIPES`` stripes (tasks/submit_lock.py).
SUBMIT_LOCK_MANAGER_PREFECT = "prefect"
SUBMIT_LOCK_LIMIT_PREFIX = "hailuo-lock-"
SUBMIT_LOCK_STRIPES = 64

#: Prefix of the global concurrency limit capping one account's tasks in flight at the
#: provider (tasks/inflight.py); the account hash follows. Created by deployments.setup
#: ``--in-flight N``; without it nothing is capped.
INFLIGHT_LIMIT_PREFIX = "hailuo-inflight-"
#: The S3 bucket block every worker of a pool persists results to (set by
#: deployments.setup ``--results-bucket``); the flows warn when several workers share a
#: pool but results stay on each machine.
RESULTS_STORAGE_ENV = "PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK"
PERSIST_RESULTS_ENV = "PREFECT_RESULTS_PERSIST_BY_DEFAULT"
#: The deployment a spread batch starts its chunk runs of (deployments/prefect.yaml).
CHUNK_DEPLOYMENT = "hailuo-generate-chunk/chunk"
