"""Enqueueing: options apart from task kwargs, idempotency, delays, persistence, transactions."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from uuid import UUID, uuid4

import pytest
from pydantic import BaseModel
from sqlalchemy import create_engine, text
from sqlmodel import Session

from app.taskflow import ManagedBackgroundTasks, TaskStatus
from app.taskflow.store import open_store
from app.taskflow.store.sqlite import SQLiteDatabase

from .conftest import eventually, wait_for_status


class Order(BaseModel):
    id: UUID
    total: Decimal


async def test_task_kwargs_named_like_enqueue_options_reach_the_task(make_manager) -> None:
    manager = make_manager()
    received: list[dict[str, object]] = []

    @manager.task()
    def configurable(delay: int, priority: str, tags: list[str], idempotency_key: str, session: str) -> None:
        received.append(
            {"delay": delay, "priority": priority, "tags": tags, "idempotency_key": idempotency_key, "session": session}
        )

    async with manager.lifespan():
        tasks = ManagedBackgroundTasks(manager)
        task_id = tasks.add_task(configurable, delay=5, priority="high", tags=["a"], idempotency_key="k", session="s")
        await tasks()
        row = await wait_for_status(manager, task_id, TaskStatus.SUCCESS)
    assert received == [{"delay": 5, "priority": "high", "tags": ["a"], "idempotency_key": "k", "session": "s"}]
    assert row.idempotency_key is None and row.next_run_at is None


async def test_a_duplicate_idempotency_key_returns_the_first_id_and_runs_nothing(make_manager) -> None:
    manager = make_manager()
    runs: list[str] = []

    @manager.task()
    def charge(order: str) -> None:
        runs.append(order)

    async with manager.lifespan():
        tasks = ManagedBackgroundTasks(manager)
        first = tasks.options(idempotency_key="order-1").add_task(charge, "order-1")
        second = tasks.options(idempotency_key="order-1").add_task(charge, "order-1")
        await tasks()
        await wait_for_status(manager, first, TaskStatus.SUCCESS)
        again = ManagedBackgroundTasks(manager)
        third = again.options(idempotency_key="order-1").add_task(charge, "order-1")
        await again()
        await manager.wait_idle()
    assert first == second == third
    assert runs == ["order-1"]


async def test_an_idempotency_key_taken_between_lookup_and_insert_still_returns_the_first_id(
    make_manager, monkeypatch
) -> None:
    # Two requests with one key, both past the lookup: the database's unique index decides, the
    # loser gets the winner's id, and the write connection is left ready for the next enqueue.
    manager = make_manager()

    @manager.task(persist=True)
    def charge(order: str) -> None:
        return None

    async with manager.lifespan():
        tasks = ManagedBackgroundTasks(manager)
        first = tasks.options(idempotency_key="order-2").add_task(charge, "order-2")
        monkeypatch.setattr(manager.store, "find_by_idempotency_key", lambda key: None)  # the race
        second = tasks.options(idempotency_key="order-2").add_task(charge, "order-2")
        other = tasks.add_task(charge, "order-3")
        await tasks()
        await wait_for_status(manager, other, TaskStatus.SUCCESS)
        await manager.wait_idle()
    assert second == first != other


async def test_a_delayed_task_does_not_run_before_its_time(make_manager) -> None:
    manager = make_manager()
    ran_at: list[datetime] = []

    @manager.task()
    def later() -> None:
        ran_at.append(datetime.now(UTC))

    async with manager.lifespan():
        tasks = ManagedBackgroundTasks(manager)
        enqueued_at = datetime.now(UTC)
        task_id = tasks.options(delay=0.5).add_task(later)
        eta_id = tasks.options(eta=enqueued_at + timedelta(seconds=0.3)).add_task(later)
        await tasks()
        row = await asyncio.to_thread(manager.store.get, task_id)
        assert row is None or row.status == TaskStatus.PENDING
        await wait_for_status(manager, task_id, TaskStatus.SUCCESS)
        await wait_for_status(manager, eta_id, TaskStatus.SUCCESS)
    assert len(ran_at) == 2
    assert min(ran_at) - enqueued_at >= timedelta(seconds=0.29)
    assert max(ran_at) - enqueued_at >= timedelta(seconds=0.49)


async def test_delay_and_eta_together_are_refused(make_manager) -> None:
    manager = make_manager()

    @manager.task()
    def noop() -> None:
        return None

    async with manager.lifespan():
        with pytest.raises(ValueError, match="either delay or eta"):
            ManagedBackgroundTasks(manager).options(delay=1, eta=datetime.now(UTC)).add_task(noop)


async def test_a_persisted_task_is_committed_before_add_task_returns(make_manager, database_url, tmp_path) -> None:
    manager = make_manager()

    @manager.task(persist=True)
    def durable(n: int) -> None:
        return None

    async with manager.lifespan():
        tasks = ManagedBackgroundTasks(manager)
        task_id = tasks.add_task(durable, 1)
        # Before the task is even handed to the runner, the row is on disk.
        if database_url.startswith("sqlite"):
            # In this process's intake file, which only this process opens: what a kill -9 would
            # leave of it is the file and its WAL as they are now. Copied, they hold the row.
            row = read_intake_copy(manager, tmp_path / "copy.db", task_id)
            seen = None
        else:
            other = create_engine(database_url)
            with other.connect() as connection:
                query = text("SELECT name, arguments FROM taskflow_tasks WHERE id = :id")
                row = connection.execute(query, {"id": task_id}).one()
            other.dispose()
            # And another instance's store reads it as a pending task.
            other_store = open_store(database_url)
            seen = other_store.get(task_id)
            other_store.dispose()
        await tasks()
        await wait_for_status(manager, task_id, TaskStatus.SUCCESS)
    assert row.name == "durable"
    assert json.loads(row.arguments) == {"args": [1], "kwargs": {}}
    if seen is not None:
        assert (seen.status, seen.persist, seen.arguments) == ("pending", True, row.arguments)


def read_intake_copy(manager, copy: Path, task_id: str) -> Any:
    database = manager.store.database
    assert isinstance(database, SQLiteDatabase)
    intake = database.intake
    assert intake is not None
    for suffix in ("", "-wal"):
        shutil.copyfile(f"{intake.path}{suffix}", f"{copy}{suffix}")
    connection = sqlite3.connect(copy)
    try:
        query = "SELECT name, arguments FROM taskflow_intake WHERE id = ?"
        name, arguments = connection.execute(query, (task_id,)).fetchone()
        return SimpleNamespace(name=name, arguments=arguments)
    finally:
        connection.close()


async def test_an_argument_that_is_not_json_is_refused_and_nothing_is_recorded(make_manager) -> None:
    manager = make_manager()

    @manager.task(persist=True)
    def upload(blob: object) -> None:
        return None

    async with manager.lifespan():
        with pytest.raises(TypeError, match="argument 'blob' of task 'upload'"):
            ManagedBackgroundTasks(manager).add_task(upload, blob=object())
        await manager.flush()
        assert (
            await asyncio.to_thread(
                manager.store.count, __import__("app.taskflow.store", fromlist=["TaskFilter"]).TaskFilter()
            )
            == 0
        )


async def test_transactional_enqueue_exists_only_if_the_caller_commits(make_manager, database_url) -> None:
    manager = make_manager()
    runs: list[str] = []

    @manager.task()
    def welcome(user: str) -> None:
        runs.append(user)

    engine = create_engine(database_url)
    async with manager.lifespan():
        tasks = ManagedBackgroundTasks(manager)
        with Session(engine) as session:
            kept = tasks.options(session=session).add_task(welcome, "kept")
            session.commit()
        with Session(engine) as session:
            dropped = tasks.options(session=session).add_task(welcome, "dropped")
            session.rollback()
        await tasks()
        await wait_for_status(manager, kept, TaskStatus.SUCCESS)
        await manager.wait_idle()
        assert await asyncio.to_thread(manager.store.get, dropped) is None
    engine.dispose()
    assert runs == ["kept"]


async def test_a_task_with_a_custom_name_is_found_again_after_a_restart(make_manager) -> None:
    first = make_manager()
    runs: list[int] = []

    def make_task(manager):
        @manager.task(name="billing.send-invoice", persist=True)
        def send_invoice(number: int) -> None:
            runs.append(number)

        return send_invoice

    send_invoice = make_task(first)
    async with first.lifespan():
        tasks = ManagedBackgroundTasks(first)
        task_id = tasks.options(delay=2).add_task(send_invoice, 7)
        await tasks()
    # Stopped before it was due: the row is released, PENDING, with its name and arguments; the
    # next instance claims it by that name once it is due.
    assert runs == []
    second = make_manager()
    make_task(second)
    async with second.lifespan():
        row = await wait_for_status(second, task_id, "success")
    assert (row.name, row.owner) == ("billing.send-invoice", second.owner)
    assert runs == [7]


async def test_recovered_arguments_arrive_as_their_own_types(make_manager) -> None:
    seen: list[tuple[object, ...]] = []

    def register(manager):
        @manager.task(persist=True, name="typed")
        def typed(order: Order, at: datetime, amount: Decimal) -> None:
            seen.append((order, at, amount))

        return typed

    first = make_manager()
    typed = register(first)
    order = Order(id=uuid4(), total=Decimal("10.50"))
    at = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    async with first.lifespan():
        tasks = ManagedBackgroundTasks(first)
        task_id = tasks.options(delay=0.4).add_task(typed, order, at=at, amount=Decimal("0.10"))
        await tasks()
    second = make_manager()
    register(second)
    async with second.lifespan():
        await wait_for_status(second, task_id, TaskStatus.SUCCESS)
    assert seen == [(order, at, Decimal("0.10"))]
    assert isinstance(seen[0][0], Order) and isinstance(seen[0][2], Decimal)


async def test_a_plain_function_can_be_added_too(make_manager) -> None:
    manager = make_manager()
    runs: list[int] = []

    def plain(n: int) -> None:
        runs.append(n)

    async with manager.lifespan():
        tasks = ManagedBackgroundTasks(manager)
        task_id = tasks.add_task(plain, 3)
        await tasks()
        row = await wait_for_status(manager, task_id, TaskStatus.SUCCESS)
    assert runs == [3]
    assert row.name.endswith("plain")


async def test_a_task_added_outside_a_request_is_started_by_the_handoff_sweep(make_manager) -> None:
    manager = make_manager(handoff_grace=0.1)
    runs: list[int] = []

    @manager.task()
    def orphan(n: int) -> None:
        runs.append(n)

    async with manager.lifespan():
        # Nobody calls the ManagedBackgroundTasks object (e.g. the endpoint raised after add_task).
        ManagedBackgroundTasks(manager).add_task(orphan, 1)
        await eventually(lambda: runs == [1])
