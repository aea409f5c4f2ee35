"""One-line JSON logs for the guardit server (GUARD-IT, arXiv 2605.12765), with the request id of the
current request on every line. Only this module configures handlers; everyone else uses
``logging.getLogger(__name__)``.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from service.settings import Settings

#: The id of the request being handled in this context (set by the request middleware).
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("guardit_request_id", default=None)

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is emitted.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName", "color_message"}


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", "request_id", ...extra}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or REQUEST_ID.get()
        if request_id:
            out["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in out and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def configure_logging(settings: Settings) -> None:
    """Send every log record to stderr as JSON at ``settings.log_level``; call once per process.

    Uvicorn's own loggers are routed through the same handler (its access log is replaced by the
    request middleware's, which carries the request id).
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    logging.captureWarnings(True)  # library warnings become JSON lines too
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    # Library chatter (HTTP clients, model loading) stays at WARNING unless asked for DEBUG.
    if root.level > logging.DEBUG:
        for noisy in ("httpx", "httpcore", "urllib3", "filelock", "sentence_transformers", "transformers"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
