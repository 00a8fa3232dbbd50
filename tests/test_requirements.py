"""requirements-test.txt keeps up with what the baked service needs to run its own tests."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, requires, version
from pathlib import Path

from packaging.requirements import Requirement

from tests.conftest import Options


def unmet(requirement: Requirement, seen: set[str]) -> list[str]:
    """Why this interpreter does not satisfy `requirement`, following its extras; [] when it does."""
    if requirement.marker is not None and not requirement.marker.evaluate():
        return []
    try:
        installed = version(requirement.name)
    except PackageNotFoundError:
        return [f"{requirement} is not installed"]
    if not requirement.specifier.contains(installed, prereleases=True):
        return [f"{requirement} but {installed} is installed"]
    problems = []
    for extra in sorted(requirement.extras):
        if f"{requirement.name}[{extra}]" in seen:
            continue
        seen.add(f"{requirement.name}[{extra}]")
        for line in requires(requirement.name) or []:
            needed = Requirement(line)
            if needed.marker is not None and needed.marker.evaluate({"extra": extra}):
                needed.marker = None
                problems += unmet(needed, seen)
    return problems


def test_test_environment_satisfies_the_baked_dependencies(baked: Callable[[Options], Path]) -> None:
    # The PostgreSQL + Redis bake has every optional line, so it needs the most.
    project = baked({"database": "postgresql", "use_redis": "yes"})
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wanted = [*pyproject["dependencies"], *pyproject.get("optional-dependencies", {}).get("dev", [])]
    problems = [problem for line in wanted for problem in unmet(Requirement(line), set())]
    assert problems == [], "update requirements-test.txt: " + "; ".join(problems)
