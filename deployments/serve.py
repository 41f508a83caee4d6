"""Serve every flow without a work pool or worker: the simplest setup
(``python -m prefect_hailuo.deployments.serve``, runs until interrupted).

Why it reads ``prefect.yaml`` instead of repeating the deployments: one definition of
names, parameter defaults, descriptions, tags and schedules, whichever way the flows are
run. Served deployments execute in this process's machine and environment; the shared
``hailuo-submit`` rate limit still applies when ``deployments.setup`` created it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml


def prefect_yaml_text() -> str:
    """The ``prefect.yaml`` shipped inside the package (the repository root's
    ``prefect.yaml`` is a link to the same file), so serving needs no clone."""
    return resources.files(__package__).joinpath("prefect.yaml").read_text()


def deployment_specs(path: Path | None = None) -> list[dict[str, Any]]:
    """The ``deployments:`` entries of ``prefect.yaml`` (the shipped one unless ``path``
    names another), anchors and merges resolved."""
    text = path.read_text() if path is not None else prefect_yaml_text()
    return list(yaml.safe_load(text)["deployments"])


def _schedules(spec: dict[str, Any]) -> list[Any]:
    from prefect.schedules import Cron

    out = []
    for entry in spec.get("schedules") or []:
        if "cron" not in entry:
            raise ValueError(f"{spec['name']}: only cron schedules are served, got {entry}")
        out.append(Cron(entry["cron"], timezone=entry.get("timezone"),
                        active=entry.get("active", True),
                        parameters=entry.get("parameters") or {}))
    return out


def build_deployments(specs: list[dict[str, Any]] | None = None) -> list[Any]:
    """``RunnerDeployment`` objects for ``prefect.serve``; entrypoints are module paths, so
    the flows are imported from the installed package."""
    from prefect.flows import load_flow_from_entrypoint

    deployments = []
    for spec in specs if specs is not None else deployment_specs():
        flow = load_flow_from_entrypoint(spec["entrypoint"])
        deployments.append(flow.to_deployment(
            name=spec["name"], description=spec.get("description"), tags=spec.get("tags"),
            parameters=spec.get("parameters") or {}, schedules=_schedules(spec)))
    return deployments


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m prefect_hailuo.deployments.serve",
                                     description=__doc__)
    parser.add_argument("--list", action="store_true",
                        help="print the deployments that would be served and exit")
    parser.add_argument("--limit", type=int, default=None,
                        help="most flow runs at once in this process (default: no limit)")
    args = parser.parse_args(argv)
    if args.list:
        for spec in deployment_specs():
            print(f"{spec['name']:18} {spec['entrypoint']}")
        return 0
    from prefect import serve

    serve(*build_deployments(), limit=args.limit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
