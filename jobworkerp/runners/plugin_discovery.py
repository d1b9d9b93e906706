"""Finding plugin runners at server start, and the subprocess that describes each one.

Where plugins come from:

* PLUGINS_RUNNER_DIR: each `*.py` file and each package directory (with `__init__.py`) directly in
  those directories whose name does not start with `_` or `.`; the module lists its runner classes
  in `RUNNERS`.
* Installed distributions with entry points in the group `jobworkerp.runners`, each naming a runner
  class (or a module with `RUNNERS`).

A `@jobworkerp.function` counts as a runner class too: a module's own decorated functions are
found without `RUNNERS`, and an entry point may name one (`runners/functions.py`).

Plugin code never runs in the server process. Discovery imports each candidate in a short-lived
subprocess (`python -m jobworkerp.runners.plugin_discovery describe KIND TARGET`, the bottom half
of this module, started like a runner host: isolated, in `/`, with only the allowlisted environment,
since the plugin's import-time code is as untrusted as its runs) that reports the runners' names
and proto texts, with the compiled settings and args messages that worker settings and job args
are checked against, so a plugin that raises,
segfaults, exits or hangs on import is logged and skipped without touching the server. Both halves
live here because they are two ends of one JSON report. The contract a plugin class meets, and how
a runner host loads it, are in `jobworkerp.runners.plugins`.
"""

from __future__ import annotations

import base64
import concurrent.futures
import json
import os
import subprocess
import sys
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any, cast

from actors.isolation import NEUTRAL_CWD, python_command, python_environment
from jobworkerp.runners.base import describe_exit
from jobworkerp.runners.functions import function_runner_class, is_function
from jobworkerp.runners.plugins import load_module_from_path
from jobworkerp.runners.proto_text import compile_proto, first_message

ENTRY_POINT_GROUP = "jobworkerp.runners"
REF_PREFIX = "plugin:"  # a runner ref "plugin:<target>" is loaded through jobworkerp.runners.plugins
DISCOVERY_TIMEOUT_S = 10.0  # per candidate: a plugin that hangs on import delays start by this much
_STDERR_TAIL = 2000
MAX_NAME = 128  # runner.name column width (MySQL schema)


# --- in the server: find candidates, describe each in a subprocess, check names -----------------

@dataclass(frozen=True)
class PluginSpec:
    """A discovered plugin runner: what the registry and RunnerService need, without its code."""

    name: str
    settings_proto: str
    args_proto: str
    result_proto: str | None
    target: str  # `/abs/file.py:Class` or `module:Class`, loaded in runner hosts
    source: str  # where it was found, for logs
    settings_message: str | None = None  # full name of the settings message in settings_descriptor
    settings_descriptor: bytes | None = None  # compiled settings_proto (FileDescriptorSet)
    args_message: str | None = None  # full name of the job args message in args_descriptor
    args_descriptor: bytes | None = None  # compiled args_proto (FileDescriptorSet)
    concurrent: bool = False  # the class's `concurrent` (runners/base.py): jobs share one host

    @property
    def ref(self) -> str:
        return REF_PREFIX + self.target


@dataclass(frozen=True)
class Candidate:
    """Something that may hold plugin runners, not imported yet."""

    kind: str  # "path" or "entry_point"
    target: str  # a file path, or an entry point value
    source: str


@dataclass
class Discovery:
    """The outcome of discovery: plugins to register, and problems for the caller to log."""

    plugins: list[PluginSpec]
    problems: list[str]


def dir_candidates(dirs: Iterable[str], problems: list[str]) -> list[Candidate]:
    found = []
    for raw in dirs:
        directory = Path(raw).expanduser().resolve()
        if not directory.is_dir():
            problems.append(f"PLUGINS_RUNNER_DIR entry {raw!r} is not a directory")
            continue
        for entry in sorted(directory.iterdir()):
            if entry.name.startswith(("_", ".")):
                continue
            if entry.is_file() and entry.suffix == ".py":
                found.append(Candidate("path", str(entry), str(entry)))
            elif entry.is_dir() and (entry / "__init__.py").is_file():
                found.append(Candidate("path", str(entry / "__init__.py"), str(entry)))
    return found


