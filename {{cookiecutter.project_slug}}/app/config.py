"""Settings for the whole service, read once from the environment and `.env`."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    app_name: str = "Task service"
    # SQLite file by default; PostgreSQL with postgresql+psycopg://user@host:5432/name.
    database_url: str = "sqlite:///./data/app.db"
    # Apply pending migrations (taskflow's, then the service's) when the service starts. Set it
    # to false when the deploy runs `make migrate` first: a database behind the code then stops
    # the start with one line that says so.
    migrate_on_start: bool = True
    # Optional: carries live dashboard events between instances.
    redis_url: str | None = None
    secret_key: SecretStr = Field(default=SecretStr(""), description="Signs the admin session cookie.")
    admin_username: str = "admin"
    admin_password: SecretStr | None = None
    # A user who may look at the dashboard but not retry or cancel.
    admin_readonly_username: str | None = None
    admin_readonly_password: SecretStr | None = None
    # Show task arguments in the admin (they may hold personal data).
    admin_show_arguments: bool = False
    task_concurrency: int = Field(default=32, ge=1)
    task_thread_pool: int = Field(default=16, ge=1)
    task_shutdown_timeout: float = Field(default=20.0, ge=0)
    task_lease_seconds: float = Field(default=30.0, gt=1)
    task_max_recoveries: int = Field(default=5, ge=1)
    # Delete finished tasks (and their attempts) this many days after they finished; unset keeps all.
    task_keep_finished_days: float | None = Field(default=None, gt=0)
    # Logging on stderr: DEBUG, INFO, WARNING, ERROR or CRITICAL; "text" lines or "json" lines.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    # With the `tracing` extra: send spans to this OTLP/HTTP collector (e.g. http://127.0.0.1:4318).
    otel_exporter_otlp_endpoint: str | None = None

    @field_validator("database_url")
    @classmethod
    def _a_url_with_the_installed_driver(cls, value: str) -> str:
        try:
            make_url(value)
        except ArgumentError:
            raise ValueError(
                "DATABASE_URL is not a database URL; use sqlite:///./data/app.db (a file) or "
                "postgresql+psycopg://user:password@host:5432/dbname"
            ) from None
        # "postgres://" and "postgresql://" would pick psycopg2, which is not installed.
        for prefix in ("postgres://", "postgresql://"):
            if value.startswith(prefix):
                return "postgresql+psycopg://" + value[len(prefix) :]
        return value

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _case_does_not_matter(cls, value: object, info: ValidationInfo) -> object:
        if not isinstance(value, str):
            return value
        return value.strip().upper() if info.field_name == "log_level" else value.strip().lower()

    @field_validator("task_keep_finished_days", mode="before")
    @classmethod
    def _empty_means_keep_all(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("otel_exporter_otlp_endpoint")
    @classmethod
    def _empty_endpoint_is_none(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("redis_url")
    @classmethod
    def _empty_redis_is_none(cls, value: str | None) -> str | None:
        return value or None


@lru_cache
def get_settings() -> Settings:
    return Settings()
