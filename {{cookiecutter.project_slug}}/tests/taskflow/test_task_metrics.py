"""Prometheus counters of outcomes, retries and recoveries, run and queue-wait histograms, oldest pending age.

Read the way Prometheus reads them: the scrape endpoint's text through prometheus_client's parser.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from app.taskflow import TaskStatus
from app.taskflow.models import utcnow

from .conftest import ADMIN, wait_for_status
from .test_recovery import ALIVE, plant


async def scrape(client: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the endpoint by (sample name, sorted labels)."""
    response = await client.get("/tasks/metrics/prometheus")
    assert response.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


async def test_outcomes_retries_and_run_times_are_counted_by_task_name(make_manager, make_app, client_for) -> None:
    manager = make_manager()

    @manager.task(name="ok")
    async def ok() -> None:
        return None

    @manager.task(name="boom", retries=1, delay=0.0)
    def boom() -> None:
        raise ValueError("broken")

    app = make_app(manager, metrics_ttl=0.0)
    async with client_for(app, auth=ADMIN) as client:
        ids = [manager.enqueue(ok), manager.enqueue(ok), manager.enqueue(boom)]
        for task_id, status in zip(ids, ("success", "success", "failed"), strict=True):
            await wait_for_status(manager, task_id, status)
        samples = await scrape(client)
    assert samples[("taskflow_task_outcomes_total", (("outcome", "succeeded"), ("task", "ok")))] == 2
    assert samples[("taskflow_task_outcomes_total", (("outcome", "failed"), ("task", "boom")))] == 1
    assert ("taskflow_task_outcomes_total", (("outcome", "failed"), ("task", "ok"))) not in samples
    assert samples[("taskflow_task_retries_total", (("task", "boom"),))] == 1
    assert samples[("taskflow_task_run_seconds_count", (("task", "ok"),))] == 2
    assert samples[("taskflow_task_run_seconds_count", (("task", "boom"),))] == 2  # both attempts
    assert samples[("taskflow_task_queue_wait_seconds_count", (("task", "ok"),))] == 2


async def test_queue_wait_runs_from_enqueue_to_start(make_manager, make_app, client_for) -> None:
    manager = make_manager(concurrency=1)

    @manager.task(name="blocker")
    async def blocker() -> None:
        await asyncio.sleep(0.5)

    @manager.task(name="behind")
    async def behind() -> None:
        return None

    app = make_app(manager, metrics_ttl=0.0)
    async with client_for(app, auth=ADMIN) as client:
        manager.enqueue(blocker)
        behind_id = manager.enqueue(behind)  # waits for the only worker, about half a second
        await wait_for_status(manager, behind_id, TaskStatus.SUCCESS)
        samples = await scrape(client)
    wait = (("task", "behind"),)
    assert samples[("taskflow_task_queue_wait_seconds_count", wait)] == 1
    assert samples[("taskflow_task_queue_wait_seconds_bucket", (("le", "0.25"), *wait))] == 0
    assert samples[("taskflow_task_queue_wait_seconds_bucket", (("le", "+Inf"), *wait))] == 1
    assert samples[("taskflow_task_queue_wait_seconds_sum", wait)] >= 0.4


async def test_recoveries_and_quarantines_are_counted(make_manager, make_app, client_for) -> None:
    manager = make_manager(max_recoveries=1)

    @manager.task(persist=True, name="job")
    async def job() -> None:
        return None

    recovered = plant(manager, "job")[0]
    quarantined = plant(manager, "job", status=TaskStatus.RUNNING.value, attempt=2, recoveries=1)[0]
    app = make_app(manager, metrics_ttl=0.0)
    async with client_for(app, auth=ADMIN) as client:
        await wait_for_status(manager, recovered, TaskStatus.SUCCESS)
        await wait_for_status(manager, quarantined, TaskStatus.FAILED)
        samples = await scrape(client)
    assert samples[("taskflow_task_recoveries_total", (("task", "job"),))] == 1
    assert samples[("taskflow_task_outcomes_total", (("outcome", "quarantined"), ("task", "job")))] == 1
    assert samples[("taskflow_task_outcomes_total", (("outcome", "succeeded"), ("task", "job")))] == 1


async def test_the_oldest_due_pending_task_gives_the_age_gauge(make_manager, make_app, client_for) -> None:
    manager = make_manager()
    app = make_app(manager, metrics_ttl=0.0)
    async with client_for(app, auth=ADMIN) as client:
        assert (await scrape(client))[("taskflow_oldest_pending_age_seconds", ())] == 0
        # Held by a live instance (its lease runs), so nobody here takes them over.
        held = {"owner": ALIVE, "lease_expires_at": utcnow() + timedelta(hours=1)}
        plant(manager, "elsewhere", created_at=utcnow() - timedelta(seconds=90), **held)
        # Older, but not due for an hour: it is not waiting yet.
        plant(
            manager,
            "elsewhere",
            created_at=utcnow() - timedelta(hours=2),
            next_run_at=utcnow() + timedelta(hours=1),
            **held,
        )
        age = (await scrape(client))[("taskflow_oldest_pending_age_seconds", ())]
    assert 90 <= age < 150
