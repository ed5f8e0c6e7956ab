"""One webhook attempt against real HTTP servers: an internationalized host name, and a
receiver that answers a byte at a time, each end as an attempt, never as an error that
holds up the deliveries after it."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import httpx
import pytest

from hub_common.local_nats import free_port
from hub_registry import webhooks

IDN_HOST = "bücher.example"


class _Recording(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, str]]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.received.append({key.lower(): value for key, value in self.headers.items()})
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


class _Trickling(BaseHTTPRequestHandler):
    """Answers the status line, then a header byte every half second, for a minute."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        try:
            self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            self.wfile.flush()
            for _ in range(120):
                time.sleep(0.5)
                self.wfile.write(b"a")
                self.wfile.flush()
        except OSError:
            pass  # the hub gave up and closed the connection

    def log_message(self, format: str, *args: Any) -> None:
        return


def _serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def recording_port() -> Iterator[int]:
    _Recording.received = []
    yield from _serve(_Recording)


@pytest.fixture
def trickling_port() -> Iterator[int]:
    yield from _serve(_Trickling)


async def _attempt(
    url: str, *, timeout_seconds: float, lookups: webhooks.HostLookups = webhooks.LOOKUPS
) -> webhooks.Attempt:
    async with httpx.AsyncClient() as http:
        return await webhooks.post(
            http,
            url,
            body=b"{}",
            secret="whsec_x",
            event_id="e1",
            event_type="AlertRaised",
            timestamp=1,
            allow_loopback=True,
            timeout_seconds=timeout_seconds,
            firm="f",
            lookups=lookups,
        )


async def test_an_internationalized_host_is_posted_with_its_ascii_name(recording_port: int) -> None:
    """httpx refuses a Host header that is not ASCII; the name goes out in its IDNA form."""
    ascii_host = IDN_HOST.encode("idna").decode()
    looked_up: list[str] = []

    def lookup(host: str, port: int) -> list[tuple[Any, ...]]:
        looked_up.append(host)
        if host == ascii_host:  # this machine plays the host; no DNS reaches the internet here
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)

    attempt = await _attempt(
        f"http://{IDN_HOST}:{recording_port}/hook", timeout_seconds=5, lookups=webhooks.HostLookups(lookup=lookup)
    )
    assert attempt.outcome is webhooks.Outcome.DELIVERED, attempt.detail
    assert looked_up == [ascii_host]
    assert _Recording.received[0]["host"] == f"{ascii_host}:{recording_port}"


async def test_a_receiver_answering_a_byte_at_a_time_ends_the_attempt_at_its_deadline(trickling_port: int) -> None:
    started = time.monotonic()
    attempt = await _attempt(f"http://127.0.0.1:{trickling_port}/hook", timeout_seconds=1)
    elapsed = time.monotonic() - started
    assert attempt.outcome is webhooks.Outcome.TRANSIENT, attempt.detail
    assert "no answer within 2 s" in attempt.detail
    # Each read got its byte within the 1 s timeout: only the whole attempt's deadline ends it.
    assert elapsed < 10, elapsed
