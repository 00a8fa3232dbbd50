"""The user docs read as a guide: no dates, commit hashes, work logs or tracker references.

Measurement history belongs in commit messages and the latest figures in the service's
`bench/README.md`; the pages users read say what the product does and how to use it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import PROJECT_TEMPLATE, TEMPLATE_DIR

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
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1):
        for kind, pattern in FORBIDDEN.items():
            for match in pattern.findall(line):
                if kind == "a commit hash" and not _hash_like(match):
                    continue
                found.append(f"line {number}: {kind} ({match!r})")
    assert found == [], f"{page.name} should read as a guide; move history to commit messages: " + "; ".join(found)
