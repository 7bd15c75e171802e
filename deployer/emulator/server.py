"""The emulator's HTTPS front: TLS, HTTP/1.1 keep-alive, one thread per connection.

The handler only moves bytes: it reads a request, asks for a response (or none, to drop the
connection) and writes it with Content-Length, so clients can keep connections open.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import threading
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from deployer.emulator.arm import ArmError, Request, Response

logger = logging.getLogger(__name__)

# Answers a request; None closes the connection without a response.
Responder = Callable[[Request], Response | None]

# Idle keep-alive connections and stalled handshakes are closed after this many seconds.
CONNECTION_TIMEOUT_S = 60
# How often the accept loop looks for a stop request: the longest stop() waits.
POLL_INTERVAL_S = 0.05


class TlsServer(ThreadingHTTPServer):
    """A threading HTTPS server that can close its open connections when it stops."""

    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], context: ssl.SSLContext, responder: Responder
    ) -> None:
        self.responder = responder
        self._context = context
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[Any, Any]:
        connection, address = self.socket.accept()
        # The handshake happens in the connection's own thread (finish_request), so a slow or
        # failing client cannot hold up accepting the next one.
        wrapped = self._context.wrap_socket(
            connection, server_side=True, do_handshake_on_connect=False
        )
        return wrapped, address

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._connections_lock:
                self._connections.discard(request)

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(CONNECTION_TIMEOUT_S)
        try:
            request.do_handshake()
        except (ssl.SSLError, OSError) as error:
            logger.debug("TLS handshake with %s failed: %s", client_address, error)
            return
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver prints tracebacks to stderr; a client hanging up is not worth that.
        logger.debug("connection from %s failed", client_address, exc_info=True)

    def close_connections(self) -> None:
        """Shut every open connection, so that keep-alive clients notice the server is gone."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                continue


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = CONNECTION_TIMEOUT_S
    # Headers and body leave in separate writes; without TCP_NODELAY each response would wait
    # for the client's delayed ACK (some 40 ms).
    disable_nagle_algorithm = True
    server: TlsServer

    def do_GET(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def send_response(self, code: int, message: str | None = None) -> None:
        super().send_response(code, message)
        # NOTE: every response carries x-ms-request-id, and x-ms-correlation-request-id is the
        # caller's own when it sent one, else a fresh GUID (ARM resource provider contract,
        # Azure/azure-resource-manager-rpc, v1.0/common-api-details.md). ARM's echo of the
        # correlation id in the response is the emulator's guess.
        headers = getattr(self, "headers", None)
        correlation = headers.get("x-ms-correlation-request-id") if headers else None
        self.send_header("x-ms-request-id", str(uuid.uuid4()))
        self.send_header("x-ms-correlation-request-id", correlation or str(uuid.uuid4()))

    def log_message(self, format: str, *args: Any) -> None:
        # The request line holds the path and query only: never a header, so never the token.
        logger.debug("%s %s", self.address_string(), format % args)

    def _dispatch(self) -> None:
        try:
            body = self._read_body()
        except ValueError:
            self.close_connection = True
            refusal = ArmError(400, "InvalidRequestContent", "The request framing was invalid.")
            self._write(refusal.response())
            return
        split = urlsplit(self.path)
        request = Request(
            method=self.command,
            path=split.path,
            query=dict(parse_qsl(split.query, keep_blank_values=True)),
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
            base_url=f"https://{self.headers.get('Host') or _address(self.server)}",
        )
        response = self.server.responder(request)
        if response is None:
            # Nothing written: the client reads the end of the stream where a status line
            # should be (http.client raises RemoteDisconnected).
            self.close_connection = True
            return
        self._write(response)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError("negative Content-Length")
        return self.rfile.read(length)

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip(), 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    continue
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline()

    def _write(self, response: Response) -> None:
        payload = b"" if response.body is None else json.dumps(response.body).encode("utf-8")
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        # A 204 carries neither body nor Content-Length (RFC 9110, 8.6); every other response
        # states its length so that the connection can be kept open.
        if response.status != 204:
            if payload:
                self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if payload:
            self.wfile.write(payload)


def _address(server: TlsServer) -> str:
    host, port = server.server_address[:2]
    return f"{host!s}:{port}"
