"""A tiny real webhook subscriber for the sandbox's tests: plain HTTP on a free loopback
port, answering BC's validation handshake and recording notification POSTs.

Each path (``/hooks/{name}``) can be told how to behave: how to answer the handshake
(echo the token, a status, a wrong token, too slowly) and which statuses to give the next
notifications (then 200).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Behaviour:
    handshake_status: int = 200
    handshake_answer: str | None = None  # None: echo the token
    handshake_delay_seconds: float = 0.0
    handshake_statuses: list[int] = field(default_factory=list)  # for the next handshakes, then handshake_status
    # Sends the handshake's answer one byte at a time, this long apart.
    handshake_trickle_seconds: float = 0.0
    notification_statuses: list[int] = field(default_factory=list)  # then 200
    notification_delay_seconds: float = 0.0


@dataclass(frozen=True)
class Received:
    path: str
    body: dict[str, Any]
    status: int


class Subscriber:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.behaviours: dict[str, Behaviour] = {}
        self.notifications: list[Received] = []
        self.handshakes: list[tuple[str, str, bytes]] = []  # path, token, body
        self.lock = threading.Lock()

    def url(self, name: str, behaviour: Behaviour | None = None) -> str:
        with self.lock:
            self.behaviours[name] = behaviour or Behaviour()
        return f"{self.base_url}/hooks/{name}"

    def received(self, name: str) -> list[Received]:
        with self.lock:
            return [r for r in self.notifications if r.path == f"/hooks/{name}"]

    def wait_for(self, name: str, count: int, timeout: float = 15.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            received = self.received(name)
            if len(received) >= count:
                return received
            time.sleep(0.05)
        raise AssertionError(f"{name}: {len(self.received(name))} notification POSTs, expected {count}")


def _handler(subscriber: Subscriber) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return  # quiet: pytest shows failures, not every request

        def do_POST(self) -> None:
            split = urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            name = split.path.removeprefix("/hooks/")
            with subscriber.lock:
                behaviour = subscriber.behaviours.get(name, Behaviour())
            token = parse_qs(split.query).get("validationToken")
            if token is not None:
                with subscriber.lock:
                    subscriber.handshakes.append((split.path, token[0], body))
                    status = (
                        behaviour.handshake_statuses.pop(0)
                        if behaviour.handshake_statuses
                        else behaviour.handshake_status
                    )
                time.sleep(behaviour.handshake_delay_seconds)
                answer = token[0] if behaviour.handshake_answer is None else behaviour.handshake_answer
                self._answer(status, answer, "text/plain", behaviour.handshake_trickle_seconds)
                return
            with subscriber.lock:
                status = behaviour.notification_statuses.pop(0) if behaviour.notification_statuses else 200
                subscriber.notifications.append(Received(split.path, json.loads(body), status))
            time.sleep(behaviour.notification_delay_seconds)
            self._answer(status, "", "text/plain")

        def _answer(self, status: int, text: str, content_type: str, trickle_seconds: float = 0.0) -> None:
            content = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            if not trickle_seconds:
                self.wfile.write(content)
                return
            # Each byte in time for any per-read timeout, the whole far too late.
            try:
                for byte in content:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(trickle_seconds)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the caller gave up waiting, as it should

    return Handler


@contextmanager
def running_subscriber() -> Iterator[Subscriber]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    subscriber = Subscriber(f"http://127.0.0.1:{server.server_address[1]}")
    server.RequestHandlerClass = _handler(subscriber)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="webhook-subscriber", daemon=True)
    thread.start()
    try:
        yield subscriber
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
