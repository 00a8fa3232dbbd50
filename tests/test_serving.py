"""How the generated service is served: `make demo` twice, `uvicorn app.main:app`, `fastapi run`.

The demo test runs the real top-level `make demo` in a copy of the template. Its virtual
environments are prepared to see this interpreter's packages (a .pth file), so that the test
measures what the Makefiles do, not how fast an index downloads wheels.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import TEMPLATE_DIR, Bake

START_DEADLINE_SECONDS = 240


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_ready(url: str, process: subprocess.Popen[str], log: Path) -> None:
    deadline = time.monotonic() + START_DEADLINE_SECONDS
    while not ready(url):
        if process.poll() is not None:
            raise AssertionError(f"exited with {process.returncode} before {url}/readyz answered:\n{log.read_text()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{url}/readyz did not answer within {START_DEADLINE_SECONDS}s:\n{log.read_text()}")
        time.sleep(0.2)


def served(command: list[str], cwd: Path, log: Path, url: str, env: dict[str, str] | None = None) -> str:
    """Start `command`, wait until `url` is ready, stop it; its output."""
    with log.open("w") as output:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    try:
        wait_ready(url, process, log)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
    return log.read_text()


def venv_seeing_these_packages(venv: Path, scripts: dict[str, str]) -> None:
    """A real venv whose site-packages also reads this interpreter's, with console scripts as wrappers."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    [site_packages] = venv.glob("lib/python3*/site-packages")
    (site_packages / "these-packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    for name, module in scripts.items():
        script = venv / "bin" / name
        script.write_text(f'#!/bin/sh\nexec "$(dirname "$0")/python" -m {module} "$@"\n', encoding="utf-8")
        script.chmod(0o755)


def installs(output: str) -> list[str]:
    return [line for line in output.splitlines() if "pip install" in line or " -m venv " in line]


def test_second_make_demo_reuses_the_venv_and_honours_host_and_port(tmp_path: Path) -> None:
    template = tmp_path / "template"
    shutil.copytree(
        TEMPLATE_DIR, template, ignore=shutil.ignore_patterns(".git", ".venv", "build", "__pycache__", ".*_cache")
    )
    venv_seeing_these_packages(template / ".venv", {"cookiecutter": "cookiecutter"})
    (template / ".venv/.demo-installed").touch()  # the top level's own install is not under test
    service = template / "build" / "my-service"
    venv_seeing_these_packages(service / ".venv", {"uvicorn": "uvicorn", "ruff": "ruff"})
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    demo = ["make", "demo", f"PORT={port}", "HOST=127.0.0.1", f"PYTHON={sys.executable}"]

    first = served(demo, template, tmp_path / "first.log", url)
    assert any("pip install --quiet -e ." in line for line in installs(first)), first
    assert not any("[dev]" in line for line in installs(first)), "make run installed the dev extra"
    assert f"serves {url} " in first, "the post-generation message names another address"

    started = time.monotonic()
    second = served(demo, template, tmp_path / "second.log", url)
    elapsed = time.monotonic() - started
    assert installs(second) == [], f"the second demo reinstalled:\n{second}"
    assert elapsed < START_DEADLINE_SECONDS

    def make_run_commands() -> list[str]:
        result = subprocess.run(["make", "-n", "run"], cwd=service, capture_output=True, text=True, check=True)
        return result.stdout.splitlines()

    # Only a change to the dependency lists reinstalls, not any other edit of pyproject.toml.
    edit(service / "pyproject.toml", 'version = "0.1.0"', 'version = "0.2.0"')
    assert installs("\n".join(make_run_commands())) == []
    edit(service / "pyproject.toml", '"itsdangerous>=2.1,<3"', '"itsdangerous>=2.1,<4"')
    assert any("pip install --quiet -e ." in line for line in make_run_commands())


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


Command = Callable[[int], list[str]]
SERVE_COMMANDS: dict[str, Command] = {
    "uvicorn app.main:app": lambda port: [sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(port)],
    "fastapi run": lambda port: [sys.executable, "-m", "fastapi", "run", "--host", "127.0.0.1", "--port", str(port)],
    "uvicorn --factory": lambda port: [
        sys.executable,
        *("-m", "uvicorn", "--factory", "app.main:create_app", "--port", str(port)),
    ],
}


@pytest.mark.parametrize("name", list(SERVE_COMMANDS))
def test_the_service_serves_with_each_documented_command(bake_into: Bake, tmp_path: Path, name: str) -> None:
    project = bake_into(tmp_path / "bake")
    port = free_port()
    served(SERVE_COMMANDS[name](port), project, tmp_path / "serve.log", f"http://127.0.0.1:{port}")
