"""Repository hygiene that CI guards: no merge conflict markers left behind (e.g. after a template update)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIPPED = {".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache", "data", "node_modules"}
MARKERS = ("<<<<<<< ", ">>>>>>> ")


def text_files(root: Path) -> list[Path]:
    files = []
    for path in root.rglob("*"):
        if path.is_file() and not SKIPPED & set(path.relative_to(root).parts) and path.suffix != ".pyc":
            files.append(path)
    return files


def conflict_lines(path: Path) -> list[int]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    except (UnicodeDecodeError, OSError):
        return []
    starts = [n for n, line in enumerate(lines, 1) if line.startswith(MARKERS[0])]
    ends = [n for n, line in enumerate(lines, 1) if line.startswith(MARKERS[1])]
    return starts + ends if starts and ends else []


def test_no_merge_conflict_markers_are_left_in_the_repository() -> None:
    found = {str(path.relative_to(ROOT)): lines for path in text_files(ROOT) if (lines := conflict_lines(path))}
    assert not found, f"resolve the merge conflicts left in: {found}"