def entry_point_candidates() -> list[Candidate]:
    return [
        Candidate("entry_point", ep.value, f"entry point {ep.name} = {ep.value}"
                  + (f" ({ep.dist.name})" if ep.dist is not None else ""))
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)
    ]


def _describe_candidate(candidate: Candidate, timeout: float,
                        env: dict[str, str]) -> tuple[list[PluginSpec], list[str]]:
    """Import one candidate in a subprocess and turn its report into specs (or problems)."""
    command = python_command("jobworkerp.runners.plugin_discovery", "describe", candidate.kind, candidate.target)
    try:
        proc = subprocess.run(command, capture_output=True, timeout=timeout, env=env, cwd=NEUTRAL_CWD,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return [], [f"plugin {candidate.source}: skipped: importing it took longer than {timeout:g} s"]
    stderr = proc.stderr.decode("utf-8", "replace").strip()[-_STDERR_TAIL:]
    if proc.returncode != 0:
        details = f"\n{stderr}" if stderr else ""
        ended = describe_exit(proc.returncode)
        return [], [f"plugin {candidate.source}: skipped: importing it ended with {ended}{details}"]
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        return [], [f"plugin {candidate.source}: skipped: unreadable report {proc.stdout[:200]!r}\n{stderr}"]
    problems = [f"plugin {candidate.source}: skipped: {p}" for p in report.get("problems", [])]
    specs = []
    for r in report.get("runners", []):
        specs.append(PluginSpec(
            name=r["name"], settings_proto=r["settings_proto"], args_proto=r["args_proto"],
            result_proto=r["result_proto"], target=r["target"], source=candidate.source,
            settings_message=r.get("settings_message"), settings_descriptor=_descriptor(r, "settings_descriptor"),
            args_message=r.get("args_message"), args_descriptor=_descriptor(r, "args_descriptor"),
            concurrent=r.get("concurrent") is True,
        ))
    return specs, problems


def _descriptor(report_entry: dict[str, Any], key: str) -> bytes | None:
    """A compiled descriptor set from a report entry (base64 in the JSON), None when the proto was empty."""
    encoded = report_entry.get(key)
    return base64.b64decode(encoded) if encoded else None


def discover(dirs: Sequence[str], *, reserved_names: Iterable[str] = (), include_entry_points: bool = True,
             timeout: float = DISCOVERY_TIMEOUT_S, env_allowlist: Iterable[str] | None = None) -> Discovery:
    """Find, describe and check every plugin; problems are returned (and logged by the caller).

    The describing subprocesses get only the ``env_allowlist`` variables (default: the generic
    :data:`actors.isolation.DEFAULT_ENV_ALLOWLIST`), as runner hosts do.
    """
    problems: list[str] = []
    candidates = dir_candidates(dirs, problems)
    if include_entry_points:
        try:
            candidates += entry_point_candidates()
        except Exception as e:  # broken distribution metadata must not stop the server
            problems.append(f"reading entry points of group {ENTRY_POINT_GROUP!r} failed: {e}")
    results: list[tuple[list[PluginSpec], list[str]]] = []
    if candidates:
        workers = min(len(candidates), os.cpu_count() or 1)
        env = python_environment(env_allowlist)
        with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="plugin-discovery") as pool:
            results = list(pool.map(lambda c: _describe_candidate(c, timeout, env), candidates))
    taken = {name: "a built-in runner" for name in reserved_names}
    plugins = []
    for specs, found_problems in results:
        problems += found_problems
        for spec in specs:
            if spec.name in taken:
                problems.append(f"plugin {spec.source}: runner {spec.name!r} skipped: the name is already "
                                f"taken by {taken[spec.name]}")
                continue
            taken[spec.name] = spec.source
            plugins.append(spec)
    return Discovery(plugins, problems)


# --- in the discovery subprocess: import one candidate, report its runners ----------------------

def _runner_classes(obj: Any) -> list[Any]:
    """Runner classes, and `@jobworkerp.function`s (made classes one by one in `describe`)."""
    if isinstance(obj, type) or is_function(obj):
        return [obj]
    if isinstance(obj, ModuleType):
        runners = getattr(obj, "RUNNERS", None)
        functions = [v for v in vars(obj).values() if is_function(v) and v.__module__ == obj.__name__]
        if runners is None and not functions:
            raise ValueError("the module has no RUNNERS list naming its runner classes, "
                             "and no @jobworkerp.function")
        return list(runners or []) + functions
    if isinstance(obj, (list, tuple)):
        return list(obj)
    raise ValueError(f"expected a runner class, a module with RUNNERS or a list, got {type(obj).__name__}")


