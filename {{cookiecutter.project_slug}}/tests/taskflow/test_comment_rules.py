"""Comments in taskflow say why, in a sentence: measurements belong with the benchmarks.

A timing or a profiler share in a comment is true on one machine on one day and then misleads
whoever edits the code; `bench/README.md` keeps the latest figures with the command that made
them. This scans taskflow's comments and docstrings for measured figures (times in ms or µs,
percentages, rates per second).
"""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

TASKFLOW = Path(__file__).resolve().parents[2] / "app" / "taskflow"

# A number followed by a unit of measurement: "3 ms", "0.6 µs", "1.4%", "5,000 req/s" (a
# quoted "50%" is an example of text, not a measurement).
MEASURED = re.compile(r"\d[\d,.]*\s*(?:µs|us\b|ms\b|%(?![\"'])|(?:req|requests|tasks|rows)/s\b)")


def measured_figures(source: str, filename: str) -> list[str]:
    """`file:line: text` for each comment or docstring line holding a measured figure."""
    found = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            texts = [(token.start[0], token.string)]
        elif token.type == tokenize.STRING and token.string.lstrip("rbuRBU").startswith(('"""', "'''")):
            texts = [(token.start[0] + n, line) for n, line in enumerate(token.string.splitlines())]
        else:
            continue
        found += [f"{filename}:{line}: {text.strip()}" for line, text in texts if MEASURED.search(text)]
    return found


def test_the_rule_finds_a_timing_in_a_comment_and_a_docstring() -> None:
    source = '"""Fast.\n\nTook 3 ms a claim.\n"""\nx = 1  # 1.4% of the loop, profiled\ny = "50%"\n'
    assert measured_figures(source, "m.py") == ["m.py:3: Took 3 ms a claim.", "m.py:5: # 1.4% of the loop, profiled"]


def test_taskflow_comments_carry_no_measured_figures() -> None:
    found: list[str] = []
    for path in sorted(TASKFLOW.rglob("*.py")):
        found += measured_figures(path.read_text(encoding="utf-8"), str(path.relative_to(TASKFLOW)))
    assert not found, (
        "comments should say why, not how fast it was measured to be; move these figures to "
        "bench/README.md with the command that made them:\n" + "\n".join(found)
    )
