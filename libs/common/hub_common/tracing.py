"""OpenTelemetry traces: one trace from a gateway request, through NATS, to the fetcher and back.

Off by default (``HUB_TRACING_EXPORTER=off``): the API's no-op tracer then costs next to
nothing and no context travels. With ``console`` or ``otlp`` each process names itself
by ``HUB_SERVICE_NAME`` and exports its spans in batches.

The W3C trace context (``traceparent``) travels in NATS headers, beside the correlation
id: ``bus.publish_event`` and ``commands.send_command`` inject it, ``consumers`` extract it
where events are handled, FastStream's telemetry middleware does the same for its
subscribers (commands), and the outbox keeps it with each event until the relay sends it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_INSTANCE_ID, SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import Span, SpanKind

from hub_common.settings import HubSettings, TracingExporter

# A proxy until a provider is configured; every module traces through this one.
tracer = trace.get_tracer("accountant-hub")


def configure_tracing(settings: HubSettings) -> None:
    """Install the process's tracer provider and exporter, unless tracing is off."""
    if settings.tracing_exporter is TracingExporter.OFF:
        return
    exporter: SpanExporter
    if settings.tracing_exporter is TracingExporter.CONSOLE:
        exporter = ConsoleSpanExporter()
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=settings.otlp_endpoint)
    resource = Resource.create(
        {SERVICE_NAME: settings.service_name, SERVICE_INSTANCE_ID: f"{socket.gethostname()}:{os.getpid()}"}
    )
    # The provider flushes what it holds when the process exits (its atexit hook).
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)


def inject_context(headers: MutableMapping[str, str]) -> None:
    """Add the current trace context (``traceparent``) to outgoing message headers."""
    propagate.inject(headers)


def current_context_headers() -> dict[str, str]:
    """The current trace context as headers, to keep with work that leaves later (outbox)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def context_from(headers: Mapping[str, str] | None) -> Context:
    """The trace context a message carries (an empty one when it carries none)."""
    return propagate.extract(dict(headers or {}))


@contextmanager
def span_continuing(
    name: str, headers: Mapping[str, str] | None, *, kind: SpanKind = SpanKind.CONSUMER
) -> Iterator[Span]:
    """A span that continues the trace a message's headers carry, current while it runs."""
    with tracer.start_as_current_span(name, context=context_from(headers), kind=kind) as span:
        yield span
