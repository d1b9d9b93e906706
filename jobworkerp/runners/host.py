"""Code that runs inside a runner host subprocess: build or reuse a runner, run one job.

The server sends `run_job` (pickled by reference) with the runner's ref, the worker's settings
and the job's args. Static runners (worker.use_static) are kept in this host between jobs,
keyed by worker id and settings, so an updated worker gets a freshly loaded runner.

A shared host (runners whose class says `concurrent = True`, see `runners/base.py`) runs many
jobs at once, each on a thread: a static runner is then lent to one job at a time (a second job
of the same worker meanwhile gets a second instance), and each job's `cancel()` is what the
host calls when the server cancels the job (`actors/hosted.py`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from actors.hosted import on_cancel
from jobworkerp.config import ConfigError
from jobworkerp.runners.base import FatalError, Runner, RunnerError, RunnerLoadError
from jobworkerp.runners.output_limit import check_output, output_limit
from jobworkerp.runners.policy import PolicyViolation, RunnerPolicy
from jobworkerp.runners.registry import load_runner_class

StaticKey = tuple[int, bytes, str]

# Idle loaded static runners of this host by worker, least recently used first; a runner in use
# by a job is out of this table until the job ends.
_static_runners: OrderedDict[StaticKey, list[Runner]] = OrderedDict()
_static_lock = threading.Lock()
MAX_STATIC_RUNNERS = 32  # idle ones kept, all workers together


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


def _borrow_static(key: StaticKey) -> Runner:
    """An idle loaded runner for `key`, or a newly loaded one."""
    with _static_lock:
        idle = _static_runners.get(key)
        runner = idle.pop() if idle else None
        if idle is not None:
            _static_runners.move_to_end(key)
            if not idle:
                del _static_runners[key]
    if runner is not None:
        runner.cancel()  # reset before reuse, as upstream's pool does
        return runner
    _, settings, ref = key
    return _new_runner(ref, settings, use_static=True)


def _give_back_static(key: StaticKey, runner: Runner) -> None:
    """Keep `runner` for the worker's next job; drop the least recently used beyond the limit."""
    evicted: list[Runner] = []
    with _static_lock:
        _static_runners.setdefault(key, []).append(runner)
        _static_runners.move_to_end(key)
        count = sum(len(idle) for idle in _static_runners.values())
        while count > MAX_STATIC_RUNNERS:
            oldest = next(iter(_static_runners))
            idle = _static_runners[oldest]
            evicted.append(idle.pop(0))
            count -= 1
            if not idle:
                del _static_runners[oldest]
    for old in evicted:
        try:
            old.cancel()
        except Exception:
            pass


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
    key: StaticKey = (worker_id, settings, ref)
    runner = _borrow_static(key) if use_static else _new_runner(ref, settings, use_static=False)
    try:
        on_cancel(runner.cancel)  # a shared host's way to stop this job; nothing in an exclusive one
        items = runner.run(args)
    finally:
        if use_static:
            _give_back_static(key, runner)
    check_output(items, limit, f"the output of runner {ref}")
    return items
