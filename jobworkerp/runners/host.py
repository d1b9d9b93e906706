"""Code that runs inside a runner host subprocess: build or reuse a runner, run one job.

The server sends `run_job` (pickled by reference) with the runner's ref, the worker's settings
and the job's args. Static runners (worker.use_static) are kept in this host between jobs,
keyed by worker id and settings, so an updated worker gets a freshly loaded runner.
"""

from __future__ import annotations

from collections import OrderedDict

from jobworkerp.config import ConfigError
from jobworkerp.runners.base import FatalError, Runner, RunnerError, RunnerLoadError
from jobworkerp.runners.output_limit import check_output, output_limit
from jobworkerp.runners.policy import PolicyViolation, RunnerPolicy
from jobworkerp.runners.registry import load_runner_class

# Loaded static runners of this host, least recently used first.
_static_runners: OrderedDict[tuple[int, bytes, str], Runner] = OrderedDict()
MAX_STATIC_RUNNERS = 32


def _new_runner(ref: str, settings: bytes, use_static: bool):
    try:
        runner = load_runner_class(ref)()
        if hasattr(runner, "use_static"):  # e.g. DOCKER keeps one container for a static runner
            runner.use_static = use_static
        runner.load(settings)
    except RunnerError:
        raise
    except Exception as e:
        raise RunnerLoadError(f"cannot load runner {ref}: {type(e).__name__}: {e}") from None
    return runner


def _static_runner(ref: str, settings: bytes, worker_id: int):
    key = (worker_id, settings, ref)
    runner = _static_runners.get(key)
    if runner is not None:
        _static_runners.move_to_end(key)
        runner.cancel()  # reset before reuse, as upstream's pool does
        return runner
    runner = _new_runner(ref, settings, use_static=True)
    _static_runners[key] = runner
    while len(_static_runners) > MAX_STATIC_RUNNERS:
        _, old = _static_runners.popitem(last=False)
        try:
            old.cancel()
        except Exception:
            pass
    return runner


def _check_enabled(ref: str) -> None:
    """Refuse a built-in runner RUNNERS_ENABLED leaves out, even for a worker stored before it
    was disabled (the server refuses such workers and jobs too; this is the last word). Plugins
    are not governed by it, and are not imported here twice."""
    if ref.startswith("plugin:"):
        return
    try:
        name = getattr(load_runner_class(ref), "name", None)
    except Exception:
        return  # a runner that cannot be loaded fails in _new_runner, with its reason
    if not isinstance(name, str):
        return
    try:
        RunnerPolicy.from_environment().check_runner(name)
    except (PolicyViolation, ConfigError) as e:
        raise FatalError(str(e)) from None


def run_job(ref: str, settings: bytes, args: bytes, worker_id: int, use_static: bool) -> list[bytes]:
    """Run one job in this host and return its output items (raises RunnerError subclasses).

    Items that pass JOB_OUTPUT_MAX_BYTES together fail the job here, before they are pickled
    to the server: the runners that read as output comes stop earlier, this covers the others
    (plugins, GRPC_UNARY)."""
    _check_enabled(ref)
    limit = output_limit()
    if use_static:
        runner = _static_runner(ref, settings, worker_id)
    else:
        runner = _new_runner(ref, settings, use_static=False)
    items = runner.run(args)
    check_output(items, limit, f"the output of runner {ref}")
    return items
