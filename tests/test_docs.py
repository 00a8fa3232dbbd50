"""The user docs read as a guide: no dates, commit hashes, work logs or tracker references.

Measurement history belongs in commit messages and the latest figures in the service's
`bench/README.md`; the pages users read say what the product does and how to use it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import PROJECT_TEMPLATE, TEMPLATE_DIR, Options

USER_DOCS = sorted(
    [
        TEMPLATE_DIR / "README.md",
        *(TEMPLATE_DIR / "docs").glob("*.md"),
        PROJECT_TEMPLATE / "README.md",
        PROJECT_TEMPLATE / "app/taskflow/README.md",
        PROJECT_TEMPLATE / "app/taskflow/CHANGELOG.md",
    ]
)

# Each pattern names a kind of text that dates a page or points where users cannot follow.
FORBIDDEN = {
    "a date": re.compile(r"\b20\d\d-\d\d-\d\d\b"),
    "a commit hash": re.compile(r"(?<![\w/.-])[0-9a-f]{7,40}(?![\w/.-])"),
    "a session or work-log reference": re.compile(r"\b(?:first|second|third|fourth|fifth|later) session\b", re.I),
    "a reference to the design brief": re.compile(r"\bdesign\.md\b"),
    "a tracker reference": re.compile(r"\bissue #?\d+\b", re.I),
}


def _hash_like(match: str) -> bool:
    # Plain words of hex letters ("added", "deadbeef" in an example) are not hashes; a hash
    # mixes digits and letters.
    return bool(re.search(r"\d", match)) and bool(re.search(r"[a-f]", match))


@pytest.mark.parametrize("page", USER_DOCS, ids=lambda path: str(path.relative_to(TEMPLATE_DIR)))
def test_user_docs_hold_no_dates_hashes_or_work_log(page: Path) -> None:
    found = []
    in_example = False
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1):
        # Code blocks show example commands and output, whose dates are made up.
        if line.lstrip().startswith("```"):
            in_example = not in_example
        if in_example:
            continue
        for kind, pattern in FORBIDDEN.items():
            for match in pattern.findall(line):
                if kind == "a commit hash" and not _hash_like(match):
                    continue
                found.append(f"line {number}: {kind} ({match!r})")
    assert found == [], f"{page.name} should read as a guide; move history to commit messages: " + "; ".join(found)


def _documented_fields(table_heading: str) -> set[str]:
    """The backticked names in the first column of the table after `table_heading` in docs/admin.md."""
    text = (TEMPLATE_DIR / "docs/admin.md").read_text(encoding="utf-8")
    lines = text[text.index(table_heading) :].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i, line in enumerate(lines[start:], start) if not line.startswith("|")), len(lines))
    body = [line for line in lines[start:end] if line.startswith("| `")]
    return {name for row in body for name in re.findall(r"`(\w+)`", row.split("|")[1])}


def test_admin_docs_list_every_field_a_page_row_and_a_filter_have(baked: Callable[[Options], Path]) -> None:
    script = (
        "import dataclasses, json\n"
        "from app.taskflow.store.queries import SUMMARY_COLUMNS\n"
        "from app.taskflow.store import TaskFilter\n"
        "print(json.dumps([[c.name for c in SUMMARY_COLUMNS], [f.name for f in dataclasses.fields(TaskFilter)]]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=baked({}), capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    row_fields, filter_fields = json.loads(result.stdout)
    assert _documented_fields("Each row has these fields") == set(row_fields), "update docs/admin.md's row table"
    assert _documented_fields("`TaskFilter` (") == set(filter_fields), "update docs/admin.md's TaskFilter table"
