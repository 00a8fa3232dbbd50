"""Tracing in the service: OTEL_EXPORTER_OTLP_ENDPOINT turns it on; a request, its enqueue and the attempt."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from app import tracing_setup
from app.config import Settings
from app.main import create_app

from .taskflow.procs import SERVICE_ROOT, wait_until

AUTH = ("admin", "admin-password")


def test_a_request_its_enqueue_and_the_attempt_are_traced(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    exporter = InMemorySpanExporter()
    endpoints: list[str] = []

    def in_memory(endpoint: str) -> InMemorySpanExporter:
        endpoints.append(endpoint)
        return exporter

    monkeypatch.setattr(tracing_setup, "span_exporter", in_memory)
    app = create_app(settings.model_copy(update={"otel_exporter_otlp_endpoint": "http://collector:4318"}))
    with TestClient(app) as client:
        task_id = client.post("/signup", params={"email": "traced@example.com"}).json()["task_id"]
        wait_until(
            lambda: client.get(f"/tasks/{task_id}", auth=AUTH).json()["status"] == "success",
            timeout=30,
            what="the email sent",
        )
        wait_until(
            lambda: (
                app.state.tracer_provider.force_flush()
                and any(span.name == "run send_email" for span in exporter.get_finished_spans())
            ),
            timeout=30,
            what="the attempt's span exported",
        )
    assert endpoints == ["http://collector:4318"]
    spans = exporter.get_finished_spans()
    [request] = [span for span in spans if span.kind is SpanKind.SERVER and span.name == "POST /signup"]
    [enqueue] = [span for span in spans if span.name == "enqueue send_email"]
    [attempt] = [span for span in spans if span.name == "run send_email"]
    assert enqueue.context.trace_id == request.context.trace_id
    assert enqueue.attributes["taskflow.task_id"] == task_id
    assert [link.context.span_id for link in attempt.links] == [enqueue.context.span_id]
    assert attempt.attributes["taskflow.outcome"] == "succeeded"
    assert attempt.resource.attributes["service.name"] == settings.app_name


def test_without_an_endpoint_the_service_imports_nothing_of_the_sdk(tmp_path: Path) -> None:
    # Only the SDK's tracer and the exporters are looked for: redis-py imports other parts of the
    # SDK by itself when the SDK is installed.
    script = """
import sys
from app.config import Settings
from app.main import create_app
TRACING_MODULES = ("opentelemetry.sdk.trace", "opentelemetry.exporter")
app = create_app(Settings(_env_file=None, admin_open=True, database_url="sqlite:///%s"))
print(app.state.tracer_provider, sorted(m for m in sys.modules if m.startswith(TRACING_MODULES)))
""" % (tmp_path / "app.db")
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": ""}
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=SERVICE_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == "None []"


def test_an_endpoint_without_the_extra_logs_how_to_install_it_and_runs_untraced(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def not_installed(endpoint: str) -> None:
        raise ImportError("No module named 'opentelemetry.exporter'")

    monkeypatch.setattr(tracing_setup, "span_exporter", not_installed)
    with caplog.at_level(logging.ERROR, logger="app.tracing"):
        provider = tracing_setup.configure_tracing(
            settings.model_copy(update={"otel_exporter_otlp_endpoint": "http://collector:4318"})
        )
    assert provider is None
    [record] = caplog.records
    assert "pip install -e '.[tracing]'" in record.getMessage()
