"""What an operator runs: ``deployments.setup`` once per Prefect server, then either
``prefect --no-prompt deploy --all`` plus workers, or ``deployments.serve`` alone."""
