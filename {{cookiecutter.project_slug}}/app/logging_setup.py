"""The service's logging: one handler on the root logger, readable lines or JSON lines, on stderr.

Called once from create_app (again in tests: it replaces its own handler, never another's).
Records logged inside a task carry `task_id`, `task_name` and `attempt` (taskflow adds them),
and every record made while serving a request, or inside a task that request enqueued, carries
its `request_id`.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from app.request_id import current_request_id

LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# What a record carries beyond its message, in the order a text line shows it.
CONTEXT_FIELDS = ("request_id", "task_name", "task_id", "attempt")
TEXT_FORMAT = "%(asctime)s %(levelname)-8s [%(name)s] %(message)s"

# Attributes every LogRecord has: anything else on a record came from `extra=` or a filter.
# (uvicorn's `color_message` repeats the message with terminal colours.)
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "color_message"}
# Uvicorn's own loggers have handlers of their own; routed through ours, every line has one format.
_UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


class RequestIdFilter(logging.Filter):
    """Adds the current request id (None outside a request) to each record the handler emits."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = current_request_id()
        return True


class TextFormatter(logging.Formatter):
    """A readable line, with the record's request and task (when it has them) at the end."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        context = [f"{name}={value}" for name in CONTEXT_FIELDS if (value := getattr(record, name, None)) is not None]
        return f"{line} [{' '.join(context)}]" if context else line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the context fields and any extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD and value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(level: str = "INFO", log_format: str = "text", stream: TextIO | None = None) -> logging.Handler:
    """Log to `stream` (stderr) at `level` in `log_format` ("text" or "json"); returns the handler."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"unknown log format {log_format!r}; use one of: {', '.join(LOG_FORMATS)}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(RequestIdFilter())
    handler.service_handler = True  # type: ignore[attr-defined]  # found again on the next call
    root = logging.getLogger()
    for previous in [h for h in root.handlers if getattr(h, "service_handler", False)]:
        root.removeHandler(previous)
        previous.close()
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Alembic narrates every migration check at INFO ("Context impl SQLiteImpl."): at start that
    # would bury the one line a database behind the code stops with. LOG_LEVEL=DEBUG shows it.
    logging.getLogger("alembic").setLevel(logging.DEBUG if root.level <= logging.DEBUG else logging.WARNING)
    for name in _UVICORN_LOGGERS:
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    return handler
