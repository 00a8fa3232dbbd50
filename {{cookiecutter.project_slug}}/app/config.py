"""Settings for the whole service, read once from the environment and `.env`."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

MIN_PASSWORD = 12
MIN_SECRET_KEY = 32
# The .env.example values and the usual stand-ins: never accepted as real credentials.
PLACEHOLDER_MARKS = ("change-me", "changeme", "change_me", "replace-me", "replaceme", "your-")
PLACEHOLDERS = {"secret", "password", "admin", "example", "test", "xxx", "none", "null"}
MAKE_ONE = 'python -c "import secrets; print(secrets.token_urlsafe({size}))"'


def secret_problem(name: str, value: SecretStr | None, minimum: int) -> str | None:
    """Why a credential is not good enough, in one line that says how to make one (never the value)."""
    text = value.get_secret_value() if value is not None else ""
    how = f"make one with: {MAKE_ONE.format(size=max(18, minimum))}"
    if not text.strip():
        return f"{name} is missing or empty; set it in .env or the environment ({how})"
    lowered = text.strip().lower()
    if lowered in PLACEHOLDERS or any(mark in lowered for mark in PLACEHOLDER_MARKS):
        return f"{name} is a placeholder, not a secret; replace it ({how})"
    if len(text) < minimum:
        return f"{name} is shorter than {minimum} characters; use a longer random value ({how})"
    return None


class Settings(BaseSettings):
    # Error messages never repeat a value: it may be a password (or a URL holding one).
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", hide_input_in_errors=True
    )

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
    # Start without ADMIN_PASSWORD / SECRET_KEY, for a local experiment: the admin is then open,
    # and accepts actions only from this machine.
    admin_open: bool = False
    # List the admin's JSON API in /openapi.json and /docs (left out by default: they are public).
    admin_openapi: bool = False
    # Tasks running at once in this process; 0 makes it enqueue-only (`make worker` runs them).
    task_concurrency: int = Field(default=32, ge=0)
    task_thread_pool: int = Field(default=16, ge=1)
    # Worker processes for @task(executor="process") tasks at most; unset: the CPU count.
    task_processes: int | None = Field(default=None, ge=1)
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
        except (ArgumentError, ValueError):  # ValueError: e.g. a port that is not a number
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

    @model_validator(mode="after")
    def _real_credentials(self) -> Settings:
        problems = []
        if not self.admin_open:
            problems.append(secret_problem("ADMIN_PASSWORD", self.admin_password, MIN_PASSWORD))
            problems.append(secret_problem("SECRET_KEY", self.secret_key, MIN_SECRET_KEY))
        if self.admin_readonly_username:
            problems.append(secret_problem("ADMIN_READONLY_PASSWORD", self.admin_readonly_password, MIN_PASSWORD))
        found = [problem for problem in problems if problem]
        if found and not self.admin_open:
            found.append("(for a local experiment without login, set ADMIN_OPEN=true instead)")
        if found:
            raise ValueError("\n".join(found))
        return self

    @field_validator("redis_url")
    @classmethod
    def _empty_redis_is_none(cls, value: str | None) -> str | None:
        return value or None


def settings_problems(error: ValidationError) -> list[str]:
    """One line per problem: the setting's variable name and what to do (never its value)."""
    lines = []
    for item in error.errors(include_input=False, include_url=False):
        field = ".".join(str(part) for part in item["loc"]).upper()
        message = str(item["msg"]).removeprefix("Value error, ")
        lines += [f"ERROR: {field}: {line}" if field else f"ERROR: {line}" for line in message.splitlines()]
    return lines


@lru_cache
def get_settings() -> Settings:
    """The settings, or the process stops with one line per problem (no traceback)."""
    try:
        return Settings()
    except ValidationError as error:
        raise SystemExit("\n".join(settings_problems(error))) from None
