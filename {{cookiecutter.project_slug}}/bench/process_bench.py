"""CPU-bound sync tasks in threads (the default) against worker processes (executor="process").

    python -m bench.process_bench [--tasks 16] [--work 300000] [--rounds 3]

Each round runs the same `--tasks` CPU-bound tasks (a pure-Python loop of `--work` steps) on an
in-memory manager, once with the default executor and once with executor="process", the two in
alternating order, and prints the tasks per second of each, their ratio (median of the rounds)
and the machine's CPU count: threads share one core through the GIL, processes use them all.
Each manager first runs one short task per worker (thread or process) untimed, so the figure
is the steady rate, without the start of the worker processes (about half a second each).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

from app.taskflow import TaskManager

from .cpu_task import crunch


async def tasks_per_second(executor: str, tasks: int, work: int) -> float:
    manager = TaskManager(concurrency=max(tasks, 1), threads=max(tasks, 1))
    manager.task(name="crunch", executor=executor)(crunch)  # type: ignore[call-overload]
    async with manager.lifespan():
        warm_up = [manager.enqueue(crunch, (1,)) for _ in range(manager.config.processes)]
        for task_id in warm_up:
            await manager.result(task_id, timeout=600)
        start = time.perf_counter()
        ids = [manager.enqueue(crunch, (work,)) for _ in range(tasks)]
        results = [await manager.result(task_id, timeout=600) for task_id in ids]
        took = time.perf_counter() - start
    assert results == [crunch(work)] * tasks
    return tasks / took


async def run(tasks: int, work: int, rounds: int) -> None:
    threads: list[float] = []
    processes: list[float] = []
    for round_number in range(rounds):
        order = ("thread", "process") if round_number % 2 == 0 else ("process", "thread")
        for executor in order:
            rate = await tasks_per_second(executor, tasks, work)
            (threads if executor == "thread" else processes).append(rate)
    thread_rate, process_rate = statistics.median(threads), statistics.median(processes)
    print(
        f"{tasks} CPU-bound tasks of {work} steps, {os.cpu_count()} CPUs, median of {rounds} rounds: "
        f"threads {thread_rate:.2f} tasks/s | processes {process_rate:.2f} tasks/s | "
        f"ratio {process_rate / thread_rate:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=16)
    parser.add_argument("--work", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(run(args.tasks, args.work, args.rounds))


if __name__ == "__main__":
    main()
