"""Check every answer again before a replayed bake writes anything.

A normal bake already checked the answers while cookiecutter asked them (answers_extension.py);
a replay (`cookiecutter --replay`) asks nothing, so this hook is its only guard. The answers
arrive as one JSON document inside a raw string: JSON escapes every quote and backslash, so no
answer can end the string early or inject code into this hook. Each bad answer prints one
``ERROR:`` line; the hook then exits 1 and cookiecutter removes the half-made folder.
"""

from __future__ import annotations

import json
import sys

ANSWERS: dict[str, object] = json.loads(r"""{{ cookiecutter | jsonify }}""")
# The rules live beside this hook in the template; cookiecutter runs a rendered copy of the hook
# elsewhere, so the answers extension passes the folder's absolute path.
# Single quotes: the JSON string starts with a double quote.
sys.path.insert(0, json.loads(r'''{{ answer_rules_dir | jsonify }}'''))  # fmt: skip

from answer_rules import error_lines  # noqa: E402

SLUG_DERIVED = ANSWERS.get("project_slug") == r"""{{ cookiecutter.project_name | project_slug }}"""


def main() -> int:
    lines = error_lines(ANSWERS, slug_derived=SLUG_DERIVED)
    for line in lines:
        print(line, file=sys.stderr)
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main())
