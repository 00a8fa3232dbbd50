"""The baked service's own test suite passes, on SQLite and on PostgreSQL with Redis.

The suite runs with this interpreter (requirements-test.txt installs what the service needs),
against the real servers on this machine: each baked test makes its own PostgreSQL database.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import (
    POSTGRES_URL,
    REDIS_URL,
    SERVICE_SETS,
    Bake,
    Options,
    postgres_reachable,
    redis_reachable,
    require_service,
)

# Generous: the vendored module's suite takes minutes; a hang must still end the run.
SUITE_TIMEOUT_SECONDS = 1800
# Settings that would point the baked tests elsewhere than the servers chosen here.
LEAKY_VARIABLES = {"DATABASE_URL", "REDIS_URL", "TEST_DATABASE_URL", "PYTEST_ADDOPTS", "PYTHONPATH"}


def suite_environment(options: Options) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in LEAKY_VARIABLES}
    # No __pycache__ in the bake; CI passes through, so a missing server fails there too.
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["TEST_POSTGRES_URL"] = POSTGRES_URL
    env["TEST_REDIS_URL"] = REDIS_URL
    if options.get("database") == "postgresql":
        env["TEST_DATABASE_URL"] = POSTGRES_URL
    return env


def summary_counts(output: str) -> dict[str, int]:
    """The counts in pytest's closing line, e.g. {"passed": 12, "skipped": 1}."""
    closing = [line for line in output.splitlines() if re.search(r"\d+ (passed|failed|errors?)\b", line)]
    assert closing, f"no pytest summary line in:\n{output[-5000:]}"
    return {word: int(count) for count, word in re.findall(r"(\d+) (\w+)", closing[-1])}


# The default bake runs the whole suite, tests/taskflow included, in DEFAULT_SHARDS slices
# (TEST_SHARD, see the service's tests/conftest.py) that `make test` runs side by side; the
# other bakes run the service's own tests only.
DEFAULT_SHARDS = 3
SUITE_RUNS: dict[str, tuple[Options, str]] = {
    **{f"default-{i}of{DEFAULT_SHARDS}": ({}, f"{i}/{DEFAULT_SHARDS}") for i in range(1, DEFAULT_SHARDS + 1)},
    **{name: (options, "") for name, options in SERVICE_SETS.items() if options},
}


def run_pytest(project: Path, options: Options, *arguments: str, shard: str = "") -> subprocess.CompletedProcess[str]:
    env = suite_environment(options)
    if shard:
        env["TEST_SHARD"] = shard
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *arguments],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=SUITE_TIMEOUT_SECONDS,
        check=False,
    )


def collected(project: Path, shard: str = "") -> list[str]:
    result = run_pytest(project, {}, "--collect-only", shard=shard)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    return [line for line in result.stdout.splitlines() if "::" in line]


@pytest.mark.parametrize(("options", "shard"), list(SUITE_RUNS.values()), ids=list(SUITE_RUNS))
def test_baked_suite_passes(bake_into: Bake, tmp_path: Path, options: Options, shard: str) -> None:
    if options.get("database") == "postgresql":
        require_service("PostgreSQL", postgres_reachable(), f"start it at {POSTGRES_URL} or set TEST_POSTGRES_URL")
    if options.get("use_redis") == "yes":
        require_service("Redis", redis_reachable(), f"start it at {REDIS_URL} or set TEST_REDIS_URL")
    # A bake of its own: the suite may write files, and the shared bakes must stay pristine.
    project = bake_into(tmp_path, **options)
    # tests/taskflow is byte-identical in every bake and runs each store test on SQLite and
    # PostgreSQL (and with Redis) whatever the bake chose, so the default bake's run covers it;
    # the other bakes run the service's own tests, which follow the options.
    scope = [] if not options else ["--ignore=tests/taskflow"]
    result = run_pytest(project, options, *scope, shard=shard)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-20000:]
    counts = summary_counts(output)
    assert counts.get("passed", 0) > 0, output[-5000:]
    assert counts.keys().isdisjoint({"failed", "error", "errors"}), output[-5000:]


def test_the_shards_of_the_default_suite_cover_every_test_once(baked: Callable[[Options], Path]) -> None:
    project = baked({})
    everything = collected(project)
    slices = [collected(project, f"{index}/{DEFAULT_SHARDS}") for index in range(1, DEFAULT_SHARDS + 1)]
    assert all(slices), slices
    assert sorted(test for part in slices for test in part) == sorted(everything)


def test_a_bad_shard_stops_pytest_with_an_example(baked: Callable[[Options], Path]) -> None:
    result = run_pytest(baked({}), {}, "--collect-only", shard="3/2")
    assert result.returncode != 0
    assert "TEST_SHARD='3/2' must be i/n with 1 <= i <= n (example: TEST_SHARD=1/2)" in result.stdout + result.stderr
