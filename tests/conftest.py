"""Shared helpers for the template tests: baking, the option sets, and service checks.

Every bake goes through cookiecutter's own Python API into a temporary folder, with a
cookiecutter config of our own so that the developer's ~/.cookiecutterrc and replay folder are
neither read nor written. Bakes that tests only read are made once per session and option set.
"""

from __future__ import annotations

import fnmatch
import json
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
from cookiecutter.main import cookiecutter

from hooks.answer_rules import CHOICES

TEMPLATE_DIR = Path(__file__).resolve().parent.parent
PROJECT_TEMPLATE = TEMPLATE_DIR / "{{cookiecutter.project_slug}}"
CONTEXT: dict[str, object] = json.loads((TEMPLATE_DIR / "cookiecutter.json").read_text(encoding="utf-8"))

IN_CI = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}

# `make test` runs these tests, and a `make` they start in a bake would inherit its level and
# flags and print "make[1]: Entering directory" lines among the commands the tests read.
for _make_variable in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS"):
    os.environ.pop(_make_variable, None)
# The servers the baked suites use; the baked tests create (and drop) their own databases on it.
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")

Options = Mapping[str, str]


def choices() -> dict[str, list[str]]:
    """Every answer with a fixed set of values; the first value is the default."""
    return {name: list(values) for name, values in CHOICES.items()}


def option_id(options: Options) -> str:
    return "+".join(f"{name}={value}" for name, value in options.items()) or "default"


def _option_sets() -> dict[str, dict[str, str]]:
    # One option at a time, plus the pairs that interact; not the full cross product.
    sets: list[dict[str, str]] = [{}]
    sets += [{name: value} for name, values in choices().items() for value in values[1:]]
    sets += [{"database": "postgresql", "use_redis": "yes"}]
    return {option_id(options): options for options in sets}


OPTION_SETS = _option_sets()
SERVICE_SETS = {name: OPTION_SETS[name] for name in ("default", "database=postgresql+use_redis=yes")}


def copy_without_render(relative: str) -> bool:
    """True when cookiecutter copies this project file verbatim (same rule it uses: fnmatch)."""
    patterns = CONTEXT.get("_copy_without_render", [])
    assert isinstance(patterns, list)
    return any(fnmatch.fnmatch(relative, pattern) for pattern in patterns)


def project_files(root: Path) -> Iterator[Path]:
    """Every file of a project folder, without caches that tools leave behind."""
    for path in sorted(root.rglob("*")):
        parts = path.relative_to(root).parts
        if path.is_file() and not {"__pycache__", ".pytest_cache", ".ruff_cache", ".venv", ".git"} & set(parts):
            yield path


def require_service(name: str, reachable: bool, how: str) -> None:
    """Skip a test whose server is missing; with CI=true fail instead, so CI never hides it."""
    if reachable:
        return
    if IN_CI:
        pytest.fail(f"CI=true and {name} is not reachable: {how}")
    pytest.skip(f"{name} is not reachable: {how}; run with CI=true to make this a failure")


def postgres_reachable(url: str = POSTGRES_URL) -> bool:
    import psycopg

    try:
        with psycopg.connect(url.replace("+psycopg", ""), connect_timeout=3):
            return True
    except psycopg.Error:
        return False


def redis_reachable(url: str = REDIS_URL) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=3)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


@pytest.fixture(scope="session")
def cookiecutter_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("cookiecutter-home")
    config = home / "config.yaml"
    config.write_text(f"cookiecutters_dir: {home / 'templates'}\nreplay_dir: {home / 'replay'}\n", encoding="utf-8")
    return config


Bake = Callable[..., Path]


@pytest.fixture(scope="session")
def bake_into(cookiecutter_config: Path) -> Bake:
    """bake_into(output_dir, template=TEMPLATE_DIR, **answers) -> the generated project folder."""

    def bake(output_dir: Path, template: Path = TEMPLATE_DIR, **answers: str) -> Path:
        return Path(
            cookiecutter(
                str(template),
                no_input=True,
                extra_context=answers,
                output_dir=str(output_dir),
                config_file=str(cookiecutter_config),
            )
        )

    return bake


@pytest.fixture(scope="session")
def baked(bake_into: Bake, tmp_path_factory: pytest.TempPathFactory) -> Callable[[Options], Path]:
    """baked(options) -> a bake shared by the whole session; tests must only read it."""
    cache: dict[tuple[tuple[str, str], ...], Path] = {}

    def get(options: Options) -> Path:
        key = tuple(sorted(options.items()))
        if key not in cache:
            cache[key] = bake_into(tmp_path_factory.mktemp("bake"), **options)
        return cache[key]

    return get
