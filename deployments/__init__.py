"""The archiver's Prefect deployments: declared once in the project's `prefect.yaml`.

* `prefect --no-prompt deploy --all` (from the project root, `make deploy`) registers them on a
  Prefect server for a process work pool (`make pool`); workers (`make worker`) run them.
* `python -m deployments serve` (`make serve`) serves the same deployments from one process:
  no work pool, no worker, one machine.
* `python -m deployments secret` (`make secret`) stores REPLICATE_API_TOKEN in the Prefect Secret
  block the deployments name, so the token never travels as a parameter or job variable.
"""

from deployments.declare import (
    PREFECT_YAML,
    PROJECT_DIR,
    DeploymentSpec,
    create_token_secret,
    load_specs,
    serve,
)

__all__ = [
    "PREFECT_YAML",
    "PROJECT_DIR",
    "DeploymentSpec",
    "create_token_secret",
    "load_specs",
    "serve",
]
