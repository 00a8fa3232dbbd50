"""Text the database would refuse (a lone surrogate, a NUL, a text too long) is made storable:
the write goes in, the task's outcome is kept, and every page shows it."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest

from app.taskflow import TaskStatus, current_task
from app.taskflow.storable import REPLACEMENT, TextLimit, displayable, storable_json, storable_text

from .conftest import ADMIN, wait_for_status

# What SQLite's driver refuses, and what PostgreSQL refuses.
UNSTORABLE = {"lone surrogate": "\ud800", "NUL": "\x00"}
STORED_AS = {"\ud800": REPLACEMENT, "\x00": ""}


def test_plain_text_is_kept_as_it_is() -> None:
    text = "an ordinary error: 100% done, café ☕"
    assert storable_text(text, TextLimit(200)) == text


@pytest.mark.parametrize(("bad", "stored"), [("\ud800", REPLACEMENT), ("\udfff", REPLACEMENT), ("\x00", "")])
def test_unstorable_characters_are_replaced_or_removed(bad: str, stored: str) -> None:
    assert storable_text(f"a{bad}b{bad}") == f"a{stored}b{stored}"
    assert storable_text(f"a{bad}b").encode("utf-8")  # encodable: every driver accepts it


def test_a_long_text_is_cut_to_its_limit_and_says_how_much_was_cut() -> None:
    cut = storable_text("x" * 1000, TextLimit(500))
    kept = cut.index(" [...")
    assert len(cut) <= 500 and kept > 450
    assert cut == "x" * kept + f" [... {1000 - kept} characters cut]"


def test_a_long_traceback_keeps_its_end() -> None:
    text = "frame\n" * 1000 + "ValueError: the cause"
    cut = storable_text(text, TextLimit(300, keep_end=True))
    assert len(cut) <= 300
    assert cut.endswith("ValueError: the cause")
    mark = re.match(r"\[\.\.\. (\d+) characters cut\] ", cut)
    assert mark is not None and text.endswith(cut[mark.end() :])
    assert int(mark.group(1)) == len(text) - len(cut[mark.end() :])


def test_a_text_at_its_limit_is_not_cut() -> None:
    assert storable_text("y" * 500, TextLimit(500)) == "y" * 500


def test_json_with_unstorable_strings_stays_json_with_storable_strings() -> None:
    import json

    text = json.dumps({"message": "bad \ud800 and \x00 here", "n": [1, "\udc00"]})
    assert json.loads(storable_json(text)) == {"message": f"bad {REPLACEMENT} and  here", "n": [1, REPLACEMENT]}
    plain = json.dumps({"message": "fine"})
    assert storable_json(plain) is plain


def test_displayable_repairs_nested_values_and_keys() -> None:
    assert displayable({"k\ud800": ["a\x00", {"x": "\udfff"}], "n": 3}) == {
        f"k{REPLACEMENT}": ["a", {"x": REPLACEMENT}],
        "n": 3,
    }


@pytest.mark.parametrize("persist", [False, True], ids=["not-persisted", "persisted"])
@pytest.mark.parametrize("bad", list(UNSTORABLE.values()), ids=list(UNSTORABLE))
async def test_a_task_whose_texts_the_database_would_refuse_fails_once_and_is_shown(
    make_manager: Any, make_app: Any, client_for: Any, bad: str, persist: bool
) -> None:
    manager = make_manager()
    runs: list[int] = []

    @manager.task(name="refusable", retries=0, persist=persist)
    def refusable(payload: str) -> None:
        runs.append(1)
        current_task().progress(1, 2, f"progress {payload}")
        logging.getLogger("tests.refusable").warning("log %s", payload)
        raise ValueError(f"error {payload}")

    app = make_app(manager, display_func_args=True)
    stored = STORED_AS[bad]
    async with client_for(app, auth=ADMIN) as client, manager.events.subscribe() as events:
        task_id = manager.enqueue(refusable, kwargs={"payload": f"<{bad}>"})
        row = await wait_for_status(manager, task_id, TaskStatus.FAILED)
        live = [events.get_nowait() for _ in range(events.qsize())]
        pages = {
            "dashboard": await client.get("/tasks/dashboard"),
            "table": await client.get("/tasks/dashboard/partials/table"),
            "task page": await client.get(f"/tasks/dashboard/tasks/{task_id}"),
            "list": await client.get("/tasks"),
            "detail": await client.get(f"/tasks/{task_id}"),
        }
    assert len(runs) == 1 and row.attempt == 1
    assert row.error_message == f"error <{stored}>"
    assert row.progress_message == f"progress <{stored}>"
    assert f"<{stored}>" in row.traceback
    for page, response in pages.items():
        assert response.status_code == 200, page
    assert f"error &lt;{stored}&gt;" in pages["task page"].text
    assert f"log &lt;{stored}&gt;" in pages["task page"].text
    detail = pages["detail"].json()
    assert detail["error"] == f"error <{stored}>"
    assert detail["kwargs"] == {"payload": f"<{stored}>"}
    assert [task["task_id"] for task in pages["list"].json()] == [task_id]
    # The live events (the dashboard's stream, Redis) carry the message as it was stored.
    assert f"progress <{stored}>" in {event.progress_message for event in live}
