"""Logging for every process (API, workers, CLI): JSON lines in deployment, text in a terminal.

Each record carries the current request id (core.request_context), so a request's log lines —
in the API and in the worker that ran its ingestion — can be found by one id.
"""

from __future__ import annotations

import json
import logging
import logging.config
from datetime import UTC, datetime
from typing import Any

from core.request_context import request_id
from core.settings import LogSettings

# Attributes every LogRecord has; anything else was passed through `extra=` and is kept
# (except uvicorn's color_message, the message again with terminal escapes).
_RECORD_FIELDS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "request_id",
    "taskName",
    "color_message",
}


class RequestIdFilter(logging.Filter):
    """Adds `record.request_id` (the current request's id, or "-")."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, request_id, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None) or request_id.get()
        if rid and rid != "-":
            entry["request_id"] = rid
        entry.update(
            (key, value)
            for key, value in vars(record).items()
            if key not in _RECORD_FIELDS and not key.startswith("_")
        )
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


QUIET_LOGGERS = ("faiss", "sentence_transformers")


def logging_config(settings: LogSettings) -> dict[str, Any]:
    """A dictConfig for the root logger; also uvicorn's log_config, so its logs match."""
    if settings.format == "json":
        formatter: dict[str, Any] = {"()": f"{__name__}.JsonFormatter"}
    else:
        formatter = {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"}
    # uvicorn and celery configure their own handlers; routing them to the root handler gives
    # one format for every line.
    inherited = {"handlers": [], "propagate": True}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": f"{__name__}.RequestIdFilter"}},
        "formatters": {"default": formatter},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "filters": ["request_id"],
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["default"], "level": settings.level.upper()},
        "loggers": {
            **{
                name: dict(inherited)
                for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "celery")
            },
            # Normal start-up chatter that reads like a fault to a newcomer: faiss's loader
            # logs "Could not load library with AVX512 support" on every CPU without it, and
            # sentence-transformers announces each model load. Warnings still show.
            **{name: {"level": "WARNING"} for name in QUIET_LOGGERS},
        },
    }


def configure_logging(settings: LogSettings) -> None:
    logging.config.dictConfig(logging_config(settings))
