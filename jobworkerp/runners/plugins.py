"""Python runner plugins: discovery at server start, loading inside runner hosts, and a proto helper.

The contract (DESIGN.md: plugins are Python). A plugin runner is a class with

    name: str                    unique runner name (listed by RunnerService)
    settings_proto: str          .proto text; its first message is the worker settings ("" = none)
    args_proto: str              .proto text; its first message is the job args ("" = raw bytes)
    result_proto: str | None     optional; .proto text of the output items (None/"" = raw bytes)
    load(settings: bytes)        parse settings, prepare; failures are FATAL_ERROR
    run(args: bytes) -> list[bytes]
    cancel()                     optional: reset before a static runner is reused

raising `jobworkerp.runners.base` errors to choose a job's ResultStatus (anything else is OTHER_ERROR).
Where plugins come from:

* PLUGINS_RUNNER_DIR: each `*.py` file and each package directory (with `__init__.py`) directly in
  those directories whose name does not start with `_` or `.`; the module lists its runner classes
  in `RUNNERS`.
* Installed distributions with entry points in the group `jobworkerp.runners`, each naming a runner
  class (or a module with `RUNNERS`).

Plugin code never runs in the server process. Discovery imports each candidate in a short-lived
subprocess that reports the runners' names and proto texts (and compiles the protos), so a plugin
that raises, segfaults, exits or hangs on import is logged and skipped without touching the server.
Runner hosts import a plugin only when one of its jobs runs. A directory plugin is loaded from its
file path (recorded in its ref) under a private module name, so it needs no sys.path entry and
cannot shadow or be shadowed by another module of the same name.
"""

from __future__ import annotations

import base64
import concurrent.futures
import functools
import hashlib
import importlib
import importlib.util
import json
import logging
import os
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

from jobworkerp.runners.base import (
    AbortError,
    FatalError,
    OtherError,
    RetryableError,
    RunnerError,
    RunnerLoadError,
    describe_exit,
)

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "jobworkerp.runners"
REF_PREFIX = "plugin:"  # a runner ref "plugin:<target>" is loaded through this module
DISCOVERY_TIMEOUT_S = 10.0  # per candidate: a plugin that hangs on import delays start by this much
_STDERR_TAIL = 2000
MAX_NAME = 128  # runner.name column width (MySQL schema)


# --- compiling .proto text -----------------------------------------------------------------------

def compile_proto(text: str, file_name: str = "plugin.proto") -> bytes:
    """Compile .proto text with protoc (grpcio-tools, in process); a serialized FileDescriptorSet.

    Raises ValueError with protoc's message when the text does not compile.
    """
    from grpc_tools import protoc

    include = str(Path(protoc.__file__).parent / "_proto")  # well-known types (google/protobuf/*.proto)
    with tempfile.TemporaryDirectory(prefix="jobworkerp-proto-") as tmp:
        source = Path(tmp, file_name)
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_text(text, encoding="utf-8")
        out = Path(tmp, "out.binpb")
        errors = Path(tmp, "errors.txt")
        # protoc reports on fd 2 from C++; capture it for the message.
        saved = os.dup(2)
        try:
            with open(errors, "wb") as sink:
                os.dup2(sink.fileno(), 2)
                rc = protoc.main(["protoc", f"-I{tmp}", f"-I{include}", f"--descriptor_set_out={out}",
                                  "--include_imports", file_name])
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        if rc != 0:
            message = errors.read_text(errors="replace").strip().replace(f"{tmp}{os.sep}", "")
            raise ValueError(message or f"protoc exited with {rc}")
        return out.read_bytes()


def first_message(descriptor_set: bytes, file_name: str = "plugin.proto") -> str | None:
    """Full name of the first message declared in `file_name` (the settings/args type by convention)."""
    from google.protobuf import descriptor_pb2

    for file_proto in descriptor_pb2.FileDescriptorSet.FromString(descriptor_set).file:
        if file_proto.name == file_name and file_proto.message_type:
            prefix = f"{file_proto.package}." if file_proto.package else ""
            return prefix + file_proto.message_type[0].name
    return None


