"""``hailuo init DIR``: write the deployment template and the example storyboards into a
folder, so someone with only the installed package (no clone) can deploy.

Writes ``DIR/prefect.yaml`` (the file shipped in ``prefect_hailuo.deployments``, the same
one ``python -m prefect_hailuo.deployments.serve`` reads) and ``DIR/examples/*`` (the data
files shipped in ``prefect_hailuo.examples``). The entrypoints in that ``prefect.yaml`` are
module paths (``prefect_hailuo.flows...``), so the folder needs nothing else.

Why importlib.resources rather than paths next to this file: it reads the package data
wherever the package lives (a wheel in site-packages, an editable install mapping the
repository's ``deployments/`` and ``examples/`` folders), which a path computed from
``__file__`` cannot. No Prefect import: ``hailuo init`` is as quick as ``hailuo estimate``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from prefect_hailuo.defaults import API_KEY_ENV, DEFAULT_WORK_POOL

DEPLOYMENTS_PACKAGE = "prefect_hailuo.deployments"
EXAMPLES_PACKAGE = "prefect_hailuo.examples"
#: Which files of the examples package are examples (the package-data patterns of
#: pyproject.toml); its ``__init__.py`` and caches are not.
EXAMPLE_SUFFIXES = (".yaml", ".yml", ".json", ".png")

# the CLI's exit codes, repeated: prefect_hailuo.cli imports this module
EXIT_OK = 0
EXIT_OTHER = 1
EXIT_BAD_INPUT = 2


class ScaffoldError(ValueError):
    """``init`` refused before writing anything (the CLI exits 2)."""


def template_files() -> list[tuple[str, Traversable]]:
    """``(path relative to DIR, packaged resource)`` for every file ``init`` writes."""
    files: list[tuple[str, Traversable]] = [
        ("prefect.yaml", resources.files(DEPLOYMENTS_PACKAGE).joinpath("prefect.yaml"))]
    examples = sorted((entry for entry in resources.files(EXAMPLES_PACKAGE).iterdir()
                       if entry.is_file() and entry.name.endswith(EXAMPLE_SUFFIXES)),
                      key=lambda entry: entry.name)
    files += [(f"examples/{entry.name}", entry) for entry in examples]
    return files


def init(directory: str | os.PathLike[str], *, force: bool = False) -> list[Path]:
    """Write the template into ``directory`` (created if missing); returns the paths written.

    Refuses (``ScaffoldError``, nothing written) when any of the files already exists,
    unless ``force``: the user may have edited their ``prefect.yaml``.
    """
    root = Path(directory)
    if root.exists() and not root.is_dir():
        raise ScaffoldError(f"{root} exists and is not a directory")
    plan = [(root / relative, resource) for relative, resource in template_files()]
    for target, _ in plan:
        for parent in reversed(target.relative_to(root).parents):
            folder = root / parent
            if folder.exists() and not folder.is_dir():
                raise ScaffoldError(f"{folder} exists and is not a directory")
    existing = [target for target, _ in plan if target.exists() or target.is_symlink()]
    if existing and not force:
        names = ", ".join(str(path) for path in existing)
        raise ScaffoldError(f"{names} already exist{'s' if len(existing) == 1 else ''}; "
                            "nothing written (--force overwrites)")
    contents = [(target, resource.read_bytes()) for target, resource in plan]  # read all first
    written = []
    for target, data in contents:
        target.parent.mkdir(parents=True, exist_ok=True)
        _replace(target, data)
        written.append(target)
    return written


def _replace(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` through a temporary file: a reader never sees half a
    file, and an existing symlink is replaced rather than written through."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def next_steps(directory: str | os.PathLike[str]) -> str:
    """What to run after ``init``: setup once per server, deploy, start a worker."""
    return "\n".join([
        "Next steps:",
        "  1. once per Prefect server (work pool, rate limit, credentials block):",
        f"     {API_KEY_ENV}=... python -m prefect_hailuo.deployments.setup --rpm 20 "
        f"--api-key-env {API_KEY_ENV}",
        "  2. register the deployments:",
        f"     cd {shlex.quote(str(directory))} && prefect --no-prompt deploy --all",
        "  3. start a worker wherever prefect-hailuo is installed:",
        f"     prefect worker start --pool {DEFAULT_WORK_POOL}",
        "Storyboard paths in deployment parameters are read on the worker: give absolute "
        "paths.",
    ])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", help="folder to write prefect.yaml and examples/ into "
                        "(created if missing)")
    parser.add_argument("--force", action="store_true",
                        help="overwrite files that already exist")


def command(args: argparse.Namespace) -> int:
    """``hailuo init``: one ``hailuo: error:`` line, exit 2 when refused (nothing written),
    1 when the file system fails (permissions, disk full)."""
    try:
        written = init(args.directory, force=args.force)
    except (ScaffoldError, OSError) as exc:
        print(f"hailuo: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_BAD_INPUT if isinstance(exc, ScaffoldError) else EXIT_OTHER
    for path in written:
        print(f"wrote {path}")
    print()
    print(next_steps(args.directory))
    return EXIT_OK
