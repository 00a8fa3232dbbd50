"""OpenTelemetry spans: an enqueue is a span in the caller's trace, each attempt a span linked to it.

Imported only by `TaskManager.enable_tracing()`: without it taskflow imports nothing of
OpenTelemetry. An attempt starts a trace of its own (it may run long after the request, and
again on a retry) with a link to its enqueue span; the task's own spans are children of it.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, Status, StatusCode

# Attribute names of the spans (and of nothing else).
TASK_ID = "taskflow.task_id"
TASK_NAME = "taskflow.task_name"
ATTEMPT = "taskflow.attempt"
OUTCOME = "taskflow.outcome"


class TaskTracer:
    def __init__(self, tracer_provider: Any = None) -> None:
        self._tracer = trace.get_tracer("taskflow", tracer_provider=tracer_provider)

    def enqueued(self, task_id: str, name: str) -> SpanContext:
        """A span for the enqueue, in the caller's current trace; returns what attempts link to."""
        attributes = {TASK_ID: task_id, TASK_NAME: name}
        with self._tracer.start_as_current_span(
            f"enqueue {name}", kind=SpanKind.PRODUCER, attributes=attributes
        ) as span:
            return span.get_span_context()

    def attempt(self, task_id: str, name: str, attempt: int, enqueued: SpanContext | None) -> Span:
        """Start the span of one attempt (ended by `finish`)."""
        return self._tracer.start_span(
            f"run {name}",
            context=otel_context.Context(),  # a trace of its own, not the enqueuing request's
            kind=SpanKind.CONSUMER,
            links=[Link(enqueued)] if enqueued is not None else (),
            attributes={TASK_ID: task_id, TASK_NAME: name, ATTEMPT: attempt},
        )

    @staticmethod
    def activate(span: Span) -> None:
        """Make `span` the current one; called inside the attempt's own context copy."""
        otel_context.attach(trace.set_span_in_context(span))

    @staticmethod
    def finish(span: Span, outcome: str, error: BaseException | None = None) -> None:
        span.set_attribute(OUTCOME, outcome)
        if error is not None and outcome in ("failed", "retrying"):
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        span.end()
