"""The exporter's HTTP side: /metrics served from the bytes of the last scan, serialized once per
scan and format (Exposition), by a server that bounds what a client can hold (Slots:
MAX_CONNECTIONS, REQUEST_TIMEOUT, SEND_TIMEOUT). The basic auth in front of it is _auth.py's, the
scanning and the command line commands/exporter.py's, the families render/metrics.py's."""
from __future__ import annotations

import gzip
import io
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, cast

from ..render.metrics import Family

# A client has this long from its connection to send its whole request (the TLS handshake included): one
# that sent half a request was still served 45 s later, each holding a thread; one that trickles a byte
# at a time is cut off the same. A scraper sends its request at once.
REQUEST_TIMEOUT = 10.0
# And this long to take the answer (the exposition: a few hundred kB at most), so that one that never
# reads cannot hold a thread either.
SEND_TIMEOUT = 10.0
# Connections handled at once, a thread each (3,000 idle connections made 3,003 threads, RSS 75 -> 272 MB).
# Beyond it the connection that has waited longest for its request is dropped (Slots).
MAX_CONNECTIONS = 32
# Connections the kernel queues before accept() (capped by net.core.somaxconn): socketserver's 5 dropped the
# SYNs of a burst, a scrape among them waiting for its retransmission (1 s, then 3, 7...).
LISTEN_BACKLOG = 1024


def _collector(fams: list[Family]) -> Any:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    class Collector:
        """One scan's families, as prometheus_client's encoders read a registry."""

        def collect(self) -> Iterator[Any]:
            for f in fams:
                cls = GaugeMetricFamily if f.kind == "gauge" else CounterMetricFamily
                m = cls(f.name, f.help, labels=list(f.labels))
                for labels, value in f.samples:
                    m.add_metric(list(labels), value)
                yield m

    return Collector()


TEXT, OPENMETRICS = "text", "openmetrics"


def content_type(fmt: str) -> str:
    from prometheus_client import openmetrics
    from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

    return str(openmetrics.exposition.CONTENT_TYPE_LATEST if fmt == OPENMETRICS else CONTENT_TYPE_PLAIN_0_0_4)


def negotiate(accept: str) -> str:
    """OPENMETRICS when the Accept header asks for it as prometheus_client reads it (Prometheus asks for
    it first), else TEXT. The names are legacy ones (pmaps_*, no escaping needed): the body depends on
    nothing else, and the Content-Type is one of two fixed strings, never the client's text."""
    from prometheus_client.exposition import choose_encoder

    try:
        _, ctype = choose_encoder(accept)
    except TypeError:  # version=x: prometheus_client compares ('x',) with (1, 0, 0)
        return TEXT
    return OPENMETRICS if ctype.startswith("application/openmetrics-text") else TEXT


def encode(fams: list[Family], fmt: str) -> bytes:
    """The exposition of `fams` in `fmt`: prometheus_client writes it."""
    from prometheus_client import generate_latest, openmetrics

    write = openmetrics.exposition.generate_latest if fmt == OPENMETRICS else generate_latest
    return bytes(write(_collector(fams)))


class Exposition:
    """The bytes of /metrics, serialized at most once per scan and format (gzipped at most once
    more): a flood of scrapes costs sending bytes, not rebuilding them. 3,000 requests serialized
    3,000 times kept a real scrape waiting 128 s."""

    def __init__(self, published: Callable[[], tuple[int, list[Family]]]) -> None:
        self.published = published
        self.lock = threading.Lock()
        self.generation = -1
        self.bodies: dict[tuple[str, bool], bytes] = {}

    def get(self, fmt: str, gz: bool) -> bytes:
        # The first scrape after a scan serializes; the others wait for it (milliseconds), then share it.
        with self.lock:
            generation, fams = self.published()
            if generation != self.generation:
                self.generation, self.bodies = generation, {}
            body = self.bodies.get((fmt, gz))
            if body is None:
                body = self.bodies.get((fmt, False))
                if body is None:
                    body = self.bodies[fmt, False] = encode(fams, fmt)
                if gz:
                    body = self.bodies[fmt, True] = gzip.compress(body)
            return body


POINTER = b"pmaps exporter: the metrics are at /metrics\n"


def metrics_app(expo: Exposition) -> Callable[..., Any]:
    """WSGI: the metrics at /metrics only (GET, and HEAD: the same headers, no body), a pointer to them
    at /, 404 elsewhere."""
    from prometheus_client.exposition import gzip_accepted

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        method, path = environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", "")
        headers = [("Content-Type", "text/plain; charset=utf-8")]
        if path not in ("/", "/metrics"):
            status, body = "404 Not Found", b"not found: " + POINTER
        elif method not in ("GET", "HEAD", "OPTIONS"):
            status, body = "405 Method Not Allowed", b"use GET or HEAD\n"
            headers.append(("Allow", "GET, HEAD, OPTIONS"))
        elif method == "OPTIONS":
            status, body = "200 OK", b""
            headers.append(("Allow", "GET, HEAD, OPTIONS"))
        elif path == "/":
            status, body = "200 OK", POINTER
        else:
            fmt = negotiate(environ.get("HTTP_ACCEPT", ""))
            gz = gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING", ""))
            status, body = "200 OK", expo.get(fmt, gz)
            headers = [("Content-Type", content_type(fmt)), ("Vary", "Accept, Accept-Encoding")]
            if gz:
                headers.append(("Content-Encoding", "gzip"))
        headers.append(("Content-Length", str(len(body))))
        start_response(status, headers)
        return [] if method == "HEAD" else [body]

    return app


