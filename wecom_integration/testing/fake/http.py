"""The fake's HTTP face: a threading HTTP/1.1 server with keep-alive connections (so client sessions reuse
connections like with WeCom), one write per answer, and a clean stop that cuts every open connection.

``serve_until_signalled`` runs a started fake in the foreground: the contract of the
``wecom_fake_server`` management command.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import traceback
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import TYPE_CHECKING

from .base import _DROP, _JSON, _json_bytes

if TYPE_CHECKING:
    from .core import FakeWeCom

MAX_BODY = 25 * 1024 * 1024


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    fake: FakeWeCom

    def __init__(self, address, handler):
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the FQDN, which can stall for seconds without DNS.
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = host
        self.server_port = port

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so client sessions reuse connections like with WeCom
    server_version = "FakeWeCom"
    sys_version = ""
    timeout = 120  # idle keep-alive connections are closed eventually
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        # One write per answer plus no Nagle: otherwise small answers wait on delayed ACKs.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def log_message(self, format, *args) -> None:  # noqa: A002 - the stdlib's signature
        pass

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            self._write(411, b"length required", "text/plain")
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self.close_connection = True
            self._write(413, _json_bytes({"errcode": 40006, "errmsg": "request too large"}), _JSON)
            return
        body = self.rfile.read(length) if length else b""
        try:
            result = self.server.fake._dispatch(method, self.path, self.headers, body, self.client_address[0])
        except Exception:
            # A bug in the fake must be loud, not a hang or a plausible-looking WeCom error.
            traceback.print_exc(file=sys.stderr)
            self.close_connection = True
            self._write(500, b"fake wecom internal error", "text/plain")
            return
        if result is _DROP:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self._write(*result)

    def _write(self, status: int, payload: bytes, content_type: str) -> None:
        reason = self.responses.get(status, ("",))[0]
        head = (f"HTTP/1.1 {status} {reason}\r\nServer: {self.server_version}\r\n"
                f"Date: {formatdate(usegmt=True)}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(payload)}\r\n")
        if self.close_connection:
            head += "Connection: close\r\n"
        self.wfile.write(head.encode("latin-1") + b"\r\n" + payload)


def serve_until_signalled(fake: FakeWeCom, announce, stop: threading.Event | None = None) -> None:
    """Run a started fake in the foreground until SIGINT/SIGTERM (or ``stop``), after writing its
    credentials as one JSON line through ``announce`` — the contract of the management command."""
    import signal

    stop = stop or threading.Event()
    previous = {}

    def handle(signum, frame):
        stop.set()

    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, handle)
    try:
        announce(json.dumps(fake.credentials(), ensure_ascii=False))
        while not stop.wait(0.5):
            pass
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        fake.stop()
