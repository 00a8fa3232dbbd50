"""The admin JSON API: lists and filters, detail, metrics, Prometheus, actions and their audit trail.

Runs on SQLite and PostgreSQL (the `database_url` fixture).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.taskflow import TaskStatus

from .conftest import ADMIN, VIEWER, eventually, wait_for_status

UNKNOWN = "00000000-0000-4000-8000-000000000000"


def build(make_manager: Any, make_app: Any, **admin: Any) -> tuple[Any, Any, dict[str, Any]]:
    manager = make_manager()

    @manager.task(name="ok")
    async def ok(label: str = "") -> dict[str, str]:
        return {"label": label}

    @manager.task(name="boom", retries=1)
    def boom(message: str = "broken") -> None:
        raise ValueError(message)

    @manager.task(name="slow")
    async def slow() -> None:
        await asyncio.sleep(60)

    admin.setdefault("metrics_ttl", 0.0)
    app = make_app(manager, **admin)
    return manager, app, {"ok": ok, "boom": boom, "slow": slow}


async def test_list_filters_by_status_name_and_text(make_manager, make_app, client_for) -> None:
    manager, app, tasks = build(make_manager, make_app)
    async with client_for(app, auth=ADMIN) as client:
        ok_ids = [manager.enqueue(tasks["ok"], kwargs={"label": f"n{n}"}) for n in range(3)]
        boom_id = manager.enqueue(tasks["boom"], kwargs={"message": "disk 100% full"})
        await wait_for_status(manager, boom_id, TaskStatus.FAILED)
        for task_id in ok_ids:
            await wait_for_status(manager, task_id, TaskStatus.SUCCESS)

        everything = await client.get("/tasks")
        failed = await client.get("/tasks", params={"status": "failed"})
        by_name = await client.get("/tasks", params={"name": "ok", "limit": 2})
        by_text = await client.get("/tasks", params={"q": "100% FULL"})
        by_wildcard = await client.get("/tasks", params={"q": "%"})
    assert [t["task_id"] for t in everything.json()] == [boom_id, *reversed(ok_ids)]
    assert everything.headers["X-Total-Count"] == "4"
    assert [t["task_id"] for t in failed.json()] == [boom_id]
    assert failed.json()[0]["error"] == "disk 100% full"
    assert [t["task_id"] for t in by_name.json()] == list(reversed(ok_ids))[:2]
    assert by_name.headers["X-Total-Count"] == "3"
    assert [t["task_id"] for t in by_text.json()] == [boom_id]
    # "%" is searched for literally, not as a LIKE wildcard.
    assert [t["task_id"] for t in by_wildcard.json()] == [boom_id]


async def test_list_filters_by_time_range(make_manager, make_app, client_for) -> None:
    manager, app, tasks = build(make_manager, make_app)
    async with client_for(app, auth=ADMIN) as client:
        task_id = manager.enqueue(tasks["ok"])
        await wait_for_status(manager, task_id, TaskStatus.SUCCESS)
        now = datetime.now(UTC)
        inside = await client.get("/tasks", params={"since": (now - timedelta(minutes=5)).isoformat()})
        before = await client.get("/tasks", params={"until": (now - timedelta(minutes=5)).isoformat()})
        naive = await client.get(
            "/tasks", params={"since": (now - timedelta(minutes=5)).replace(tzinfo=None).isoformat()}
        )
    assert [t["task_id"] for t in inside.json()] == [task_id]
    assert before.json() == []
    assert [t["task_id"] for t in naive.json()] == [task_id]


@pytest.mark.parametrize(
    "params",
    [
        {"status": "exploded"},
        {"since": "yesterday"},
        {"until": "2025-13-45"},
        {"limit": "0"},
        {"limit": "100000"},
        {"offset": "-1"},
        {"q": "x" * 500},
    ],
)
async def test_list_invalid_filters_give_422_with_a_message(make_manager, make_app, client_for, params) -> None:
    _, app, _ = build(make_manager, make_app)
    async with client_for(app, auth=ADMIN) as client:
        response = await client.get("/tasks", params=params)
    assert response.status_code == 422
    assert response.json()["detail"]


async def test_detail_has_attempts_logs_error_and_traceback(make_manager, make_app, client_for) -> None:
    manager, app, tasks = build(make_manager, make_app)
    async with client_for(app, auth=ADMIN) as client:
        task_id = manager.enqueue(tasks["boom"], kwargs={"message": "no route to host"})
        await wait_for_status(manager, task_id, TaskStatus.FAILED)
        detail = (await client.get(f"/tasks/{task_id}")).json()
        missing = await client.get(f"/tasks/{UNKNOWN}")
    assert detail["status"] == "failed"
    assert detail["error"] == "no route to host" and detail["error_type"] == "ValueError"
    assert "ValueError: no route to host" in detail["traceback"]
    assert [a["number"] for a in detail["attempts"]] == [1, 2]
    assert all(a["status"] == "failed" for a in detail["attempts"])
    # Arguments are hidden unless display_func_args is on.
    assert detail["args"] is None and detail["kwargs"] is None
    assert missing.status_code == 404


async def test_detail_shows_arguments_only_when_enabled(make_manager, make_app, client_for) -> None:
    manager, app, tasks = build(make_manager, make_app, display_func_args=True)
    async with client_for(app, auth=ADMIN) as client:
        task_id = manager.enqueue(tasks["ok"], kwargs={"label": "visible"})
        await wait_for_status(manager, task_id, TaskStatus.SUCCESS)
        detail = (await client.get(f"/tasks/{task_id}")).json()
    assert detail["kwargs"] == {"label": "visible"}
    assert detail["result"] == {"label": "visible"}
    # A first attempt that simply succeeded has no row of its own; the detail still shows it.
    assert [(a["number"], a["status"]) for a in detail["attempts"]] == [(1, "success")]


async def test_metrics_have_counts_percentiles_and_throughput(make_manager, make_app, client_for) -> None:
    manager, app, tasks = build(make_manager, make_app)
    async with client_for(app, auth=ADMIN) as client:
        ids = [manager.enqueue(tasks["ok"]) for _ in range(4)] + [manager.enqueue(tasks["boom"])]
        for task_id in ids:
            await wait_for_status(manager, task_id, TaskStatus.SUCCESS, TaskStatus.FAILED)
        metrics = (await client.get("/tasks/metrics")).json()
    assert metrics["total"] == 5 and metrics["success"] == 4 and metrics["failed"] == 1
    assert metrics["success_rate"] == pytest.approx(0.8)
    assert metrics["avg_duration_seconds"] is not None
    (ok_stats,) = [d for d in metrics["durations"] if d["name"] == "ok"]
    assert ok_stats["count"] == 4 and 0 <= ok_stats["p50_seconds"] <= ok_stats["p95_seconds"]
    assert sum(b["success"] for b in metrics["throughput"]) == 4
    assert sum(b["failed"] for b in metrics["throughput"]) == 1
    assert metrics["finished_per_second"] > 0


async def test_prometheus_metrics_are_in_the_text_format(make_manager, make_app, client_for) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    manager, app, tasks = build(make_manager, make_app)
    async with client_for(app, auth=ADMIN) as client:
        task_id = manager.enqueue(tasks["ok"])
        await wait_for_status(manager, task_id, TaskStatus.SUCCESS)
        response = await client.get("/tasks/metrics/prometheus")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = {family.name: family for family in text_string_to_metric_families(response.text)}
    samples = {tuple(sorted(s.labels.items())): s.value for s in families["taskflow_tasks"].samples}
    assert samples[(("status", "success"),)] == 1
    quantiles = {s.labels["quantile"] for s in families["taskflow_task_duration_seconds"].samples}
    assert quantiles == {"0.5", "0.95"}
    assert families["taskflow_live_events_dropped"].type == "counter"
    assert [s.value for s in families["taskflow_live_events_dropped"].samples] == [0.0]


async def test_registry_lists_tasks_with_their_effective_policy(make_manager, make_app, client_for) -> None:
    _, app, _ = build(make_manager, make_app)
    async with client_for(app, auth=VIEWER) as client:
        registry = (await client.get("/tasks/registry")).json()
    by_name = {entry["name"]: entry for entry in registry}
    assert set(by_name) == {"ok", "boom", "slow"}
    assert by_name["boom"]["retries"] == 1 and by_name["boom"]["is_async"] is False
    assert by_name["ok"]["retry_on"] == ["Exception"]


async def test_retry_creates_a_linked_task_and_is_audited(make_manager, make_app, client_for) -> None:
    manager, app, tasks = build(make_manager, make_app)
    async with client_for(app, auth=ADMIN) as client:
        task_id = manager.enqueue(tasks["boom"])
        await wait_for_status(manager, task_id, TaskStatus.FAILED)
        response = await client.post(f"/tasks/{task_id}/retry")
        new_id = response.json()["new_task_id"]
        await wait_for_status(manager, new_id, TaskStatus.FAILED)
        again_of_running = await client.post(f"/tasks/{new_id}/cancel")
        audit = (await client.get("/tasks/audit")).json()
        by_task = (await client.get("/tasks/audit", params={"task_id": task_id})).json()
        missing = await client.post(f"/tasks/{UNKNOWN}/retry")
    assert response.status_code == 202
    assert (await asyncio.to_thread(manager.store.get, new_id)).retry_of == task_id
    assert again_of_running.status_code == 409  # already finished
    assert [(e["actor"], e["action"], e["task_id"]) for e in audit] == [(ADMIN[0], "retry", task_id)]
    assert by_task == audit
    assert missing.status_code == 404


async def test_retry_of_a_successful_task_is_refused(make_manager, make_app, client_for) -> None:
    manager, app, tasks = build(make_manager, make_app)
    async with client_for(app, auth=ADMIN) as client:
        task_id = manager.enqueue(tasks["ok"])
        await wait_for_status(manager, task_id, TaskStatus.SUCCESS)
        response = await client.post(f"/tasks/{task_id}/retry")
    assert response.status_code == 409
    assert "success" in response.json()["detail"]


async def test_cancel_of_a_running_task_is_audited(make_manager, make_app, client_for) -> None:
    manager, app, tasks = build(make_manager, make_app)
    async with client_for(app, auth=ADMIN) as client:
        task_id = manager.enqueue(tasks["slow"])
        await wait_for_status(manager, task_id, TaskStatus.RUNNING)
        response = await client.post(f"/tasks/{task_id}/cancel")
        await wait_for_status(manager, task_id, TaskStatus.CANCELLED)
        audit = (await client.get("/tasks/audit")).json()
        missing = await client.post(f"/tasks/{UNKNOWN}/cancel")
    assert response.status_code == 202 and response.json()["outcome"] == "cancelling"
    assert [(e["action"], e["task_id"]) for e in audit] == [("cancel", task_id)]
    assert missing.status_code == 404


async def test_retry_failed_retries_each_failed_task_once(make_manager, make_app, client_for) -> None:
    manager, app, tasks = build(make_manager, make_app)
    async with client_for(app, auth=ADMIN) as client:
        failed = [manager.enqueue(tasks["boom"], kwargs={"message": f"m{n}"}) for n in range(3)]
        ok_id = manager.enqueue(tasks["ok"])
        for task_id in [*failed, ok_id]:
            await wait_for_status(manager, task_id, TaskStatus.FAILED, TaskStatus.SUCCESS)
        first = (await client.post("/tasks/retry-failed", params={"limit": 2})).json()
        retries = [r["new_task_id"] for r in first["retried"]]
        for task_id in retries:  # they fail again: failed, and not retried yet
            await wait_for_status(manager, task_id, TaskStatus.FAILED)
        second = (await client.post("/tasks/retry-failed", params={"name": "boom"})).json()
        wrong_status = await client.post("/tasks/retry-failed", params={"status": "success"})
        audit = (await client.get("/tasks/audit", params={"limit": 500})).json()
    assert [r["task_id"] for r in first["retried"]] == [failed[2], failed[1]]
    # Not failed[1] and failed[2] again: a failed task that has a retry is left alone.
    assert sorted(r["task_id"] for r in second["retried"]) == sorted([failed[0], *retries])
    assert wrong_status.status_code == 422
    assert sorted(e["action"] for e in audit) == ["retry"] * 5 + ["retry-failed"] * 2


async def test_list_count_is_capped_for_huge_tables(make_manager, make_app, client_for) -> None:
    manager, app, tasks = build(make_manager, make_app, count_cap=3)
    async with client_for(app, auth=ADMIN) as client:
        ids = [manager.enqueue(tasks["ok"]) for _ in range(5)]
        for task_id in ids:
            await wait_for_status(manager, task_id, TaskStatus.SUCCESS)
        capped = await client.get("/tasks", params={"limit": 2})
        exact = await client.get("/tasks", params={"limit": 2, "q": ids[0]})
    assert capped.headers["X-Total-Count"] == "3+"
    assert len(capped.json()) == 2
    assert exact.headers["X-Total-Count"] == "1"


async def test_fixed_paths_are_not_taken_for_task_ids(make_manager, make_app, client_for) -> None:
    _, app, _ = build(make_manager, make_app)
    async with client_for(app, auth=ADMIN) as client:
        for path in ("/tasks/metrics", "/tasks/audit", "/tasks/registry", "/tasks/metrics/prometheus"):
            assert (await client.get(path)).status_code == 200, path

        async def nothing_failed() -> bool:
            return (await client.post("/tasks/retry-failed")).json()["retried"] == []

        await eventually(nothing_failed)
