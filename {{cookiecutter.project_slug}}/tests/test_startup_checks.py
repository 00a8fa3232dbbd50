"""The service refuses to start without real credentials, says how to make them, and never
repeats a secret in an error; the admin stays out of the public OpenAPI schema unless asked."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from app.config import Settings, settings_problems
from app.main import create_app

SERVICE_ROOT = Path(__file__).resolve().parents[1]
GOOD = {
    "SECRET_KEY": "k" * 8 + "-a-secret-key-that-is-long-enough",
    "ADMIN_PASSWORD": "a-long-admin-password",
}


def settings_from(monkeypatch: pytest.MonkeyPatch, **env: str | None) -> Settings:
    for name in ("SECRET_KEY", "ADMIN_PASSWORD", "ADMIN_OPEN", "ADMIN_READONLY_USERNAME", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {**GOOD, **env}.items():
        if value is not None:
            monkeypatch.setenv(name, value)
    return Settings(_env_file=None)  # type: ignore[call-arg]


def problems(error: pytest.ExceptionInfo[ValidationError]) -> str:
    return "\n".join(settings_problems(error.value))


@pytest.mark.parametrize("name", ["ADMIN_PASSWORD", "SECRET_KEY"])
@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "is missing or empty"),
        ("", "is missing or empty"),
        ("   ", "is missing or empty"),
        ("change-me", "is a placeholder"),
        ("short-9ch", "is shorter than"),
    ],
)
def test_missing_empty_placeholder_or_short_credentials_are_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str | None, reason: str
) -> None:
    with pytest.raises(ValidationError) as error:
        settings_from(monkeypatch, **{name: value})
    lines = settings_problems(error.value)
    line = next(line for line in lines if name in line)
    assert reason in line and "secrets.token_urlsafe" in line, line
    assert any("ADMIN_OPEN=true" in line for line in lines)
    if value and value.strip():
        assert value not in str(error.value) and value not in "\n".join(lines)


def test_the_env_example_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    example = dict(
        line.split("=", 1)
        for line in (SERVICE_ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#") and "=" in line
    )
    with pytest.raises(ValidationError) as error:
        settings_from(monkeypatch, SECRET_KEY=example["SECRET_KEY"], ADMIN_PASSWORD=example["ADMIN_PASSWORD"])
    text = problems(error)
    assert "ADMIN_PASSWORD is a placeholder" in text and "SECRET_KEY is a placeholder" in text


def test_a_read_only_user_needs_a_real_password_too(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError) as error:
        settings_from(monkeypatch, ADMIN_READONLY_USERNAME="viewer")
    assert "ADMIN_READONLY_PASSWORD is missing" in problems(error)


def test_admin_open_starts_without_credentials_and_acts_only_from_this_machine(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = settings_from(
        monkeypatch, ADMIN_OPEN="true", ADMIN_PASSWORD=None, SECRET_KEY=None, DATABASE_URL=f"sqlite:///{tmp_path}/a.db"
    )
    with TestClient(create_app(settings)) as client:  # host "testserver", client "testclient"
        listed = client.get("/tasks")
        retry = client.post("/tasks/no-such-task/retry")
        local = client.post("/tasks/no-such-task/retry", headers={"host": "127.0.0.1:8000"})
    assert listed.status_code == 200
    assert retry.status_code == 403 and "only for this machine" in retry.json()["detail"]
    assert local.status_code == 403 and "only from this machine" in local.json()["detail"]  # client not loopback


def test_a_bad_database_url_error_shows_no_part_of_its_password(monkeypatch: pytest.MonkeyPatch) -> None:
    password = "Pw-4f9e1c7d2b8a6e3f"
    with pytest.raises(ValidationError) as error:
        settings_from(monkeypatch, DATABASE_URL=f"postgresql+psycopg://app:{password}@db:port/app")
    shown = str(error.value) + "\n" + problems(error)
    assert "DATABASE_URL is not a database URL" in shown
    for start in range(0, len(password) - 3):
        assert password[start : start + 4] not in shown, password[start : start + 4]


def test_the_service_refuses_to_start_with_one_line_per_problem(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ADMIN_", "SECRET_KEY"))}
    env.update(PYTHONPATH=str(SERVICE_ROOT), DATABASE_URL=f"sqlite:///{tmp_path}/a.db")
    command = [sys.executable, "-m", "uvicorn", "--factory", "app.main:create_app", "--port", "0"]
    # From an empty folder: no .env is found, as when the service is started from elsewhere.
    finished = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert finished.returncode != 0
    lines = [line for line in finished.stderr.splitlines() if line.startswith("ERROR:")]
    assert any(line.startswith("ERROR: ADMIN_PASSWORD is missing") and "token_urlsafe" in line for line in lines)
    assert any(line.startswith("ERROR: SECRET_KEY is missing") for line in lines)
    assert "Traceback" not in finished.stderr


def test_admin_routes_are_left_out_of_the_public_openapi_schema(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        hidden = client.get("/openapi.json").json()["paths"]
    with TestClient(create_app(settings.model_copy(update={"admin_openapi": True}))) as client:
        listed = client.get("/openapi.json").json()["paths"]
    assert not [path for path in hidden if path.startswith("/tasks")]
    assert "/tasks" in listed and "/tasks/{task_id}/retry" in listed
