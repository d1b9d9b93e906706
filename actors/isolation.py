"""Starting a Python subprocess that sees neither the parent's secrets nor its working directory.

Subprocesses that run other people's code (runner hosts, the commands their calls start, plugin
imports) must not inherit the parent's environment: it holds credentials (tokens, database
passwords, URLs with passwords), and a call can read its own environment (a command as simple as
``env``) and hand it back. So a child gets only an allowlist of variable names.

Nor may a child import code from wherever the parent happens to run: ``python -m`` puts the
working directory first on ``sys.path``, so a stray ``tblib.py`` there would run inside every
host. A child therefore starts isolated (``python -I``: no working directory on the path, no
``PYTHON*`` variables, no user site), in a fixed working directory, and is handed the parent's
import path explicitly (:data:`IMPORT_PATH_ENV`, read and removed by a short bootstrap before
anything else is imported), without the parent's working directory unless ``PYTHONPATH`` names it.

Generic: nothing here knows what the children run.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping

__all__ = [
    "DEFAULT_ENV_ALLOWLIST",
    "IMPORT_PATH_ENV",
    "NEUTRAL_CWD",
    "allowed_environment",
    "import_path",
    "python_command",
    "python_environment",
]

# Variables a child gets by default: what programs need to find executables, locate the home
# directory, pick a locale, time zone and temp directory, and know who runs them. None is a secret.
DEFAULT_ENV_ALLOWLIST: tuple[str, ...] = (
    "PATH", "HOME", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "TZ", "TMPDIR",
    "USER", "LOGNAME", "SHELL", "TERM",
)
# The parent's import path, for the bootstrap (removed from the environment before the module runs,
# so the child's own children never see it).
IMPORT_PATH_ENV = "ACTORS_IMPORT_PATH"
# Where children run: "/" exists everywhere, is not writable by an unprivileged user (a call that
# writes relative paths fails loudly instead of littering a server directory), holds no code, and
# never pins a directory that an operator might want to remove or unmount.
NEUTRAL_CWD = "/"
# The directory holding this package: always importable in a child, or the bootstrap's target
# (e.g. `actors._host_main`) could not be found when the parent found it only through its cwd.
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Run under `python -I -c`: adopt the parent's path first (it comes before the child's own entries,
# so a module resolves as it did in the parent), then run the module as `python -m` would.
_BOOTSTRAP = (
    "import os, runpy, sys\n"
    f"_parent = os.environ.pop({IMPORT_PATH_ENV!r}, '').split(os.pathsep)\n"
    "sys.path[:] = [p for p in dict.fromkeys(_parent + sys.path) if p]\n"
    "del sys.argv[0]\n"
    "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)\n"
)


def python_command(module: str, *args: str, unbuffered: bool = False) -> list[str]:
    """The argv that runs ``python -m module args...`` isolated (see the module docstring).

    The child's environment must come from :func:`python_environment`, which carries the path.
    """
    flags = ["-I", "-u"] if unbuffered else ["-I"]
    return [sys.executable, *flags, "-c", _BOOTSTRAP, module, *args]


def allowed_environment(allowlist: Iterable[str], source: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables of ``source`` (default: this process's environment) named in ``allowlist``."""
    source = os.environ if source is None else source
    return {name: source[name] for name in dict.fromkeys(allowlist) if name in source}


def python_environment(allowlist: Iterable[str] | None = None, extra: Mapping[str, str] | None = None,
                       ) -> dict[str, str]:
    """The environment of a child started with :func:`python_command`.

    Only the ``allowlist`` names (default :data:`DEFAULT_ENV_ALLOWLIST`) are taken from this
    process's environment; ``extra`` is added on top (explicit, so it may hold anything).
    """
    env = allowed_environment(DEFAULT_ENV_ALLOWLIST if allowlist is None else allowlist)
    if extra:
        env.update(extra)
    env[IMPORT_PATH_ENV] = os.pathsep.join(import_path())
    return env


def import_path() -> list[str]:
    """This process's ``sys.path`` for a child, without the working directory.

    Dropped: ``''`` and relative entries (they mean the working directory, and the child's is
    another one), and the working directory itself, which ``python -m`` / ``-c`` put first
    implicitly — unless ``PYTHONPATH`` names it, which is an operator's explicit choice.
    :data:`PACKAGE_ROOT` is always included.
    """
    cwd = _real(os.getcwd())
    explicit = {_real(entry) for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep) if entry}
    entries = []
    for entry in sys.path:
        if not entry or not os.path.isabs(entry):
            continue
        if _real(entry) == cwd and cwd not in explicit:
            continue
        entries.append(entry)
    if PACKAGE_ROOT not in entries:
        entries.append(PACKAGE_ROOT)
    return list(dict.fromkeys(entries))


def _real(path: str) -> str:
    """``path`` made absolute with symlinks resolved, so two spellings of one directory compare equal."""
    return os.path.realpath(os.path.abspath(path))
