"""Serve a SandboxApp over real HTTP: threaded, keep-alive, able to drop connections."""

from __future__ import annotations

import sys
from collections.abc import Callable
from socketserver import ThreadingMixIn
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer

from .app import SandboxConnectionDropped


class _ServerHandler(ServerHandler):
    http_version = "1.1"
    dropped = False

    def handle_error(self) -> None:
        if isinstance(sys.exc_info()[1], SandboxConnectionDropped):
            self.dropped = True  # write nothing; the request handler closes the socket
            return
        super().handle_error()


class _RequestHandler(WSGIRequestHandler):
    # Small writes (headers, then body) would otherwise wait ~40 ms for delayed ACKs.
    disable_nagle_algorithm = True

    protocol_version = "HTTP/1.1"
    timeout = 60  # idle keep-alive connections give up their thread after this

    def handle(self) -> None:
        # wsgiref answers one request per connection; loop for HTTP/1.1 keep-alive.
        self.close_connection = True
        self.handle_one_request()
        while not self.close_connection:
            self.handle_one_request()

    def handle_one_request(self) -> None:
        try:
            self.raw_requestline = self.rfile.readline(65537)
        except TimeoutError:
            self.close_connection = True
            return
        if not self.raw_requestline or len(self.raw_requestline) > 65536:
            self.close_connection = True
            return
        if not self.parse_request():
            return
        handler = _ServerHandler(
            self.rfile, self.wfile, self.get_stderr(), self.get_environ(), multithread=True
        )
        handler.request_handler = self
        handler.run(self.server.get_app())
        if handler.dropped:
            self.close_connection = True
            self.log_request("dropped")

    def log_message(self, format: str, *args) -> None:
        if self.server.log:
            self.server.log(format % args)

    def log_request(self, code="-", size="-") -> None:
        if self.server.log:
            self.server.log(f"{self.command} {self.path} {code}")


class SandboxServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    # A cold page opens about ten connections at once; the default backlog of 5 drops some.
    request_queue_size = 64
    log: Callable[[str], None] | None = None


def make_server(
    app, host: str = "127.0.0.1", port: int = 8001, log: Callable[[str], None] | None = None
) -> SandboxServer:
    """Bind (port 0 picks a free one); call `serve_forever()`, later `shutdown()`."""
    server = SandboxServer((host, port), _RequestHandler)
    server.set_app(app)
    server.log = log
    return server
