"""An HTTP trace for benchmarked processes, loaded only through ``PYTHONPATH``.

``bench.refresh`` puts this folder on the fetchers' ``PYTHONPATH``, so Python imports it at
start-up, before ``hub_cli`` runs. When ``BENCH_HTTP_TRACE_DIR`` is set it wraps
``httpx.AsyncClient.send`` (BC) and ``httpx.Client.send`` (msal's token calls) and appends
one JSON line per HTTP round trip to ``<dir>/http-<pid>.jsonl``: wall-clock start and end
(end = response headers received), method, host, path, status, and for a ``$batch`` the
number of operations it carries. The hub's code is not changed; without the variable this
file does nothing.

The sandbox counts operations but not HTTP requests (a ``$batch`` envelope is not counted),
so this trace is where the benchmark gets round trips from.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

TRACE_DIR_VARIABLE = "BENCH_HTTP_TRACE_DIR"


def _batch_operations(content: bytes) -> int | None:
    try:
        document = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return None
    requests = document.get("requests") if isinstance(document, dict) else None
    return len(requests) if isinstance(requests, list) else None


def _install(directory: str) -> None:
    import httpx

    handle = open(os.path.join(directory, f"http-{os.getpid()}.jsonl"), "a", buffering=1)  # noqa: SIM115
    lock = threading.Lock()

    def record(request: httpx.Request, started: float, status: int | None, error: str | None) -> None:
        operations = None
        if request.url.path.endswith("/$batch"):
            try:
                operations = _batch_operations(request.content)
            except httpx.RequestNotRead:
                operations = None
        line = json.dumps(
            {
                "start": started,
                "end": time.time(),
                "method": request.method,
                "host": request.url.host,
                "path": request.url.path,
                "status": status,
                "error": error,
                "operations": operations,
            }
        )
        with lock:
            handle.write(line + "\n")

    original_async_send = httpx.AsyncClient.send
    original_send = httpx.Client.send

    async def traced_async_send(self: httpx.AsyncClient, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        started = time.time()
        try:
            response = await original_async_send(self, request, **kwargs)
        except BaseException as error:
            record(request, started, None, type(error).__name__)
            raise
        record(request, started, response.status_code, None)
        return response

    def traced_send(self: httpx.Client, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        started = time.time()
        try:
            response = original_send(self, request, **kwargs)
        except BaseException as error:
            record(request, started, None, type(error).__name__)
            raise
        record(request, started, response.status_code, None)
        return response

    httpx.AsyncClient.send = traced_async_send  # type: ignore[method-assign]
    httpx.Client.send = traced_send  # type: ignore[method-assign]


_directory = os.environ.get(TRACE_DIR_VARIABLE)
if _directory:
    _install(_directory)
