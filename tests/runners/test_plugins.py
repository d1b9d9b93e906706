"""Plugin discovery (in subprocesses), the host-side wrapper, and the registry/seed wiring."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest

from jobworkerp.config import Config
from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp.data import ResultStatus
from jobworkerp.runners import host
from jobworkerp.runners.base import OtherError, RetryableError, RunnerError, RunnerLoadError
from jobworkerp.runners.plugin_discovery import discover
from jobworkerp.runners.plugins import PluginRunner, plugin_factory, proto_messages
from jobworkerp.runners.proto_text import compile_proto, first_message
from jobworkerp.runners.registry import BUILTIN_RUNNERS, RunnerRegistry, load_runner_class
from jobworkerp.usecase.runners import Runners
from tests.runners.conftest import BROKEN_PLUGIN_DIR, HERE, PLUGIN_DIRS, ROOT

pytestmark = pytest.mark.timeout(60)
BUILTIN_NAMES = [s.name for s in BUILTIN_RUNNERS]


def hello_messages():
    from plugins.hello import ARGS_PROTO, SETTINGS_PROTO

    return proto_messages(SETTINGS_PROTO).HelloRunnerSettings, proto_messages(ARGS_PROTO).HelloArgs


def faulty_args(action: str, arg: str = "") -> bytes:
    from tests.runners.plugins.faulty import ARGS_PROTO

    return proto_messages(ARGS_PROTO).FaultyArgs(action=action, arg=arg).SerializeToString()


@pytest.fixture(scope="module")
def found():
    return discover([str(d) for d in PLUGIN_DIRS], reserved_names=BUILTIN_NAMES, include_entry_points=False)


def test_hello_sleep_and_faulty_are_discovered_with_their_protos(found) -> None:
    by_name = {p.name: p for p in found.plugins}
    assert set(by_name) == {"hello", "sleep", "faulty"}
    assert found.problems == []
    hello = by_name["hello"]
    assert "HelloRunnerSettings" in hello.settings_proto and "HelloArgs" in hello.args_proto
    assert hello.settings_message == "hello.HelloRunnerSettings"
    assert hello.ref == f"plugin:{ROOT / 'plugins' / 'hello' / '__init__.py'}:HelloRunner"
    sleep = by_name["sleep"]
    assert "SleepArgs" in sleep.args_proto
    assert sleep.ref == f"plugin:{ROOT / 'plugins' / 'sleep' / '__init__.py'}:SleepRunner"


def test_broken_plugins_are_reported_and_skipped(tmp_path: Path) -> None:
    (tmp_path / "syntax_error.py").write_text("def broken(:\n    pass\n")
    result = discover([str(BROKEN_PLUGIN_DIR), str(tmp_path), str(tmp_path / "missing"), str(ROOT / "plugins")],
                      reserved_names=BUILTIN_NAMES, include_entry_points=False)
    assert [p.name for p in result.plugins] == ["hello", "sleep"]  # the good ones still load
    text = "\n".join(result.problems)
    assert "this plugin is broken on purpose" in text and "raises_on_import.py:3" in text
    assert "crashes_on_import.py: skipped: importing it ended with exit code 9" in text
    assert "does not compile" in text and '"strin" is not defined' in text
    assert "no RUNNERS" in text
    assert "'COMMAND' skipped: the name is already taken by a built-in runner" in text
    assert "SyntaxError" in text
    assert "is not a directory" in text


def test_a_plugin_that_hangs_on_import_is_given_up() -> None:
    # The good plugins must load within the same timeout (~0.3 s on an idle machine): keep it generous.
    result = discover([str(HERE / "hanging_plugins"), str(ROOT / "plugins")], include_entry_points=False, timeout=6)
    assert [p.name for p in result.plugins] == ["hello", "sleep"]
    assert "took longer than 6 s" in result.problems[0]


def test_duplicate_names_keep_the_first(tmp_path: Path) -> None:
    (tmp_path / "again.py").write_text((ROOT / "plugins" / "hello" / "__init__.py").read_text())
    result = discover([str(ROOT / "plugins"), str(tmp_path)], include_entry_points=False)
    assert [p.source for p in result.plugins] == [str(ROOT / "plugins" / "hello"), str(ROOT / "plugins" / "sleep")]
    assert "already taken" in result.problems[0]


def test_hello_runs_through_the_host(found) -> None:
    settings_cls, args_cls = hello_messages()
    hello = next(p for p in found.plugins if p.name == "hello")
    out = host.run_job(hello.ref, settings_cls(name="n").SerializeToString(), args_cls(arg="x").SerializeToString(),
                       worker_id=1, use_static=False)
    assert out == [b"SUCCESS: arg=x"]


def test_plugin_failures_map_to_statuses(found) -> None:
    faulty = next(p for p in found.plugins if p.name == "faulty")
    runner = load_runner_class(faulty.ref)()
    runner.load(b"")
    assert runner.run(faulty_args("ok", "fine")) == [b"fine"]
    with pytest.raises(OtherError, match="ValueError: failed on request") as info:
        runner.run(faulty_args("fail"))
    assert info.value.status == ResultStatus.OTHER_ERROR
    with pytest.raises(RetryableError, match="retry on request"):
        runner.run(faulty_args("retry"))


def test_plugin_load_failure_is_fatal(found) -> None:
    from tests.runners.plugins.faulty import SETTINGS_PROTO

    faulty = next(p for p in found.plugins if p.name == "faulty")
    settings = proto_messages(SETTINGS_PROTO).FaultySettings(fail_load=True).SerializeToString()
    with pytest.raises(RunnerLoadError, match="load failed on request") as info:
        host.run_job(faulty.ref, settings, faulty_args("ok"), worker_id=2, use_static=False)
    assert info.value.status == ResultStatus.FATAL_ERROR


def test_a_plugin_that_fails_to_import_in_the_host_is_fatal(tmp_path: Path) -> None:
    (tmp_path / "gone.py").write_text("raise ImportError('needs a module that is not installed')\n")
    with pytest.raises(RunnerLoadError, match="not installed") as info:
        host.run_job(f"plugin:{tmp_path / 'gone.py'}:Runner", b"", b"", worker_id=3, use_static=False)
    assert info.value.status == ResultStatus.FATAL_ERROR


class _OwnError(RetryableError):
    """A plugin's own error class: the server could not unpickle it, so the wrapper converts it."""


