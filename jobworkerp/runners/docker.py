"""DOCKER runner: run a job in a container through the Docker Engine HTTP API.

Per job (a non-static worker): make sure the image is present (checked locally first, pulled or
imported per the settings only when missing), create a labelled container, start it, wait for it
to exit, read its stdout and stderr, remove it. A non-zero exit is a failure (ERROR_AND_RETRY,
a deliberate difference from upstream) whose output carries the exit code and stderr; on success
the output is stdout. Logs are read as they stream in: stdout past JOB_OUTPUT_MAX_BYTES fails the
job (`output_limit`), and only the last OUTPUT_LIMIT bytes of stderr are kept.

use_static: one long-lived container per runner (per host and worker), created from the settings,
and every job is an `exec` in it.

No container outlives its runner host: every container carries its host's owner labels and a
watchdog removes them when the host dies (`docker_watchdog`). The engine client is `docker_api`,
the settings/args -> engine JSON mapping `docker_config`. This module's `DockerRunner` is the
runner ref stored for DOCKER (`jobworkerp.runners.docker:DockerRunner`).
"""

from __future__ import annotations

import sys
from typing import Any, ClassVar

from jobworkerp.config import ConfigError
from jobworkerp.descriptors import check_message_bytes
from jobworkerp.proto.jobworkerp.data import RunnerType
from jobworkerp.proto.jobworkerp.runner import DockerArgs, DockerRunnerSettings
from jobworkerp.runners.base import OtherError, RetryableError, RunnerError, RunnerLoadError
from jobworkerp.runners.docker_api import (
    Demuxer,
    Engine,
    EngineError,
    EngineUnreachable,
    docker_host_from_env,
    engine_for,
)
from jobworkerp.runners.docker_config import ImageSource, container_config, exec_config, static_container_config
from jobworkerp.runners.docker_watchdog import owner
from jobworkerp.runners.output_limit import CappedBuffer, OutputTooLarge, output_limit
from jobworkerp.runners.policy import PolicyViolation, RunnerPolicy
from jobworkerp.runners.registry import DOCKER_ARGS_PROTO, DOCKER_SETTINGS_PROTO

OUTPUT_LIMIT = 64 * 1024  # stderr kept in a failure's output


def _failure(what: str, exit_code: int, stderr: bytes) -> RetryableError:
    tail = stderr[-OUTPUT_LIMIT:].decode("utf-8", "replace")
    return RetryableError(f"{what} exited with code {exit_code}\n{tail}")


def _demuxer(what: str) -> Demuxer:
    """Where one job's logs go: stdout up to JOB_OUTPUT_MAX_BYTES, the tail of stderr."""
    return Demuxer(CappedBuffer(output_limit(), f"the stdout of {what}"), OUTPUT_LIMIT)


