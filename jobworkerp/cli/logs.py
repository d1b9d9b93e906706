"""Logging set-up from LOG_LEVEL, LOG_USE_JSON and LOG_FILE_DIR.

JSON lines (one object per record) are for log collectors; the plain format is for people. With
LOG_FILE_DIR the log also goes to `jobworkerp-<mode>.log` there (stderr keeps getting it).
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import cast

from jobworkerp.config import Config

PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_FILE_MODE = 0o600  # logs name jobs, peers and errors: for the server's owner only


class PrivateFileHandler(logging.FileHandler):
    """A FileHandler whose file, when it creates it, is readable by its owner only (not the
    umask's usual world-readable mode). An existing file keeps its mode."""

    def _open(self) -> io.TextIOWrapper:
        def opener(path: str, flags: int) -> int:
            return os.open(path, flags, LOG_FILE_MODE)

        return cast("io.TextIOWrapper", open(self.baseFilename, self.mode, encoding=self.encoding, errors=self.errors,  # noqa: SIM115
                    opener=opener))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(config: Config, mode: str) -> None:
    level = {"TRACE": "DEBUG", "WARN": "WARNING"}.get(config.log_level, config.log_level)
    formatter: logging.Formatter = JsonFormatter() if config.log_use_json else logging.Formatter(PLAIN_FORMAT)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if config.log_file_dir:
        os.makedirs(config.log_file_dir, exist_ok=True)
        handlers.append(PrivateFileHandler(os.path.join(config.log_file_dir, f"jobworkerp-{mode}.log")))
    for handler in handlers:
        handler.setFormatter(formatter)
    logging.basicConfig(level=level, handlers=handlers, force=True)
