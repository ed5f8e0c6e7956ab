"""A TCP proxy a test can cut and restore: a database outage without touching the database.

A service is pointed at the proxy instead of the server. ``cut()`` closes every open
connection and answers every new one by closing it at once (as a server that went away
would, seen from the client); ``restore()`` lets connections through again.

It runs on threads of its own, so a test that blocks (sync HTTP, sleeps) never stalls it.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass, field

_BUFFER_BYTES = 65536
_ACCEPT_POLL_SECONDS = 0.2


@dataclass(eq=False)
class _Pair:
    client: socket.socket
    upstream: socket.socket

    def close(self) -> None:
        for side in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                side.shutdown(socket.SHUT_RDWR)
            side.close()


@dataclass
class TcpProxy:
    upstream_host: str
    upstream_port: int
    port: int = 0
    _listener: socket.socket | None = field(default=None, init=False)
    _pairs: set[_Pair] = field(default_factory=set, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _cut: threading.Event = field(default_factory=threading.Event, init=False)
    _stopped: threading.Event = field(default_factory=threading.Event, init=False)
    # Connections accepted while cut, and closed at once: proof the outage was noticed.
    refused: int = field(default=0, init=False)

    def start(self) -> TcpProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(_ACCEPT_POLL_SECONDS)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, name=f"tcp-proxy-{self.port}", daemon=True).start()
        return self

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._pairs)

    def cut(self) -> None:
        """Drop every connection and refuse new ones until ``restore``."""
        self._cut.set()
        with self._lock:
            pairs, self._pairs = self._pairs, set()
        for pair in pairs:
            pair.close()

    def restore(self) -> None:
        self._cut.clear()

    def stop(self) -> None:
        self._stopped.set()
        self.cut()
        if self._listener is not None:
            self._listener.close()

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # the listener was closed
            if self._cut.is_set():
                self.refused += 1
                client.close()
                continue
            try:
                upstream = socket.create_connection((self.upstream_host, self.upstream_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            pair = _Pair(client, upstream)
            with self._lock:
                self._pairs.add(pair)
            if self._cut.is_set():  # cut while this one was connecting: it goes too
                self.cut()
                continue
            threading.Thread(target=self._pump, args=(pair, client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(pair, upstream, client), daemon=True).start()

    def _pump(self, pair: _Pair, source: socket.socket, target: socket.socket) -> None:
        try:
            while chunk := source.recv(_BUFFER_BYTES):
                target.sendall(chunk)
        except OSError:
            pass
        with self._lock:
            self._pairs.discard(pair)
        pair.close()
