"""OpenTelemetry for :mod:`hub.tracing`, only when ``[tracing] endpoint`` is set.

Without an endpoint nothing is imported and nothing is sent. With one, the OpenTelemetry SDK and its OTLP/HTTP
exporter must be installed (``pip install 'xoev-hub[tracing]'``); spans go in batches to
``<endpoint>/v1/traces``. The hub's spans: ``intake`` (REST request or FIT-Connect submission stored),
``process`` (one claim of a message by a worker, a child of its intake span through the stored
``traceparent``), ``stage <name>`` and ``deliver`` (one call to a target).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from hub import tracing
from xhub.config import TracingConfig

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

__all__ = ["TracingUnavailable", "setup_tracing"]


class TracingUnavailable(RuntimeError):
    """``[tracing] endpoint`` is set but OpenTelemetry is not installed."""


def setup_tracing(settings: TracingConfig, *, exporter: SpanExporter | None = None) -> Callable[[], None] | None:
    """Install the span factory; returns what flushes and stops it (``None`` when tracing is off).
    ``exporter`` replaces the OTLP one and exports each span at once (tests: the in-memory exporter)."""
    if settings.endpoint is None and exporter is None:
        return None
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    except ImportError:
        raise TracingUnavailable("[tracing] endpoint is set, but OpenTelemetry is not installed: "
                                 "pip install 'xoev-hub[tracing]'") from None
    provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise TracingUnavailable("[tracing] endpoint is set, but the OTLP exporter is not installed: "
                                     "pip install 'xoev-hub[tracing]'") from None
        provider.add_span_processor(BatchSpanProcessor(
            OTLPSpanExporter(endpoint=f"{str(settings.endpoint).rstrip('/')}/v1/traces")))
    tracer = provider.get_tracer("xoev-hub")
    propagator = TraceContextTextMapPropagator()

    @contextmanager
    def factory(name: str, parent: str | None, attributes: dict[str, str]) -> Iterator[str | None]:
        context = propagator.extract({tracing.TRACEPARENT: parent}) if parent else None
        with tracer.start_as_current_span(name, context=context, attributes=attributes):
            carrier: dict[str, Any] = {}
            propagator.inject(carrier)
            yield carrier.get(tracing.TRACEPARENT)

    tracing.install(factory)

    def shutdown() -> None:
        tracing.install(None)
        provider.shutdown()

    return shutdown
