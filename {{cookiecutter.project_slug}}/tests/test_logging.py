"""The service's logging and request ids: JSON or text lines, records tagged with their request and task."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from app.config import Settings
from app.logging_setup import TextFormatter, configure_logging
from app.main import create_app
from app.tasks import gave_up

from .taskflow.procs import wait_until

AUTH = ("admin", "admin-password")


@pytest.fixture
def json_lines(settings: Settings) -> Iterator[tuple[TestClient, io.StringIO]]:
    """The service with LOG_FORMAT=json, its log lines written to a buffer instead of stderr."""
    app = create_app(settings.model_copy(update={"log_format": "json"}))
    [handler] = [h for h in logging.getLogger().handlers if getattr(h, "service_handler", False)]
    buffer = io.StringIO()
    handler.setStream(buffer)  # type: ignore[attr-defined]
    try:
        with TestClient(app) as client:
            yield client, buffer
    finally:
        configure_logging()  # back to stderr for the tests that follow


def entries(buffer: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line]


def wait_for_task(client: TestClient, task_id: str, status: str) -> None:
    wait_until(
        lambda: client.get(f"/tasks/{task_id}", auth=AUTH).json().get("status") == status,
        timeout=30,
        what=f"task {task_id} {status}",
    )


def test_a_clients_valid_request_id_is_kept_and_returned(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        response = client.get("/healthz", headers={"X-Request-ID": "checkout-42.retry_1"})
    assert response.headers["X-Request-ID"] == "checkout-42.retry_1"


@pytest.mark.parametrize("offered", [None, "", "has spaces", "x" * 129, "semi;colon", "a/b"])
def test_a_missing_or_invalid_request_id_is_replaced_by_a_new_one(settings: Settings, offered: str | None) -> None:
    headers = {} if offered is None else {"X-Request-ID": offered}
    with TestClient(create_app(settings)) as client:
        first = client.get("/healthz", headers=headers).headers["X-Request-ID"]
        second = client.get("/healthz", headers=headers).headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", first) and re.fullmatch(r"[0-9a-f]{32}", second)
    assert first != second


def test_a_tasks_log_lines_carry_the_task_and_the_request_that_enqueued_it(
    json_lines: tuple[TestClient, io.StringIO],
) -> None:
    client, buffer = json_lines
    response = client.post("/signup", params={"email": "json@example.com"}, headers={"X-Request-ID": "signup-7"})
    task_id = response.json()["task_id"]
    wait_for_task(client, task_id, "success")
    [line] = [e for e in entries(buffer) if e["message"] == "sending welcome email to json@example.com"]
    assert line["level"] == "INFO" and line["logger"] == "app.tasks"
    assert (line["task_id"], line["task_name"], line["attempt"]) == (task_id, "send_email", 1)
    assert line["request_id"] == "signup-7"


def test_the_example_hook_logs_and_counts_a_task_that_gives_up(json_lines: tuple[TestClient, io.StringIO]) -> None:
    client, buffer = json_lines
    before = gave_up["flaky"]
    task_id = client.post("/flaky", params={"failure_rate": 1.0}).json()["task_id"]
    wait_for_task(client, task_id, "failed")

    def hook_line() -> list[dict]:
        return [e for e in entries(buffer) if e["message"].startswith(f"task {task_id} (flaky) gave up")]

    [line] = wait_until(hook_line, timeout=30, what="the example hook's log line")
    assert gave_up["flaky"] == before + 1
    assert line["level"] == "WARNING"
    assert line["message"].endswith("after attempt 4: the upstream service dropped the connection")


def test_text_lines_end_with_the_request_and_task_they_belong_to() -> None:
    record = logging.LogRecord("app.tasks", logging.INFO, __file__, 1, "sending %s", ("mail",), None)
    record.request_id, record.task_name, record.task_id, record.attempt = "r-1", "send_email", "abc", 2
    line = TextFormatter().format(record)
    context = "[request_id=r-1 task_name=send_email task_id=abc attempt=2]"
    assert line.endswith(f"INFO     [app.tasks] sending mail {context}")
    plain = logging.LogRecord("app", logging.WARNING, __file__, 1, "no context", None, None)
    assert TextFormatter().format(plain).endswith("WARNING  [app] no context")


def test_log_settings_take_any_case_and_refuse_unknown_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADMIN_OPEN", "true")  # no credentials needed to read the log settings
    monkeypatch.setenv("LOG_LEVEL", "debug")
    monkeypatch.setenv("LOG_FORMAT", "JSON")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (settings.log_level, settings.log_format) == ("DEBUG", "json")
    monkeypatch.setenv("LOG_FORMAT", "xml")
    with pytest.raises(ValidationError, match=r"(?s)log_format.*'text' or 'json'"):
        Settings(_env_file=None)  # type: ignore[call-arg]
    monkeypatch.setenv("LOG_FORMAT", "text")
    monkeypatch.setenv("LOG_LEVEL", "loud")
    with pytest.raises(ValidationError, match=r"(?s)log_level.*'DEBUG'"):
        Settings(_env_file=None)  # type: ignore[call-arg]
