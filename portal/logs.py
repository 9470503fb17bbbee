"""Structured logs with secrets taken out before anything is written.

Every process (web, worker, beat) writes one JSON object a line through ``JsonFormatter``.
Secrets are redacted from the values (the message, every extra field, the exception text)
before the line is encoded, so an escaped quote or backslash in a value can never break the
line or let part of a secret through.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

_REDACTED = "[REDACTED]"
_SECRET_NAMES = (
    r"api[_-]?key|api[_-]?token|token|password|passwd|secret|private[_-]?key|account_password|sessionid|csrftoken"
)
# A secret name, its quotes (escaped or not) and the separator: `password=`, `"password": `.
_SECRET_KEY = rf"(?i)(\\?[\"']?\b(?:{_SECRET_NAMES})\\?[\"']?\s*[:=]\s*)"
_PATTERNS = [
    # PEM private keys, whole block.
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S), _REDACTED),
    # Authorization headers, bearer and basic.
    (re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)(bearer|basic)?\s*[^\s\"',}]+"), r"\1" + _REDACTED),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 " + _REDACTED),
    # JWTs anywhere.
    (re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), _REDACTED),
    # Quoted values of secret-looking names, up to the closing quote (escaped quotes inside
    # belong to the value): "password": "a\"b", password='a b', and the same inside a JSON
    # document that was itself quoted: {\"password\": \"a\\\"b\"}.
    (re.compile(_SECRET_KEY + r'\\"(?:\\\\\\"|\\\\\\\\|\\[^"\\]|[^\\])*?\\"'), r'\1\\"' + _REDACTED + r'\\"'),
    (re.compile(_SECRET_KEY + r'"(?:[^"\\]|\\.)*"'), r'\1"' + _REDACTED + '"'),
    (re.compile(_SECRET_KEY + r"'(?:[^'\\]|\\.)*'"), r"\1'" + _REDACTED + "'"),
    # Bare values: key=value, key: value (left alone once redacted above).
    (re.compile(_SECRET_KEY + r"(?!\\?[\"']?\[REDACTED\])(\\?[\"']?)([^\s\"'&,;}]+)"), r"\1\2" + _REDACTED),
]
# An extra field whose name says it holds a secret is redacted whole.
_SECRET_FIELD = re.compile(rf"(?i)(?:{_SECRET_NAMES}|authorization|credential)")

# The attributes every LogRecord has; anything else on a record came as an extra field.
_RECORD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "request_id",
}


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_value(value: Any, name: str = "") -> Any:
    """A copy of ``value`` ready for a log line: secrets out of every string in it, and the
    whole value out under a secret-looking name."""
    if name and _SECRET_FIELD.search(name) and value not in (None, ""):
        return _REDACTED
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {str(key): redact_value(item, str(key)) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value(item) for item in value]
    return redact(str(value))


class RedactSecretsFilter(logging.Filter):
    """Redacts the message and the traceback on the record itself, for any handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg = redact(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class RequestContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        request_id = getattr(record, "request_id", "")
        if request_id:
            entry["request_id"] = redact_value(request_id)
        for name, value in record.__dict__.items():
            if name not in _RECORD_ATTRIBUTES and name not in entry:
                entry[name] = redact_value(value, name)
        exception = record.exc_text or (self.formatException(record.exc_info) if record.exc_info else "")
        if exception:
            entry["exception"] = redact(exception)
        if record.stack_info:
            entry["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(entry, default=str)