@functools.cache
def _message_classes(descriptor_set: bytes) -> dict[str, type]:
    from google.protobuf import descriptor_pb2, message_factory
    from google.protobuf.descriptor_pool import DescriptorPool

    pool = DescriptorPool()
    classes: dict[str, type] = {}
    for file_proto in descriptor_pb2.FileDescriptorSet.FromString(descriptor_set).file:
        pool.Add(file_proto)
    for file_proto in descriptor_pb2.FileDescriptorSet.FromString(descriptor_set).file:
        prefix = f"{file_proto.package}." if file_proto.package else ""
        for message in file_proto.message_type:
            classes[prefix + message.name] = message_factory.GetMessageClass(
                pool.FindMessageTypeByName(prefix + message.name))
    return classes


def message_class(descriptor_set: bytes, full_name: str) -> type:
    """The google.protobuf message class `full_name` of a compiled descriptor set."""
    return _message_classes(descriptor_set)[full_name]


@functools.cache
def proto_messages(text: str) -> SimpleNamespace:
    """Message classes (google.protobuf) for .proto text, by short name: for plugins to parse their bytes.

    `proto_messages(SETTINGS_PROTO).HelloRunnerSettings.FromString(settings)`.
    """
    descriptor_set = compile_proto(text)
    return SimpleNamespace(**{name.rpartition(".")[2]: cls for name, cls in _message_classes(descriptor_set).items()})


# --- loading a plugin class (runner hosts and the discovery subprocess) --------------------------

def _module_name(path: Path) -> str:
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    stem = path.parent.name if path.name == "__init__.py" else path.stem
    safe = "".join(c if c.isalnum() else "_" for c in stem)
    return f"jobworkerp_plugin_{safe}_{digest}"


def load_module_from_path(path: Path) -> ModuleType:
    """Import a plugin file (or a package's `__init__.py`) under a private name, once per process."""
    name = _module_name(path)
    module = sys.modules.get(name)
    if module is not None:
        return module
    package_dirs = [str(path.parent)] if path.name == "__init__.py" else None
    spec = importlib.util.spec_from_file_location(name, path, submodule_search_locations=package_dirs)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _attribute(obj: Any, qualname: str) -> Any:
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def resolve_target(target: str) -> Any:
    """`/abs/file.py:Qual.Name` (directory plugin) or `module:Qual.Name` (installed) -> the object."""
    location, _, qualname = target.rpartition(":")
    if not location or not qualname:
        raise ImportError(f"bad plugin target {target!r}: expected PATH_OR_MODULE:NAME")
    if os.path.isabs(location):
        module = load_module_from_path(Path(location))
    else:
        module = importlib.import_module(location)
    return _attribute(module, qualname)


def plugin_factory(target: str) -> Callable[[], PluginRunner]:
    """What the runner host instantiates for a plugin ref: the plugin wrapped in PluginRunner."""
    cls = resolve_target(target)
    return functools.partial(PluginRunner, cls)


_PORTABLE_ERRORS: tuple[type[RunnerError], ...] = (
    RunnerLoadError, FatalError, RetryableError, AbortError, OtherError, RunnerError,
)


def _portable(error: RunnerError) -> RunnerError:
    """The same status and message as one of our own classes: the server cannot unpickle a plugin's class."""
    if type(error).__module__ == RunnerError.__module__:
        return error
    for cls in _PORTABLE_ERRORS:
        if isinstance(error, cls):
            return cls(error.message if hasattr(error, "message") else str(error))
    return OtherError(str(error))


def _items(name: str, value: Any) -> list[bytes]:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return [bytes(value)]
    if isinstance(value, (list, tuple)):
        items = []
        for item in value:
            if isinstance(item, (bytes, bytearray, memoryview)):
                items.append(bytes(item))
            elif isinstance(item, str):
                items.append(item.encode("utf-8"))
            else:
                raise OtherError(f"plugin {name}: run() returned a {type(item).__name__} item; items must be bytes")
        return items
    raise OtherError(f"plugin {name}: run() returned {type(value).__name__}; expected a list of bytes")