class DockerRunner:
    """The DOCKER runner: one job, one container (or one exec in the worker's container when static)."""

    name: ClassVar[str] = "DOCKER"
    concurrent: ClassVar[bool] = True
    runner_type: ClassVar[RunnerType] = RunnerType.DOCKER
    settings_proto: ClassVar[str] = DOCKER_SETTINGS_PROTO
    args_proto: ClassVar[str] = DOCKER_ARGS_PROTO
    result_proto: ClassVar[str | None] = ""
    # Set by the runner host when it keeps this runner for a use_static worker (see _is_static).
    use_static: bool | None = None

    def __init__(self) -> None:
        self._settings = DockerRunnerSettings()
        self._source = ImageSource(None, None)
        self._engine: Engine | None = None
        self._static_container: str | None = None
        self._running: str | None = None  # the container of the job in progress (for cancel)
        self._policy = RunnerPolicy()  # replaced at load by the host's (runners/policy.py)

    def load(self, settings: bytes) -> None:
        try:
            self._settings = DockerRunnerSettings.parse(settings)
        except Exception as e:
            raise RunnerLoadError(f"runner_settings: not a DockerRunnerSettings message: {e}") from None
        try:
            # Before any pull: the server checked too, but a worker stored before the policy was
            # tightened (or by a process with a looser one) must not get past the runner.
            self._policy = RunnerPolicy.from_environment()
            self._policy.check_docker_settings(self._settings)
        except (PolicyViolation, ConfigError) as e:
            raise RunnerLoadError(f"DOCKER runner: {e}") from None
        try:
            self._source = ImageSource.from_settings(self._settings)
            self._engine = engine_for(docker_host_from_env())
            owner().sweep_once(self._engine)
            if self._source.ref is not None:
                self._ensure_image(self._source.ref, self._source.pull)
        except (ValueError, EngineError, EngineUnreachable) as e:
            raise RunnerLoadError(f"DOCKER runner: {e}") from None

    def _ensure_image(self, ref: str, pull: dict[str, str] | None) -> dict[str, Any]:
        """Inspect the image, pulling (or importing) it only when it is not there already."""
        assert self._engine is not None
        info = self._engine.image(ref)
        if info is None:
            if pull is None:
                pull = {"fromImage": ref}
            self._engine.create_image(pull)
            info = self._engine.image(ref)
            if info is None:
                raise EngineError(404, f"image {ref} is still missing after {pull}")
        return info

    def _is_static(self) -> bool:
        if self.use_static is not None:
            return self.use_static
        # Until the host says so explicitly: a static runner is one the host keeps in its cache.
        host = sys.modules.get("jobworkerp.runners.host")
        cache = getattr(host, "_static_runners", {}) if host is not None else {}
        return any(runner is self for idle in cache.values() for runner in idle)

    def run(self, args: bytes) -> list[bytes]:
        assert self._engine is not None, "load() first"
        try:
            check_message_bytes("jobworkerp.runner.DockerArgs", args)  # betterproto2 alone accepts garbage
            parsed = DockerArgs.parse(args)
        except Exception as e:
            raise OtherError(f"args: not a DockerArgs message: {e}") from None
        try:
            self._policy.check_docker_args(parsed)
        except PolicyViolation as e:
            raise OtherError(str(e)) from None
        try:
            return self._run_static(parsed) if self._is_static() else self._run_once(parsed)
        except EngineUnreachable as e:
            raise RetryableError(str(e)) from None
        except EngineError as e:
            raise OtherError(str(e)) from None

    def _run_once(self, args: DockerArgs) -> list[bytes]:
        engine = self._engine
        assert engine is not None
        image = args.image or self._source.ref
        if not image:
            raise OtherError("args.image: no image (the settings name none either)")
        self._ensure_image(image, self._source.pull if image == self._source.ref else None)
        owner().ensure_watchdog(engine.docker_host)
        config = container_config(self._settings, args, image, owner().labels)
        config.setdefault("HostConfig", {}).update(self._policy.docker_limits())
        container_id = engine.create(config, self._settings.platform)
        self._running = container_id
        what = f"container {container_id[:12]} ({image})"
        logs = _demuxer(what)
        try:
            engine.start(container_id)
            exit_code = engine.wait(container_id)
            engine.logs(container_id, logs)
        finally:
            self._running = None
            engine.remove(container_id)
        if exit_code != 0:
            raise _failure(what, exit_code, logs.stderr)
        return [bytes(logs.stdout.data)]

    def _run_static(self, args: DockerArgs) -> list[bytes]:
        engine = self._engine
        assert engine is not None
        if args.image and args.image != self._source.ref:
            raise OtherError(f"args.image {args.image!r}: a use_static worker runs every job in its own "
                             f"container of {self._source.ref!r}; leave args.image empty")
        container_id = self._container()
        what = f"exec in container {container_id[:12]}"
        logs = _demuxer(what)
        self._running = container_id
        try:
            exit_code = engine.exec(container_id, exec_config(args), logs)
        except OutputTooLarge:
            try:
                self.cancel()  # the exec may still be writing: the next job gets a fresh container
            except RunnerError:
                pass  # the limit is what this job failed of; a stale container is found by the next job
            raise
        finally:
            self._running = None
        if exit_code != 0:
            raise _failure(what, exit_code, logs.stderr)
        return [bytes(logs.stdout.data)]

    def _container(self) -> str:
        """The static container, (re)created if it is missing or has stopped."""
        engine = self._engine
        assert engine is not None
        if self._static_container is not None:
            state = (engine.inspect(self._static_container) or {}).get("State") or {}
            if state.get("Running"):
                return self._static_container
            engine.remove(self._static_container)
            self._static_container = None
        if self._source.ref is None:
            raise OtherError("runner_settings: a use_static DOCKER worker needs from_image (or repo) for its container")
        info = self._ensure_image(self._source.ref, self._source.pull)
        owner().ensure_watchdog(engine.docker_host)
        config = static_container_config(self._settings, self._source.ref, info, owner().labels)
        config.setdefault("HostConfig", {}).update(self._policy.docker_limits())
        container_id = engine.create(config, self._settings.platform)
        try:
            engine.start(container_id)
        except BaseException:
            engine.remove(container_id)
            raise
        self._static_container = container_id
        return container_id

    def cancel(self) -> None:
        """Stop the job in progress: remove its container (a static one is recreated by the next job).

        The host also calls this before reusing a static runner; with nothing running it does nothing.
        """
        container_id, engine = self._running, self._engine
        if container_id is None or engine is None:
            return
        if container_id == self._static_container:
            self._static_container = None
        try:
            engine.remove(container_id)
        except (EngineError, EngineUnreachable) as e:
            raise RunnerError(f"cancel: could not remove container {container_id[:12]}: {e}") from None

