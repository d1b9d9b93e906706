"""Logging set-up from LOG_LEVEL, LOG_USE_JSON and LOG_FILE_DIR.

JSON lines (one object per record) are for log collectors; the plain format is for people. With
LOG_FILE_DIR the log also goes to `jobworkerp-<mode>.log` there (stderr keeps getting it).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime

from jobworkerp.config import Config

PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


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
        handlers.append(logging.FileHandler(os.path.join(config.log_file_dir, f"jobworkerp-{mode}.log")))
    for handler in handlers:
        handler.setFormatter(formatter)
    logging.basicConfig(level=level, handlers=handlers, force=True)
