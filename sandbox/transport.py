"""In-process httpx transport for :class:`sandbox.app.SandboxApp`.

Requests run on a small worker pool so that the request's read timeout is honoured like over
a socket: when the app (e.g. an injected latency) takes longer than ``timeout.read``, the
caller gets ``httpx.ReadTimeout`` while the request goes on (and may apply) in the background.
A dropped connection becomes ``httpx.RemoteProtocolError``, as httpx raises over a socket.
"""

from __future__ import annotations

import concurrent.futures
import io
from typing import Any
from urllib.parse import unquote_to_bytes

import httpx

from .app import SandboxApp
from .faults import DropConnection


class SandboxTransport(httpx.BaseTransport):
    def __init__(self, app: SandboxApp, *, max_workers: int = 8) -> None:
        self.app = app
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="sandbox")

    def _environ(self, request: httpx.Request, body: bytes) -> dict[str, Any]:
        url = request.url
        raw_path, _, raw_query = url.raw_path.partition(b"?")
        host = url.host or "sandbox"
        port = url.port or (443 if url.scheme == "https" else 80)
        environ: dict[str, Any] = {
            "REQUEST_METHOD": request.method,
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote_to_bytes(raw_path).decode("latin-1"),
            "QUERY_STRING": raw_query.decode("latin-1"),
            "SERVER_NAME": host,
            "SERVER_PORT": str(port),
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": url.scheme or "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": io.StringIO(),
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            "CONTENT_LENGTH": str(len(body)),
        }
        for name, value in request.headers.raw:
            key = name.decode("latin-1").upper().replace("-", "_")
            text = value.decode("latin-1")
            if key == "CONTENT_TYPE":
                environ["CONTENT_TYPE"] = text
            elif key == "CONTENT_LENGTH":
                continue
            else:
                environ["HTTP_" + key] = text
        return environ

    def _run(self, environ: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
        captured: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
            captured["status"] = int(status.split(" ", 1)[0])
            captured["headers"] = headers

        chunks = self.app(environ, start_response)
        body = b"".join(chunks)
        return captured["status"], captured["headers"], body

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        environ = self._environ(request, body)
        timeout = request.extensions.get("timeout") or {}
        read_timeout = timeout.get("read")
        future = self._pool.submit(self._run, environ)
        try:
            status, headers, content = future.result(timeout=read_timeout)
        except concurrent.futures.TimeoutError as exc:
            raise httpx.ReadTimeout("timed out", request=request) from exc
        except DropConnection as exc:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request) from exc
        return httpx.Response(status, headers=headers, content=content, request=request)

    def close(self) -> None:
        self._pool.shutdown(wait=False)