class PluginRunner:
    """A plugin's runner as the host sees it: plugin failures become job results, never host trouble.

    Exceptions a plugin raises are turned into our picklable RunnerError classes (a plugin's own
    exception class may not exist in the server), load failures into FATAL_ERROR and anything
    unexpected during a run into OTHER_ERROR (spec §5.6: plugin errors), with the reason.
    """

    def __init__(self, plugin_class: type) -> None:
        self.name = str(getattr(plugin_class, "name", plugin_class.__name__))
        self._plugin = plugin_class()

    def load(self, settings: bytes) -> None:
        try:
            self._plugin.load(settings)
        except RunnerError as e:
            raise _portable(e) from None
        except (Exception, SystemExit) as e:
            raise RunnerLoadError(f"plugin {self.name}: load failed: {type(e).__name__}: {e}") from None

    def run(self, args: bytes) -> list[bytes]:
        try:
            value = self._plugin.run(args)
        except RunnerError as e:
            raise _portable(e) from None
        except (Exception, SystemExit) as e:
            raise OtherError(f"plugin {self.name}: {type(e).__name__}: {e}") from None
        return _items(self.name, value)

    def cancel(self) -> None:
        cancel = getattr(self._plugin, "cancel", None)
        if cancel is None:
            return
        try:
            cancel()
        except Exception:
            log.exception("plugin %s: cancel() failed", self.name)


# --- discovery -----------------------------------------------------------------------------------

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

    @property
    def ref(self) -> str:
        return REF_PREFIX + self.target


@dataclass(frozen=True)
class Candidate:
    kind: str  # "path" or "entry_point"
    target: str  # a file path, or an entry point value
    source: str


@dataclass
class Discovery:
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




def _describe_candidate(candidate: Candidate, timeout: float) -> tuple[list[PluginSpec], list[str]]:
    """Import one candidate in a subprocess and turn its report into specs (or problems)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(os.path.abspath(p or os.curdir) for p in sys.path)}
    command = [sys.executable, "-m", "jobworkerp.runners.plugins", "describe", candidate.kind, candidate.target]
    try:
        proc = subprocess.run(command, capture_output=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)
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
        descriptor = base64.b64decode(r["settings_descriptor"]) if r.get("settings_descriptor") else None
        specs.append(PluginSpec(
            name=r["name"], settings_proto=r["settings_proto"], args_proto=r["args_proto"],
            result_proto=r["result_proto"], target=r["target"], source=candidate.source,
            settings_message=r.get("settings_message"), settings_descriptor=descriptor,
        ))
    return specs, problems


def discover(dirs: Sequence[str], *, reserved_names: Iterable[str] = (), include_entry_points: bool = True,
             timeout: float = DISCOVERY_TIMEOUT_S) -> Discovery:
    """Find, describe and check every plugin; problems are returned (and logged by the caller)."""
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
        with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="plugin-discovery") as pool:
            results = list(pool.map(lambda c: _describe_candidate(c, timeout), candidates))
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


# --- the discovery subprocess ---------------------------------------------------------------------

def _runner_classes(obj: Any) -> list[type]:
    if isinstance(obj, type):
        return [obj]
    if isinstance(obj, ModuleType):
        runners = getattr(obj, "RUNNERS", None)
        if runners is None:
            raise ValueError("the module has no RUNNERS list naming its runner classes")
        return list(runners)
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
    if not isinstance(cls, type):
        raise ValueError(f"{cls!r} is not a class")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME or not name.isprintable():
        raise ValueError(f"{cls.__qualname__}.name must be a printable str of 1 to {MAX_NAME} characters")
    for method in ("load", "run"):
        if not callable(getattr(cls, method, None)):
            raise ValueError(f"runner {name!r} ({cls.__qualname__}) has no {method}() method")
    settings_message, settings_descriptor = _check_proto(getattr(cls, "settings_proto", None), "settings_proto", name)
    _check_proto(getattr(cls, "args_proto", None), "args_proto", name)
    result_proto = getattr(cls, "result_proto", None)
    if result_proto is not None:
        _check_proto(result_proto, "result_proto", name)
    return {
        "name": name,
        "settings_proto": cls.settings_proto,
        "args_proto": cls.args_proto,
        "result_proto": result_proto,
        "target": target,
        "settings_message": settings_message,
        "settings_descriptor": base64.b64encode(settings_descriptor).decode() if settings_descriptor else None,
    }


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
            qualname = getattr(cls, "__qualname__", repr(cls))
            runner_target = f"{location or cls.__module__}:{qualname}"
            runners.append(describe_class(cls, runner_target))
        except ValueError as e:
            problems.append(str(e))
    return {"runners": runners, "problems": problems}


def _main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] != "describe":
        print("usage: python -m jobworkerp.runners.plugins describe path|entry_point TARGET", file=sys.stderr)
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
