"""Logging set-up from LOG_LEVEL, LOG_USE_JSON, LOG_FILE_DIR, LOG_USE_STDOUT and TZ_OFFSET_HOURS.

JSON lines (one object per record) are for log collectors; the plain format is for people. With
LOG_FILE_DIR the log also goes to `jobworkerp-<mode>.log` there. The console log goes to stderr,
to stdout with LOG_USE_STDOUT=true (upstream's "output stdout or not"), nowhere with false.
TZ_OFFSET_HOURS puts timestamps in that offset from UTC, written with it (`+09:00`).

LOG_LEVEL applies to this server's own loggers (`jobworkerp.*`, `actors.*`). Libraries (hpack,
h2, grpclib, asyncio, redis, ...) stay at WARNING unless LOG_LEVEL=TRACE: at DEBUG, hpack alone
logged a line per header of every gRPC call, burying the server's own lines.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import cast

from jobworkerp.config import Config
from jobworkerp.joblog import JobFields, job_fields

PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_FILE_MODE = 0o600  # logs name jobs, peers and errors: for the server's owner only
OWN_LOGGERS = ("jobworkerp", "actors")
LIBRARY_LEVEL = logging.WARNING


class PrivateFileHandler(logging.FileHandler):
    """A FileHandler whose file, when it creates it, is readable by its owner only (not the
    umask's usual world-readable mode). An existing file keeps its mode."""

    def _open(self) -> io.TextIOWrapper:
        def opener(path: str, flags: int) -> int:
            return os.open(path, flags, LOG_FILE_MODE)

        return cast("io.TextIOWrapper", open(self.baseFilename, self.mode, encoding=self.encoding, errors=self.errors,  # noqa: SIM115
                    opener=opener))


def _offset(config: Config) -> tzinfo | None:
    if config.tz_offset_hours is None:
        return None
    return timezone(timedelta(minutes=round(config.tz_offset_hours * 60)))  # whole minutes (config.py)


class PlainFormatter(logging.Formatter):
    """The plain format; with an offset, its timestamps are in it and say so."""

    def __init__(self, offset: tzinfo | None) -> None:
        super().__init__(PLAIN_FORMAT)
        self._offset = offset

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 - logging's name
        if self._offset is None:
            return super().formatTime(record, datefmt)  # the machine's local time, as always
        stamp = datetime.fromtimestamp(record.created, self._offset)
        return f"{stamp:%Y-%m-%d %H:%M:%S},{int(record.msecs):03d}{stamp.isoformat()[-6:]}"  # ...,282+09:00


class JsonFormatter(logging.Formatter):
    """One JSON object per record; the job's id, worker id and channel when the record is about a
    job (jobworkerp/joblog.py). Time in UTC unless an offset is given."""

    def __init__(self, offset: tzinfo | None = None) -> None:
        super().__init__()
        self._offset = offset or UTC

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, self._offset).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **job_fields(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def _level(config: Config) -> str:
    return {"TRACE": "DEBUG", "WARN": "WARNING"}.get(config.log_level, config.log_level)


def setup_logging(config: Config, mode: str) -> None:
    offset = _offset(config)
    formatter: logging.Formatter = JsonFormatter(offset) if config.log_use_json else PlainFormatter(offset)
    handlers: list[logging.Handler] = []
    if config.log_use_stdout is not False:
        handlers.append(logging.StreamHandler(sys.stdout if config.log_use_stdout else sys.stderr))
    if config.log_file_dir:
        os.makedirs(config.log_file_dir, exist_ok=True)
        handlers.append(PrivateFileHandler(os.path.join(config.log_file_dir, f"jobworkerp-{mode}.log")))
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(JobFields())
    level = logging.getLevelNamesMapping()[_level(config)]
    # The root logger's level is what libraries get; ours get LOG_LEVEL on their own loggers.
    library_level = level if config.log_level == "TRACE" else max(level, LIBRARY_LEVEL)
    logging.basicConfig(level=library_level, handlers=handlers, force=True)
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(level)