class Slots:
    """The connections being served, a thread each, at most `most`. Beyond, the one that has waited
    longest for its request is dropped to make room: idle or trickling clients cannot lock a scrape
    out, they only push each other out. When every one is being answered, the newcomer is closed at
    once (nothing read, nothing serialized). Threads, dropped ones still ending included, stay under
    twice `most`."""

    def __init__(self, most: int) -> None:
        self.most = most
        self.lock = threading.Lock()
        self.reading: dict[socket.socket, None] = {}  # waiting for their request, oldest first
        self.answering: set[socket.socket] = set()
        self.live = 0  # threads not ended yet

    def admit(self, conn: socket.socket) -> bool:
        with self.lock:
            if len(self.reading) + len(self.answering) >= self.most:
                if not self.reading or self.live >= 2 * self.most:
                    return False
                oldest = next(iter(self.reading))
                del self.reading[oldest]
                try:
                    # Its thread's read returns at once (EOF), and the thread ends. socket.socket's
                    # shutdown, not SSLSocket's: that one would drop the TLS state under the reader.
                    socket.socket.shutdown(oldest, socket.SHUT_RDWR)
                except OSError:
                    pass
            self.reading[conn] = None
            self.live += 1
            return True

    def request_read(self, conn: socket.socket) -> None:
        with self.lock:
            if self.reading.pop(conn, 0) is None:  # (not if dropped meanwhile: it is ending)
                self.answering.add(conn)

    def done(self, conn: socket.socket) -> None:
        """Before the connection is closed: a closed socket must not be shut down by admit()."""
        with self.lock:
            self.reading.pop(conn, None)
            self.answering.discard(conn)
            self.live -= 1


class _ReadBy(io.RawIOBase):
    """A connection's reads, each given what is left until a deadline: a client trickling its request
    a byte at a time is cut off as one that sends nothing."""

    def __init__(self, sock: socket.socket, seconds: float) -> None:
        self.sock, self.end = sock, time.monotonic() + seconds

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        left = self.end - time.monotonic()
        if left <= 0:
            raise TimeoutError("no whole request in time")
        self.sock.settimeout(left)
        return self.sock.recv_into(b)


def make_server(host: str, port: int, app: Callable[..., Any], ctx: Any = None) -> Any:
    """A bound, listening WSGI server for `app` (OSError if it cannot bind): a thread per connection,
    at most MAX_CONNECTIONS of them (Slots), REQUEST_TIMEOUT to send the request and SEND_TIMEOUT to
    take the answer, one request per connection. With `ctx` (an ssl.SSLContext), TLS."""
    from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer

    class Answer(ServerHandler):
        def log_exception(self, exc_info: Any) -> None:
            if not isinstance(exc_info[1], OSError):  # a client gone or too slow to read: its problem
                super().log_exception(exc_info)

    class Handler(WSGIRequestHandler):
        def setup(self) -> None:
            super().setup()
            self.rfile.close()  # (socketserver's: closing it leaves the connection open)
            self.rfile = io.BufferedReader(_ReadBy(self.connection, REQUEST_TIMEOUT))

        def log_message(self, format: str, *args: Any) -> None:
            """Log nothing."""

        def handle(self) -> None:
            """wsgiref's, but for the timeouts: the request read by REQUEST_TIMEOUT, the answer sent
            within SEND_TIMEOUT."""
            self.raw_requestline = self.rfile.readline(65537)
            if len(self.raw_requestline) > 65536:
                self.requestline = self.request_version = self.command = ""
                self.send_error(414)
                return
            if not self.parse_request():  # an error was sent (400...)
                return
            server = cast(Server, self.server)
            server.slots.request_read(self.request)
            self.connection.settimeout(SEND_TIMEOUT)
            answer: Any = Answer(self.rfile, cast(Any, self.wfile), self.get_stderr(), self.get_environ(),
                                 multithread=True)
            answer.request_handler = self  # (wsgiref's back pointer, for its log_request)
            answer.run(server.get_app())

    class Server(WSGIServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        request_queue_size = LISTEN_BACKLOG

        def __init__(self, address: tuple[str, int], handler: Any) -> None:
            self.slots = Slots(MAX_CONNECTIONS)
            super().__init__(address, handler)

        def process_request(self, request: Any, client_address: Any) -> None:
            if not self.slots.admit(request):
                self.shutdown_request(request)  # every slot busy answering: closed at once
                return
            try:
                threading.Thread(target=self.serve_one, args=(request, client_address), daemon=True).start()
            except BaseException:
                self.slots.done(request)
                raise

        def serve_one(self, request: Any, client_address: Any) -> None:
            try:
                self.finish_request(request, client_address)
            except Exception:
                self.handle_error(request, client_address)
            finally:
                self.slots.done(request)
                self.shutdown_request(request)

        def handle_error(self, request: Any, client_address: Any) -> None:
            """A client that hung up, timed out, or spoke plain HTTP to the TLS port: its problem, not a traceback."""

    httpd = Server((host, port), Handler)
    httpd.set_app(app)
    if ctx is not None:
        # Handshake in the request thread (under REQUEST_TIMEOUT), not in accept(): one idle TCP client
        # must not stall every scrape (the server's accept loop is single-threaded).
        httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True, do_handshake_on_connect=False)
    return httpd
