"""Text made storable: every text taskflow writes goes through here on its way to the database.

SQLite's driver refuses a lone surrogate ("\\ud800", which Python strings may hold) and
PostgreSQL refuses a NUL ("\\x00"); a column with a size limit refuses a longer text. A refused
write would lose a task's whole outcome for one bad character, so each text is repaired first:
lone surrogates become U+FFFD, NULs are removed (on every database, so a task reads the same
everywhere), and a text longer than its column allows is cut, with a mark that says how much
was cut.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

REPLACEMENT = "\ufffd"
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class TextLimit:
    """How long a column's text may be, and which end of a longer one is kept."""

    chars: int
    # A traceback's last lines name the error: a long one keeps its end.
    keep_end: bool = False


# Plain text columns, by name (the same in the task and the attempt table), with their limits.
# VARCHAR columns get their declared length; TEXT columns a bound that keeps rows and pages small.
TEXT_LIMITS: dict[str, TextLimit] = {
    "name": TextLimit(200),
    "idempotency_key": TextLimit(200),
    "owner": TextLimit(200),
    "error_type": TextLimit(200),
    "error_message": TextLimit(20_000),
    "traceback": TextLimit(20_000, keep_end=True),
    "progress_message": TextLimit(500),
}
# Columns holding JSON that taskflow encoded itself (ASCII, with escapes). The database takes
# any escape, but a lone surrogate escape decodes back into a text no page or response can encode.
JSON_COLUMNS = ("result", "logs")


def storable_text(text: str, limit: TextLimit | None = None) -> str:
    """`text` as every database stores it, at most `limit.chars` long (cut texts say so)."""
    if (limit is None or len(text) <= limit.chars) and text.isascii() and "\x00" not in text:
        return text  # the common case, checked without copying
    text = text.replace("\x00", "")
    if not text.isascii():
        text = _SURROGATE.sub(REPLACEMENT, text)
    if limit is not None and len(text) > limit.chars:
        text = _cut(text, limit)
    return text


def _cut(text: str, limit: TextLimit) -> str:
    # Room for the mark is made for the longest count it could show, so the result always fits.
    keep = max(0, limit.chars - len(_mark(len(text))))
    mark = _mark(len(text) - keep)
    if limit.keep_end:
        return (f"{mark.strip()} " + text[len(text) - keep :])[-limit.chars :]
    return (text[:keep] + mark)[: limit.chars]


def _mark(count: int) -> str:
    return f" [... {count} characters cut]"


def storable_json(text: str) -> str:
    """JSON text (taskflow's own, ASCII) whose strings hold no lone surrogate and no NUL."""
    if "\\ud" not in text and "\\u0000" not in text:
        return text
    try:
        value = json.loads(text)
    except ValueError:
        return storable_text(text)
    return json.dumps(displayable(value), separators=(",", ":"))


def displayable(value: Any) -> Any:
    """A decoded JSON value whose strings can be encoded (for a page or a response): lone
    surrogates become U+FFFD and NULs are removed. Task arguments are stored exactly as given
    (the task must get them back unchanged), so what shows them passes them through this."""
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, list):
        return [displayable(item) for item in value]
    if isinstance(value, dict):
        return {storable_text(str(key)): displayable(item) for key, item in value.items()}
    return value


def cleaner_for(column: str) -> Callable[[str], str] | None:
    """The repair a column's text needs before it is written, or None for a column that needs none."""
    limit = TEXT_LIMITS.get(column)
    if limit is not None:
        return lambda text: storable_text(text, limit)
    if column in JSON_COLUMNS:
        return storable_json
    return None


def storable_values(values: dict[str, Any]) -> dict[str, Any]:
    """A copy of a row's values with every text column made storable (for writes that do not
    go through the compiled statements, such as an insert in the caller's own session)."""
    repaired = dict(values)
    for column, value in values.items():
        clean = cleaner_for(column)
        if clean is not None and isinstance(value, str):
            repaired[column] = clean(value)
    return repaired
