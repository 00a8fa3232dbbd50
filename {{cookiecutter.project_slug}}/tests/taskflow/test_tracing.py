"""OpenTelemetry: an enqueue is a span in the caller's trace, each attempt a span linked to it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from app.taskflow import ManagedBackgroundTasks, TaskStatus

from .conftest import eventually, wait_for_status
from .procs import SERVICE_ROOT


@pytest.fixture
def exported() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def spans_named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name == name]


async def test_the_enqueue_is_in_the_callers_trace_and_each_attempt_links_to_it(make_manager, exported) -> None:
    provider, exporter = exported
    manager = make_manager()
    manager.enable_tracing(provider)
    tracer = provider.get_tracer("the request")

    @manager.task(retries=1, delay=0.0)
    async def flaky(fail: bool) -> None:
        with tracer.start_as_current_span("inside the task"):
            if fail:
                raise ConnectionError("upstream down")

    async with manager.lifespan():
        with tracer.start_as_current_span("POST /things") as request_span:
            tasks = ManagedBackgroundTasks(manager)
            task_id = tasks.add_task(flaky, True)
        await tasks()
        await wait_for_status(manager, task_id, TaskStatus.FAILED)
        await eventually(lambda: len(spans_named(exporter, "run flaky")) == 2)

    [enqueue] = spans_named(exporter, "enqueue flaky")
    assert enqueue.kind is SpanKind.PRODUCER
    assert enqueue.context.trace_id == request_span.get_span_context().trace_id
    assert enqueue.parent is not None and enqueue.parent.span_id == request_span.get_span_context().span_id
    assert dict(enqueue.attributes) == {"taskflow.task_id": task_id, "taskflow.task_name": "flaky"}

    attempts = sorted(spans_named(exporter, "run flaky"), key=lambda span: span.attributes["taskflow.attempt"])
    for number, (span, outcome) in enumerate(zip(attempts, ("retrying", "failed"), strict=True), start=1):
        assert span.kind is SpanKind.CONSUMER
        assert dict(span.attributes) == {
            "taskflow.task_id": task_id,
            "taskflow.task_name": "flaky",
            "taskflow.attempt": number,
            "taskflow.outcome": outcome,
        }
        assert [link.context.span_id for link in span.links] == [enqueue.context.span_id]
        assert span.context.trace_id != enqueue.context.trace_id  # a trace of its own
        assert span.status.status_code is StatusCode.ERROR
        assert any(event.name == "exception" for event in span.events)
    inner = spans_named(exporter, "inside the task")
    assert {span.parent.span_id for span in inner} == {span.context.span_id for span in attempts}


async def test_a_sync_task_that_succeeds_has_a_succeeded_attempt_span(make_manager, exported) -> None:
    provider, exporter = exported
    manager = make_manager()
    manager.enable_tracing(provider)

    @manager.task
    def fine() -> str:
        return "ok"

    async with manager.lifespan():
        task_id = manager.enqueue(fine)
        await wait_for_status(manager, task_id, TaskStatus.SUCCESS)
        await eventually(lambda: bool(spans_named(exporter, "run fine")))
    [span] = spans_named(exporter, "run fine")
    assert span.attributes["taskflow.outcome"] == "succeeded"
    assert span.status.status_code is StatusCode.UNSET


async def test_tracing_is_refused_once_the_manager_runs(make_manager, exported) -> None:
    manager = make_manager()
    async with manager.lifespan():
        with pytest.raises(RuntimeError, match="before the task manager starts"):
            manager.enable_tracing(exported[0])


def test_without_tracing_taskflow_imports_nothing_of_opentelemetry() -> None:
    script = """
import sys
import app.taskflow, app.taskflow.runner, app.taskflow.manager
from app.taskflow import TaskManager
TaskManager()
print(sorted(m for m in sys.modules if m.startswith("app.taskflow.tracing") or m.startswith("opentelemetry.sdk")))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=SERVICE_ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"
