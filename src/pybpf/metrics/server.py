"""The HTTP side of ``pybpf export``: ``/metrics`` served to many scrapers at once, cheaply.

This module owns the listening socket and what a request costs. prometheus_client's own
server collects from scratch for every request, with the listen backlog Python's socketserver
defaults to (5): a fleet of Prometheus servers (or any local client, in a loop) then makes N
collections side by side, each as large as the whole exposition, and connections beyond the
backlog wait for SYN retries (seconds). Here:

* requests that arrive while a collection of the same format is running wait for it and are
  all answered with its one result (a bytes object shared, never copied per client; gzip is
  done once per collection too), so N concurrent scrapes cost one collection;
* collections never overlap (one lock), so memory holds at most one collection at a time,
  whatever the number of clients;
* the listen backlog is the kernel's maximum (``SOMAXCONN``, capped by
  ``net.core.somaxconn``), and an idle connection is dropped after ``IDLE_TIMEOUT`` s.

A request is answered with the text of a collection that started no earlier than the request
arrived, or that was running when it arrived (at most one collection's time old).
"""

from __future__ import annotations

import gzip
import socket
import threading
from collections.abc import Callable
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted

__all__ = ["BACKLOG", "IDLE_TIMEOUT", "MetricsApp", "start_server"]

BACKLOG = socket.SOMAXCONN  # the kernel caps it at net.core.somaxconn (4096 by default since 5.4)
IDLE_TIMEOUT = 30.0         # seconds a connection may stay silent before it is closed


class _Collection:
    """One collection in flight, and every request waiting for it."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.body = b""
        self.error: BaseException | None = None
        self._gzip_lock = threading.Lock()
        self._gzipped: bytes | None = None

    def gzipped(self) -> bytes:
        with self._gzip_lock:
            if self._gzipped is None:
                self._gzipped = gzip.compress(self.body, compresslevel=6)
            return self._gzipped


class MetricsApp:
    """The WSGI application: ``GET`` any path -> the registry's exposition (as prometheus_client's,
    with the format chosen from ``Accept`` and gzip from ``Accept-Encoding``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.collections = 0                       # how many collections ran (for tests and logs)
        self._collect_lock = threading.Lock()      # one collection at a time
        self._state = threading.Lock()
        self._running: dict[tuple[str, tuple[str, ...]], _Collection] = {}

    def _collection(self, accept: str | None, names: tuple[str, ...]) -> _Collection:
        encoder, content_type = choose_encoder(accept or "")
        key = (content_type, names)
        with self._state:
            flight = self._running.get(key)
            leader = flight is None
            if flight is None:
                flight = self._running[key] = _Collection()
        if not leader:
            flight.done.wait()
        else:
            try:
                with self._collect_lock:
                    registry: Any = self.registry.restricted_registry(list(names)) if names else self.registry
                    self.collections += 1
                    flight.body = encoder(registry)
            except BaseException as exc:  # every waiter gets the same failure
                flight.error = exc
            finally:
                with self._state:
                    del self._running[key]
                flight.done.set()
        if flight.error is not None:
            raise flight.error
        return flight

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        """Answer one request (WSGI)."""
        method = environ["REQUEST_METHOD"]
        if method == "OPTIONS":
            start_response("200 OK", [("Allow", "OPTIONS,GET")])
            return [b""]
        if method != "GET":
            start_response("405 Method Not Allowed", [("Allow", "OPTIONS,GET")])
            return [f"# HTTP 405 Method Not Allowed: {method}; use OPTIONS or GET\n".encode()]
        if environ.get("PATH_INFO") == "/favicon.ico":
            start_response("200 OK", [])
            return [b""]
        names = parse_qs(environ.get("QUERY_STRING", "")).get("name[]", [])
        flight = self._collection(environ.get("HTTP_ACCEPT"), tuple(sorted(names)))
        headers = [("Content-Type", choose_encoder(environ.get("HTTP_ACCEPT", ""))[1])]
        body = flight.body
        if gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING", "")):
            body = flight.gzipped()
            headers.append(("Content-Encoding", "gzip"))
        start_response("200 OK", headers)
        return [body]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True            # a hung client never keeps the exporter from exiting
    request_queue_size = BACKLOG     # listen(2) backlog: a fleet's connections queue, not retry SYNs


class _Handler(WSGIRequestHandler):
    timeout = IDLE_TIMEOUT           # socket timeout: a silent connection does not hold a thread forever

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """Log nothing (a scrape per second per server would flood stderr)."""


def start_server(app: MetricsApp, addr: str = "127.0.0.1", port: int = 9435) -> tuple[WSGIServer, threading.Thread]:
    """Serve ``app`` on ``addr:port`` in a daemon thread; returns (server, thread)."""
    family = socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    server_class = type("_ServerFamily", (_Server,), {"address_family": family})
    server: WSGIServer = make_server(addr, port, app, server_class, handler_class=_Handler)
    thread = threading.Thread(target=server.serve_forever, name="pybpf-export-http", daemon=True)
    thread.start()
    return server, thread
