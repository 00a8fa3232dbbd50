"""Settings that reach the task manager, what an empty value means, and values that are refused."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.config import Settings
from app.main import create_app
from app.tasks import task_manager


@pytest.fixture(autouse=True)
def real_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings from the environment need them (see test_startup_checks.py)."""
    monkeypatch.setenv("ADMIN_PASSWORD", "a-long-admin-password")
    monkeypatch.setenv("SECRET_KEY", "a-secret-key-that-is-long-enough-for-the-check")


def test_keep_finished_days_reach_the_task_manager_in_seconds(settings: Settings) -> None:
    try:
        create_app(settings.model_copy(update={"task_keep_finished_days": 2.5}))
        assert task_manager.config.keep_finished == 2.5 * 86400
    finally:
        task_manager.configure(keep_finished=None)  # the module's manager is shared by later tests


def test_task_processes_reach_the_task_manager(settings: Settings) -> None:
    before = task_manager.config.processes
    try:
        create_app(settings.model_copy(update={"task_processes": before + 3}))
        assert task_manager.config.processes == before + 3
    finally:
        task_manager.configure(processes=before)  # the module's manager is shared by later tests


def test_unset_task_processes_keep_taskflows_default(settings: Settings) -> None:
    before = task_manager.config.processes
    create_app(settings)
    assert settings.task_processes is None
    assert task_manager.config.processes == before


@pytest.mark.parametrize("processes", ["0", "-1", "many"])
def test_task_processes_must_be_a_positive_count(monkeypatch: pytest.MonkeyPatch, processes: str) -> None:
    monkeypatch.setenv("TASK_PROCESSES", processes)
    with pytest.raises(ValidationError, match="task_processes"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_unset_keep_finished_days_keep_every_task(settings: Settings) -> None:
    create_app(settings)
    assert settings.task_keep_finished_days is None
    assert task_manager.config.keep_finished is None


def test_an_empty_keep_finished_days_in_the_environment_keeps_every_task(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASK_KEEP_FINISHED_DAYS", "")
    assert Settings(_env_file=None).task_keep_finished_days is None  # type: ignore[call-arg]


@pytest.mark.parametrize("days", ["0", "-1"])
def test_keep_finished_days_must_be_positive(monkeypatch: pytest.MonkeyPatch, days: str) -> None:
    monkeypatch.setenv("TASK_KEEP_FINISHED_DAYS", days)
    with pytest.raises(ValidationError, match="task_keep_finished_days"):
        Settings(_env_file=None)  # type: ignore[call-arg]


@pytest.mark.parametrize("url", ["", "data/app.db"])
def test_a_database_url_that_is_not_a_url_is_refused_with_the_forms_that_work(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    with pytest.raises(ValidationError, match=r"database_url[\s\S]*DATABASE_URL is not a database URL; use sqlite:///"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_a_postgres_url_gets_the_installed_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://app@db:5432/app")
    assert Settings(_env_file=None).database_url == "postgresql+psycopg://app@db:5432/app"  # type: ignore[call-arg]
