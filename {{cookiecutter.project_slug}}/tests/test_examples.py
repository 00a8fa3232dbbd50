"""The example routes: each enqueues a task, returns its id, and the task does what it says."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app

AUTH = ("admin", "admin-password")


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


def wait_for_task(client: TestClient, task_id: str, *statuses: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(f"/tasks/{task_id}", auth=AUTH)
        if response.status_code == 200 and response.json()["status"] in statuses:
            return response.json()
        assert time.monotonic() < deadline, f"task {task_id} did not reach {statuses}: {response.text}"
        time.sleep(0.05)


def test_signup_enqueues_the_welcome_email(client: TestClient) -> None:
    response = client.post("/signup", params={"email": "new.user@example.com"})
    assert response.status_code == 202
    task = wait_for_task(client, response.json()["task_id"], "success")
    assert task["func_name"] == "send_email"
    assert task["result"] == {"sent_to": "new.user@example.com"}
    assert task["max_attempts"] == 4


def test_signup_refuses_an_invalid_email(client: TestClient) -> None:
    response = client.post("/signup", params={"email": "not-an-email"})
    assert response.status_code == 422
    assert client.get("/tasks", auth=AUTH).headers["X-Total-Count"] == "0"


def test_report_is_persisted_and_reports_its_progress(client: TestClient) -> None:
    task_id = client.post("/reports", params={"seconds": 1}).json()["task_id"]
    task = wait_for_task(client, task_id, "success")
    assert task["persist"] is True
    assert (task["progress_done"], task["progress_total"], task["progress_message"]) == (1, 1, "done")
    assert task["result"] == {"steps": 1}


def test_flaky_task_is_retried_and_then_fails_with_its_error(client: TestClient) -> None:
    task_id = client.post("/flaky", params={"failure_rate": 1.0}).json()["task_id"]
    task = wait_for_task(client, task_id, "failed")
    assert task["attempt"] == 4 and task["retries_used"] == 3
    assert task["error_type"] == "ConnectionError"
    assert [attempt["status"] for attempt in task["attempts"]] == ["failed"] * 4


def test_flaky_task_succeeds_when_the_upstream_is_healthy(client: TestClient) -> None:
    task_id = client.post("/flaky", params={"failure_rate": 0.0}).json()["task_id"]
    assert wait_for_task(client, task_id, "success")["result"] == "ok"


def test_the_admin_api_requires_the_configured_credentials(client: TestClient) -> None:
    assert client.get("/tasks").status_code == 401
    assert client.get("/tasks", auth=("admin", "wrong")).status_code == 401
    assert client.get("/tasks", auth=AUTH).status_code == 200


def test_the_reports_page_lists_report_tasks_only(client: TestClient) -> None:
    report_id = client.post("/reports", params={"seconds": 1}).json()["task_id"]
    signup_id = client.post("/signup", params={"email": "someone@example.com"}).json()["task_id"]
    wait_for_task(client, report_id, "success")
    wait_for_task(client, signup_id, "success")
    page = client.get("/tasks/dashboard/reports", auth=AUTH)
    assert page.status_code == 200
    assert f'id="report-{report_id}"' in page.text
    assert signup_id not in page.text
