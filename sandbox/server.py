"""A real threaded HTTP server for :class:`sandbox.app.SandboxApp` (stdlib wsgiref).

The request handler understands :class:`sandbox.faults.DropConnection`: it closes the socket
without writing a byte, so an HTTP client sees "server disconnected without a response"
(httpx: ``RemoteProtocolError``).
"""

from __future__ import annotations

import socket
import sys
import threading
from dataclasses import dataclass, field
from socketserver import ThreadingMixIn
from typing import IO, Any, cast
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer

from .app import SandboxApp
from .faults import DropConnection


class _ServerHandler(ServerHandler):
    dropped = False
    request_handler: WSGIRequestHandler | None = None

    def handle_error(self) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, DropConnection):
            self.dropped = True
            return
        super().handle_error()

    def log_exception(self, exc_info: Any) -> None:
        if not getattr(self.request_handler, "quiet", True):
            super().log_exception(exc_info)


class _RequestHandler(WSGIRequestHandler):
    protocol_version = "HTTP/1.0"
    quiet = True

    def handle(self) -> None:
        self.raw_requestline = self.rfile.readline(65537)
        if len(self.raw_requestline) > 65536:
            self.requestline = ""
            self.request_version = ""
            self.command = ""
            self.send_error(414)
            return
        if not self.parse_request():
            return
        self.quiet = getattr(self.server, "quiet", True)
        handler = _ServerHandler(
            self.rfile, cast(IO[bytes], self.wfile), self.get_stderr(), self.get_environ(), multithread=True
        )
        handler.request_handler = self
        app = cast(WSGIServer, self.server).get_app()
        if app is None:  # pragma: no cover - serve() always sets the application
            raise RuntimeError("the server has no WSGI application")
        handler.run(app)
        if handler.dropped:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        if not getattr(self.server, "quiet", True):
            super().log_message(format, *args)


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256
    quiet = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not self.quiet:
            super().handle_error(request, client_address)


def make_server(
    app: SandboxApp, host: str = "127.0.0.1", port: int = 8001, *, quiet: bool = True
) -> ThreadingWSGIServer:
    server = ThreadingWSGIServer((host, port), _RequestHandler)
    server.quiet = quiet
    server.set_app(app)
    return server


@dataclass
class RunningSandbox:
    base_url: str
    app: SandboxApp
    server: ThreadingWSGIServer
    thread: threading.Thread
    extras: list[Any] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def shutdown(self) -> None:
        for extra in self.extras:
            extra.stop()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
        self.app.close()

    def __enter__(self) -> RunningSandbox:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()


def start_in_thread(
    db_path: str,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    admin_token: str | None = None,
    faults: dict[str, Any] | list[Any] | None = None,
    options: dict[str, Any] | None = None,
    quiet: bool = True,
) -> RunningSandbox:
    """Serve a new :class:`SandboxApp` on a real socket from a daemon thread (``port=0``: any free port)."""
    app = SandboxApp(db_path, admin_token=admin_token, faults=faults, options=options)
    server = make_server(app, host, port, quiet=quiet)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    bound_host, bound_port = server.server_address[:2]
    shown = host if host not in ("0.0.0.0", "") else "127.0.0.1"
    if ":" in str(shown):
        shown = f"[{shown}]"
    return RunningSandbox(f"http://{shown}:{bound_port}", app, server, thread)