def _check_proto(text: Any, what: str, name: str) -> tuple[str | None, bytes | None]:
    """(first message, descriptor set) of a proto text attribute; ("", None) pairs for an empty one."""
    if not isinstance(text, str):
        raise ValueError(f"{what} must be a str of .proto text, got {type(text).__name__}")
    if not text.strip():
        return None, None
    try:
        descriptor_set = compile_proto(text)
    except ValueError as e:
        raise ValueError(f"{what} of runner {name!r} does not compile: {e}") from None
    return first_message(descriptor_set), descriptor_set


def describe_class(cls: Any, target: str) -> dict[str, Any]:
    """Check one runner class against the contract; its report entry (raises ValueError with the reason)."""
    if not isinstance(cls, type):
        raise ValueError(f"{cls!r} is not a class")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME or not name.isprintable():
        raise ValueError(f"{cls.__qualname__}.name must be a printable str of 1 to {MAX_NAME} characters")
    for method in ("load", "run"):
        if not callable(getattr(cls, method, None)):
            raise ValueError(f"runner {name!r} ({cls.__qualname__}) has no {method}() method")
    settings_message, settings_descriptor = _check_proto(getattr(cls, "settings_proto", None), "settings_proto", name)
    args_message, args_descriptor = _check_proto(getattr(cls, "args_proto", None), "args_proto", name)
    result_proto = getattr(cls, "result_proto", None)
    if result_proto is not None:
        _check_proto(result_proto, "result_proto", name)
    concurrent = getattr(cls, "concurrent", False)
    if not isinstance(concurrent, bool):
        raise ValueError(f"{cls.__qualname__}.concurrent must be True or False, got {concurrent!r}")
    return {
        "name": name,
        "settings_proto": cast(Any, cls).settings_proto,  # checked above to be str
        "args_proto": cast(Any, cls).args_proto,
        "result_proto": result_proto,
        "target": target,
        "settings_message": settings_message,
        "settings_descriptor": _encoded(settings_descriptor),
        "args_message": args_message,
        "args_descriptor": _encoded(args_descriptor),
        "concurrent": concurrent,
    }


def _encoded(descriptor_set: bytes | None) -> str | None:
    """A compiled descriptor set as JSON can carry it (base64); None stays None."""
    return base64.b64encode(descriptor_set).decode() if descriptor_set else None


def describe(kind: str, target: str) -> dict[str, Any]:
    """Import one candidate and describe its runners (runs in the discovery subprocess)."""
    if kind == "path":
        obj: Any = load_module_from_path(Path(target))
        location = target
    else:
        obj = metadata.EntryPoint(name="plugin", value=target, group=ENTRY_POINT_GROUP).load()
        location = ""
    try:
        classes = _runner_classes(obj)
    except ValueError as e:
        return {"runners": [], "problems": [str(e)]}
    runners, problems = [], []
    for cls in classes:
        try:
            if is_function(cls):
                cls = function_runner_class(cls)  # SchemaError (a ValueError) names the bad hint
            qualname = getattr(cls, "__qualname__", repr(cls))
            runner_target = f"{location or cls.__module__}:{qualname}"
            runners.append(describe_class(cls, runner_target))
        except ValueError as e:
            problems.append(str(e))
    return {"runners": runners, "problems": problems}


def _main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] != "describe":
        print("usage: python -m jobworkerp.runners.plugin_discovery describe path|entry_point TARGET",
              file=sys.stderr)
        return 2
    # The report goes to the real stdout; anything the plugin prints goes to stderr.
    report_fd = os.dup(1)
    os.dup2(2, 1)
    import faulthandler

    faulthandler.enable()
    try:
        report = describe(argv[1], argv[2])
    except BaseException as e:  # noqa: BLE001 - whatever the import does is the plugin's problem to report
        frames = traceback.extract_tb(e.__traceback__)
        where = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
        report = {"runners": [], "problems": [f"import failed: {type(e).__name__}: {e}{where}"]}
    with os.fdopen(report_fd, "w") as out:
        json.dump(report, out)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
