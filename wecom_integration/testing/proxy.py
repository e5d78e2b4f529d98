"""A tiny forward proxy on loopback, for tests of a tenant's fixed egress (``WeComConfig.proxy_url``).

It understands what ``requests`` sends a proxy: ``CONNECT host:port`` (for https URLs: a blind tunnel)
and absolute-form requests (``GET http://host:port/path``, for http URLs such as the fake WeCom's: one
request per connection, forwarded with ``Connection: close``). Its outgoing connections leave from
``source_address`` (by default 127.0.0.2, another loopback address on Linux), so the fake WeCom sees a
different caller IP through the proxy than without it. It only connects to loopback targets: tests
never reach the network through it.

    with ForwardProxy() as proxy:
        config.proxy_url = proxy.url
        ...
        assert proxy.requests
"""

from __future__ import annotations

import ipaddress
import select
import socket
import threading
from socketserver import StreamRequestHandler, ThreadingTCPServer
from urllib.parse import urlsplit

__all__ = ["ForwardProxy"]

_MAX_HEAD = 64 * 1024


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ForwardProxy:
    """An HTTP proxy on ``host`` (port picked at start) whose upstream connections leave from
    ``source_address``. ``requests`` counts what it forwarded, as (method, target) pairs."""

    def __init__(self, host: str = "127.0.0.1", source_address: str = "127.0.0.2"):
        self.host = host
        self.source_address = source_address
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the proxy is not running")
        return f"http://{self.host}:{self._server.server_address[1]}"

    def start(self) -> ForwardProxy:
        server = _Server((self.host, 0), _Handler)
        server.proxy = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> ForwardProxy:
        return self.start() if self._server is None else self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _record(self, method: str, target: str) -> None:
        with self._lock:
            self.requests.append((method, target))

    def connect(self, host: str, port: int) -> socket.socket:
        if not _is_loopback(host):
            raise PermissionError(f"the test proxy only connects to loopback, not {host}")
        return socket.create_connection((host, port), timeout=10, source_address=(self.source_address, 0))


class _Server(ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    proxy: ForwardProxy


class _Handler(StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        head = self._read_head()
        if head is None:
            return
        request_line, *header_lines = head.split(b"\r\n")
        try:
            method, target, version = request_line.decode("latin-1").split(" ")
        except ValueError:
            self._fail(400, "Bad Request")
            return
        proxy = self.server.proxy
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            upstream = self._open(proxy, host.strip("[]"), int(port or 443))
            if upstream is None:
                return
            proxy._record(method, target)
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self.wfile.flush()
            self._pipe(upstream)
            return
        parts = urlsplit(target)
        if parts.scheme != "http" or not parts.hostname:
            self._fail(400, "Bad Request")
            return
        upstream = self._open(proxy, parts.hostname, parts.port or 80)
        if upstream is None:
            return
        proxy._record(method, target)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = [line for line in header_lines if line and not line.lower().startswith((b"connection:", b"proxy-"))]
        length = 0
        for line in headers:
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1].strip() or 0)
        body = self.rfile.read(length) if length else b""
        outgoing = b"\r\n".join(
            [f"{method} {path} {version}".encode("latin-1"), *headers, b"Connection: close", b"", b""]
        )
        with upstream:
            upstream.sendall(outgoing + body)
            while chunk := upstream.recv(65536):
                self.wfile.write(chunk)
        self.wfile.flush()

    def _read_head(self) -> bytes | None:
        data = b""
        while b"\r\n\r\n" not in data:
            line = self.rfile.readline(_MAX_HEAD)
            if not line:
                return None
            data += line
            if len(data) > _MAX_HEAD:
                self._fail(431, "Request Header Fields Too Large")
                return None
        return data.split(b"\r\n\r\n", 1)[0]

    def _open(self, proxy: ForwardProxy, host: str, port: int) -> socket.socket | None:
        try:
            return proxy.connect(host, port)
        except PermissionError:
            self._fail(403, "Forbidden")
        except OSError:
            self._fail(502, "Bad Gateway")
        return None

    def _fail(self, status: int, reason: str) -> None:
        self.wfile.write(f"HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())

    def _pipe(self, upstream: socket.socket) -> None:
        client = self.connection
        sockets = [client, upstream]
        with upstream:
            while True:
                readable, _, _ = select.select(sockets, [], [], 30)
                if not readable:
                    return
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (upstream if sock is client else client).sendall(data)
