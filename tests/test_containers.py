"""The Dockerfile and compose.yaml agree with the Makefile and the settings.

No image can be pulled where these tests run, so they read both files instead of building:
the Dockerfile's instructions and compose.yaml (as YAML), checked against the commands `make run`
and `make worker` run (`make -n run`), the port it exposes, and the settings the service accepts.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.conftest import OPTION_SETS, Options

Baked = Callable[[Options], Path]
CONTAINER_PORT = "8000"
SETS = {name: OPTION_SETS[name] for name in ("default", "database=postgresql", "use_redis=yes", "python_version=3.13")}
SETS["database=postgresql+use_redis=yes"] = OPTION_SETS["database=postgresql+use_redis=yes"]
EACH_SET = pytest.mark.parametrize("options", list(SETS.values()), ids=list(SETS))


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    joined: list[str] = []
    pending = ""
    for line in dockerfile.read_text(encoding="utf-8").splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip("\\").strip() + " " if line.endswith("\\") else line.strip()
        if not line.endswith("\\"):
            joined.append(pending)
            pending = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in joined]


def final_stage(dockerfile: Path) -> list[tuple[str, str]]:
    steps = instructions(dockerfile)
    last_from = max(index for index, (name, _) in enumerate(steps) if name == "FROM")
    return steps[last_from:]


def make_command(project: Path, target: str = "run") -> list[str]:
    """The command `make <target>` runs last (after setting up .venv)."""
    result = subprocess.run(
        ["make", "-n", target, "HOST=0.0.0.0", f"PORT={CONTAINER_PORT}"],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    )
    return shlex.split(result.stdout.splitlines()[-1])


def settings_fields(project: Path) -> set[str]:
    code = "import json; from app.config import Settings; print(json.dumps(sorted(Settings.model_fields)))"
    result = subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True, text=True, check=True)
    return set(json.loads(result.stdout))


@EACH_SET
def test_dockerfile_is_multi_stage_unprivileged_and_runs_what_make_run_runs(baked: Baked, options: Options) -> None:
    project = baked(options)
    dockerfile = project / "Dockerfile"
    steps = instructions(dockerfile)
    python = options.get("python_version", "3.11")
    assert [args.split()[0] for name, args in steps if name == "FROM"] == [f"python:{python}-slim"] * 2
    stage = dict(final_stage(dockerfile))
    assert stage["USER"] not in {"root", "0"}
    # make run: .venv/bin/uvicorn app.main:app --host 0.0.0.0 --port 8000; the image's venv is on PATH.
    command = make_command(project)
    assert command[0] == ".venv/bin/uvicorn"
    assert json.loads(stage["CMD"]) == ["uvicorn", *command[1:]]
    assert stage["EXPOSE"] == CONTAINER_PORT
    healthcheck = stage["HEALTHCHECK"]
    assert f"http://127.0.0.1:{CONTAINER_PORT}/readyz" in healthcheck
    # The runtime install: the dependencies `make run` installs, never the dev extra.
    installs = [args for name, args in steps if name == "RUN" and "pip install" in args]
    assert installs == ["/opt/venv/bin/pip install ."]


@EACH_SET
def test_compose_runs_the_app_with_the_chosen_servers_and_known_settings(baked: Baked, options: Options) -> None:
    project = baked(options)
    compose = yaml.safe_load((project / "compose.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    postgresql = options.get("database") == "postgresql"
    redis = options.get("use_redis") == "yes"
    servers = ({"db", "worker"} if postgresql else set()) | ({"redis"} if redis else set())
    assert set(services) == {"app"} | servers
    app = services["app"]
    assert app["build"] == "."
    assert [port.split(":")[-1] for port in app["ports"]] == [CONTAINER_PORT]
    environment = app["environment"]
    assert {name.lower() for name in environment} <= settings_fields(project), "a variable the service ignores"
    database_url = environment["DATABASE_URL"]
    if postgresql:
        db = services["db"]["environment"]
        user, password, name = db["POSTGRES_USER"], db["POSTGRES_PASSWORD"], db["POSTGRES_DB"]
        assert database_url == f"postgresql+psycopg://{user}:{password}@db:5432/{name}"
        assert app["depends_on"]["db"]["condition"] == "service_healthy"
    else:
        assert database_url == "sqlite:///./data/app.db"
        # The image's working directory holds data/, where the volume is mounted.
        workdir = dict(final_stage(project / "Dockerfile"))["WORKDIR"]
        assert app["volumes"] == [f"data:{workdir}/data"]
    if redis:
        assert environment["REDIS_URL"] == "redis://redis:6379/0"
        assert app["depends_on"]["redis"]["condition"] == "service_healthy"
    else:
        assert "REDIS_URL" not in environment
    if postgresql:
        # The app only enqueues; the worker service runs what `make worker` runs, on the same servers.
        assert environment["TASK_CONCURRENCY"] == 0
        worker = services["worker"]
        assert worker["build"] == "."
        make_worker = make_command(project, "worker")  # .venv/bin/python -m app.worker
        assert make_worker[0] == ".venv/bin/python"
        assert worker["command"] == ["python", *make_worker[1:]]
        assert worker["environment"] == {name: environment[name] for name in environment if name != "TASK_CONCURRENCY"}
        assert worker["depends_on"] == app["depends_on"]
        assert worker["healthcheck"] == {"disable": True}, "the image's health check asks an HTTP server"
    else:
        assert "TASK_CONCURRENCY" not in environment