class _Odd:
    name = "odd"

    def load(self, settings: bytes) -> None:
        pass

    def run(self, args: bytes):
        if args == b"own":
            raise _OwnError("custom")
        if args == b"exit":
            raise SystemExit(3)
        if args == b"str":
            return ["text"]
        return 42


def test_wrapper_normalizes_errors_and_items() -> None:
    runner = PluginRunner(_Odd)
    with pytest.raises(RetryableError) as info:
        runner.run(b"own")
    assert type(info.value) is RetryableError and info.value.message == "custom"
    with pytest.raises(OtherError, match="SystemExit"):
        runner.run(b"exit")
    assert runner.run(b"str") == [b"text"]
    with pytest.raises(OtherError, match="returned int"):
        runner.run(b"")
    runner.cancel()  # no cancel() on the plugin: fine


def test_entry_point_style_targets_resolve() -> None:
    factory = plugin_factory("tests.runners.plugins.faulty:FaultyRunner")
    assert factory().name == "faulty"


def test_compile_proto_reports_errors() -> None:
    descriptor_set = compile_proto('syntax = "proto3"; package p; message A { string x = 1; } message B {}')
    assert first_message(descriptor_set) == "p.A"
    with pytest.raises(ValueError, match="plugin.proto"):
        compile_proto("message {")


async def test_registry_and_seed_give_plugins_stable_ids(tmp_path: Path) -> None:
    """Seeding twice against the same database (a restart) gives a plugin the same id."""
    from jobworkerp.storage.sqlite import SqliteRepository

    config = Config(plugins_runner_dir=(str(ROOT / "plugins"),), sqlite_dbname=str(tmp_path / "db.sqlite3"))

    async def seed_once() -> tuple[int, RunnerRegistry]:
        registry = RunnerRegistry.from_config(config)
        repo = SqliteRepository(config.sqlite_dbname)
        await repo.open()
        try:
            await Runners(repo, registry).seed()
            rows = {r.data.name: r for r in await repo.list_runners()}
        finally:
            await repo.aclose()
        return rows["hello"].id.value, registry

    first_id, registry = await seed_once()
    second_id, _ = await seed_once()
    assert first_id == second_id > 1024
    spec = registry.get(first_id)
    assert spec is not None and spec.runner_type == data.RunnerType.PLUGIN and spec.ref is not None
    assert registry.pending_plugins() == []
    settings_cls, _ = hello_messages()
    spec.check_settings(settings_cls(name="ok").SerializeToString())
    with pytest.raises(ValueError):
        spec.check_settings(b"\x0a\xff")


def test_runner_errors_pickle_across_the_host_pipe() -> None:
    import pickle

    for error in (OtherError("a"), RunnerLoadError("b")):
        clone = pickle.loads(pickle.dumps(error))
        assert isinstance(clone, RunnerError) and clone.message == error.message


def test_entry_point_plugins_are_discovered(monkeypatch: pytest.MonkeyPatch) -> None:
    from jobworkerp.runners import plugin_discovery

    def fake_entry_points(group: str):
        assert group == plugin_discovery.ENTRY_POINT_GROUP
        return [metadata.EntryPoint(name="faulty", value="tests.runners.plugins.faulty:FaultyRunner", group=group),
                metadata.EntryPoint(name="gone", value="no_such_module_anywhere:Runner", group=group)]

    monkeypatch.setattr(plugin_discovery.metadata, "entry_points", fake_entry_points)
    result = discover([])
    assert [(p.name, p.target) for p in result.plugins] == [("faulty", "tests.runners.plugins.faulty:FaultyRunner")]
    assert "no_such_module_anywhere" in result.problems[0] and "ModuleNotFoundError" in result.problems[0]
