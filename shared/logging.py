"""Structured JSON logs with correlation ids, and no secrets in them.

structlog renders every record (its own and the standard library's) as one JSON line.
Correlation and causation ids are bound per request or per consumed message with
`bind_context`, so one id follows an event from the HTTP request through the broker to
the webhook. Anything that looks like a credential is masked before it is written.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog

from shared import config

_SECRET_PATTERNS = [
    re.compile(r"nck_[A-Za-z0-9_\-]{8,}"),  # API keys
    re.compile(r"whsec_[A-Za-z0-9+/=]{8,}"),  # webhook secrets
    re.compile(r"eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),  # JWTs
    re.compile(r"(?i)(bearer\s+)[^\s\"']+"),
]
_SECRET_KEYS = {"api_key", "secret", "token", "authorization", "password", "key_hash"}


# What every secret pattern above begins with: one search of this per logged string is
# what most lines cost (they hold no secret), instead of four substitutions.
_SUSPECT = re.compile(r"nck_|whsec_|eyJ|(?i:bearer)")


def redact(text: str) -> str:
    if _SUSPECT.search(text) is None:
        return text
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + "[redacted]", text)
    return text


def _redact_processor(_logger: Any, _name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    for key, value in list(event_dict.items()):
        if key.lower() in _SECRET_KEYS:
            event_dict[key] = "[redacted]"
        elif isinstance(value, str):
            event_dict[key] = redact(value)
    return event_dict


def _add_pid(_logger: Any, _name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    # Which of a service's processes (gunicorn workers, worker replicas) wrote the line.
    event_dict.setdefault("pid", os.getpid())
    return event_dict


_configured = False
_shared: list[Any] = []

#: ``json`` or ``console``; unset: console on a terminal, JSON anywhere else.
FORMAT_VARIABLE = "NOCONTACT_LOG_FORMAT"


def configure(service: str) -> None:
    """Route all logging (structlog's and the standard library's) to stderr, rendered as
    `formatter` says; idempotent: the first call of a process names its service."""
    global _configured
    if _configured:
        return
    _configured = True

    def add_service(_logger: Any, _name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        # A processor, not a context variable: threads (gunicorn's gthread workers, worker
        # parts) start with an empty context and would log without it.
        event_dict.setdefault("service", service)
        return event_dict

    _shared[:] = [
        structlog.contextvars.merge_contextvars,
        add_service,
        structlog.stdlib.add_logger_name,
        _add_pid,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact_processor,
    ]
    structlog.configure(
        processors=[*_shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(sys.stderr))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(log_level())
    for noisy in ("amqp", "kombu", "urllib3", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@config.setting
def log_level() -> str:
    """NOCONTACT_LOG_LEVEL (INFO): a level's name, any case."""
    raw = os.environ.get("NOCONTACT_LOG_LEVEL", "")
    level = raw.strip().upper() or "INFO"
    if not isinstance(logging.getLevelName(level), int):
        raise config.SettingError(f"NOCONTACT_LOG_LEVEL={raw!r} must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
    return level


def console_wanted(stream: Any) -> bool:
    """Whether lines written to `stream` are for a person: NOCONTACT_LOG_FORMAT decides
    (json or console); unset, a terminal gets the console format and anything else (a
    file, a pipe, a container's log driver) JSON."""
    chosen = os.environ.get(FORMAT_VARIABLE, "").strip().lower()
    if chosen in ("json", "console"):
        return chosen == "console"
    if chosen:
        raise config.SettingError(f"{FORMAT_VARIABLE}={chosen!r} must be json or console")
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def formatter(stream: Any) -> logging.Formatter:
    """The formatter of a handler writing to `stream` (call `configure` first): one JSON
    object per line, or a readable line for a terminal; masked secrets either way. Also
    what gunicorn's own loggers get (infra/gunicorn.conf.py)."""
    if console_wanted(stream):
        isatty = getattr(stream, "isatty", None)
        renderer: Any = structlog.dev.ConsoleRenderer(colors=bool(isatty and isatty()))
    else:
        renderer = structlog.processors.JSONRenderer()
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_shared, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # A traceback as plain text, masked like the rest (a pretty one would show
            # the frames' local variables, credentials included).
            structlog.processors.format_exc_info,
            _redact_processor,
            renderer,
        ],
    )


@contextmanager
def bind_context(**values: Any) -> Iterator[None]:
    tokens = structlog.contextvars.bind_contextvars(**values)
    try:
        yield
    finally:
        structlog.contextvars.reset_contextvars(**tokens)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
