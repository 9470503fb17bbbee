"""Request parsing shared by both emulated APIs: query string + urlencoded or multipart body."""

from __future__ import annotations

import base64
import email.parser
import email.policy
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

MAX_BODY = 10 * 1024 * 1024


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    form: dict[str, str]
    headers: dict[str, str]
    body: bytes
    environ: dict[str, Any]

    @property
    def params(self) -> dict[str, str]:
        """Query string merged with the form body; the body wins on a clash."""
        merged = dict(self.query)
        merged.update(self.form)
        return merged

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def basic_auth(self) -> tuple[str, str] | None:
        value = self.header("authorization")
        if not value or not value[:6].lower() == "basic ":
            return None
        try:
            raw = base64.b64decode(value[6:].strip(), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return None
        if ":" not in raw:
            return None
        user, _, password = raw.partition(":")
        return user, password

    def base_url(self) -> str:
        env = self.environ
        scheme = env.get("wsgi.url_scheme", "http")
        host = env.get("HTTP_HOST")
        if not host:
            host = env.get("SERVER_NAME", "localhost")
            port = env.get("SERVER_PORT")
            if port and port not in ("80", "443"):
                host = f"{host}:{port}"
        return f"{scheme}://{host}"


def _decode_path(environ: dict[str, Any]) -> str:
    raw = environ.get("PATH_INFO", "") or "/"
    try:
        return raw.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return raw


def _parse_multipart(content_type: str, body: bytes) -> dict[str, str]:
    parser = email.parser.BytesParser(policy=email.policy.HTTP)
    msg = parser.parsebytes(b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    if not msg.is_multipart():
        raise BadRequest(400, "malformed multipart body")
    out: dict[str, str] = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            payload = b""
        charset = part.get_content_charset() or "utf-8"
        try:
            out[str(name)] = payload.decode(charset)
        except (LookupError, UnicodeDecodeError) as exc:
            raise BadRequest(400, "undecodable multipart field") from exc
    return out


def parse_request(environ: dict[str, Any]) -> Request:
    method = environ.get("REQUEST_METHOD", "GET").upper()
    path = _decode_path(environ)
    try:
        query = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True, errors="strict"))
    except UnicodeDecodeError as exc:
        raise BadRequest(400, "query string is not UTF-8") from exc
    headers = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            headers[key[5:].replace("_", "-").lower()] = value
    content_type = environ.get("CONTENT_TYPE", "") or ""
    if content_type:
        headers["content-type"] = content_type
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError as exc:
        raise BadRequest(400, "bad Content-Length") from exc
    if length > MAX_BODY:
        raise BadRequest(413, "request body too large")
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    form: dict[str, str] = {}
    ctype = content_type.split(";", 1)[0].strip().lower()
    if body and ctype == "application/x-www-form-urlencoded":
        try:
            form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict"))
        except UnicodeDecodeError as exc:
            raise BadRequest(400, "form body is not UTF-8") from exc
    elif body and ctype == "multipart/form-data":
        form = _parse_multipart(content_type, body)
    return Request(method, path, query, form, headers, body, environ)
