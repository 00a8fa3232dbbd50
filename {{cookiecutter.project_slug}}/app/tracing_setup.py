"""OpenTelemetry tracing, on when OTEL_EXPORTER_OTLP_ENDPOINT is set and the `tracing` extra is installed.

Requests are spans of FastAPI's own telemetry; taskflow adds a span per enqueue (in the request's
trace) and per attempt (linked to it). Spans go to the OTLP/HTTP collector at the endpoint.
Without the setting nothing of the OpenTelemetry SDK is imported.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from app.config import Settings

logger = logging.getLogger("app.tracing")

INSTALL_HINT = "pip install -e '.[tracing]'"


def span_exporter(endpoint: str) -> Any:
    """Where spans go: the OTLP/HTTP collector at `endpoint` (its /v1/traces path)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")


def configure_tracing(settings: Settings) -> Any | None:
    """A tracer provider exporting to the configured endpoint, or None when tracing is off."""
    endpoint = settings.otel_exporter_otlp_endpoint
    if not endpoint:
        return None
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        exporter = span_exporter(endpoint)
    except ImportError as missing:
        # Tracing is an aid: the service runs without it, and says why.
        logger.error(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but the tracing extra is not installed (%s); "
            "running without tracing. Install it with: %s",
            missing,
            INSTALL_HINT,
        )
        return None
    service_name = os.environ.get("OTEL_SERVICE_NAME") or settings.app_name
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider
