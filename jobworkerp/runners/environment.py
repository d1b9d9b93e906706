"""What runner hosts may see of the server's environment, and so what jobs may read.

A job can read its host's environment (a COMMAND job running `env` returns it as output), and the
server's environment holds its secrets: AUTH_TOKEN, MYSQL_PASSWORD, a REDIS_URL with a password.
So hosts, and plugin discovery's subprocesses, get only a list of names: the generic default of
`actors.isolation`, what the runners themselves read inside hosts, and the operator's
RUNNER_ENV_ALLOWLIST.
"""

from __future__ import annotations

from actors.isolation import DEFAULT_ENV_ALLOWLIST
from jobworkerp.config import Config

# Read inside hosts by the DOCKER runner (runners/docker_api.py): the engine's address, and the
# group named in the hint when its socket is not accessible. Neither is a secret.
RUNNER_OWN_ENV: tuple[str, ...] = ("DOCKER_HOST", "DOCKER_GID")


def runner_env_allowlist(config: Config) -> tuple[str, ...]:
    """Every variable name a runner host inherits: the defaults, then RUNNER_ENV_ALLOWLIST."""
    return tuple(dict.fromkeys((*DEFAULT_ENV_ALLOWLIST, *RUNNER_OWN_ENV, *config.runner_env_allowlist)))
