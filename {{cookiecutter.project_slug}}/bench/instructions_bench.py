"""Instructions per request, counted by valgrind: the throughput ratio without the machine's noise.

    python -m bench.instructions_bench [--requests 300] [--apps persist=False persist=True floor]
    python -m bench.instructions_bench --apps "native annotation" "managed annotation" \
        "Depends(get_tasks)" "Depends(background_tasks)"   # the injection patterns

On a shared machine, wall-clock rounds of throughput_bench move by a tenth of the ratio from
run to run. valgrind's callgrind counts the instructions the process executes instead, and
gives the same count to about 0.1% run after run, whatever else the machine is doing. So a
change of a few microseconds a request shows here when it hides in the wall-clock noise.

Each app of throughput_bench (plain BackgroundTasks, managed persist=False, managed
persist=True, and the floor: plain plus one SQLite INSERT and COMMIT; on request, the apps of
its --patterns) runs in a process of its own under callgrind, back to back as in
throughput_bench. Counting is switched on only around one round of `--requests` requests,
after a warm-up round of the same size. For the managed
apps that round ends when every task has reached SUCCESS in the database, as the clock does in
throughput_bench, so the tasks, the writer thread and their commits are counted. The ratio is
plain's instructions over the app's: the throughput ratio if every instruction took the same
time.

What it does not see: system calls (a SQLite commit's file locks and writes), cache misses and
waits between threads. The floor counts 0.95 or so here while its wall-clock ratio is about
0.75: its cost is mostly those. Read the two benchmarks together. Work that runs by the clock
(the control loop's poll, lease heartbeats) would count more the slower valgrind runs, so the
managed apps run with those periods set long; the writer's hold and flush interval are set
long too, so it writes the round in one batch, as it does at full speed.

Needs valgrind (`apt-get install valgrind`); under it Python runs 20 to 50 times slower, so a
run takes a few minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench.throughput_bench import (
    PATTERNS,
    check_all_succeeded,
    drive,
    floor_app,
    managed_app,
    noop,
    pattern_app,
    plain_app,
    succeeded,
)

APPS = {
    "plain": "plain",
    "persist=False": "managed persist=False",
    "persist=True": "managed persist=True",
    "floor": "floor (plain + 1 SQLite INSERT+COMMIT per request)",
    # throughput_bench --patterns' apps (persist=False), e.g. `--apps "Depends(get_tasks)"`
    **{pattern: f"managed, {pattern}" for pattern in PATTERNS},
}
CONCURRENCY = 16


def count(on: bool) -> None:
    """Switch callgrind's counting for this process (it waits until valgrind has done it)."""
    subprocess.run(
        ["callgrind_control", "--instr=on" if on else "--instr=off", str(os.getpid())],
        check=True,
        capture_output=True,
    )


async def counted_round(app_name: str, requests: int, folder: Path) -> None:
    """Under callgrind: a warm-up round, then one counted round of `requests` requests."""
    if app_name in ("plain", "floor"):
        app = plain_app() if app_name == "plain" else floor_app(folder / "floor.db")
        for counted in (False, True):
            count(counted)
            await drive(app, requests, CONCURRENCY)
            count(False)
        return

    from app.taskflow import TaskManager

    # Periods that run by the clock set long, and a hold long enough that a round's rows go in
    # one batch: under valgrind, time passes 20-50 times faster per instruction.
    manager = TaskManager(
        database_url=f"sqlite:///{folder / 'tasks.db'}",
        poll_interval=600.0,
        lease_seconds=3600.0,
        write_behind=60.0,
        handoff_grace=300.0,
    )
    task: Callable[[], Awaitable[None]] = manager.task(name="noop", persist=app_name == "persist=True")(noop)
    if app_name in PATTERNS:
        app = pattern_app(manager, task, app_name, sync_routes=False)
    else:
        app = managed_app(manager, task)
    async with app.router.lifespan_context(app):
        # The writer's flush interval too (50 ms, not a setting): at full speed a round's tasks
        # finish within one interval and go in one batch; under valgrind, once workers yield to
        # the loop every 32 jobs, the writer would flush many times meanwhile.
        manager._require_runtime().writer._interval = 600.0
        for counted in (False, True):
            before = await asyncio.to_thread(succeeded, manager)
            count(counted)
            await drive(app, requests, CONCURRENCY)
            await manager.wait_idle(timeout=3600)
            count(False)
            await check_all_succeeded(manager, before, requests)  # outside the count


def instructions(app_name: str, requests: int, folder: Path) -> int:
    """Run one app under callgrind in a child process; the instructions its counted round took."""
    out = folder / f"callgrind-{app_name}.out"
    command = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out}",
        sys.executable,
        "-m",
        "bench.instructions_bench",
        "--child",
        app_name,
        "--requests",
        str(requests),
    ]
    # A fixed hash seed: dict and set layouts, and so the instructions, are the same every run.
    env = {**os.environ, "PYTHONHASHSEED": "0", "TMPDIR": str(folder)}
    finished = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if finished.returncode != 0:
        raise SystemExit(f"{app_name} under valgrind failed:\n{finished.stderr[-3000:]}")
    for line in out.read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise SystemExit(f"no totals line in {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300)
    others = [name for name in APPS if name != "plain"]
    default = [name for name in others if name not in PATTERNS]
    parser.add_argument(
        "--apps",
        nargs="+",
        choices=others,
        default=default,
        help=f"the apps to count besides plain (default: {' '.join(default)})",
    )
    parser.add_argument("--child", choices=sorted(APPS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        with tempfile.TemporaryDirectory() as folder:
            asyncio.run(counted_round(args.child, args.requests, Path(folder)))
        return
    missing = [tool for tool in ("valgrind", "callgrind_control") if shutil.which(tool) is None]
    if missing:
        raise SystemExit(f"needs {' and '.join(missing)} on PATH: apt-get install valgrind")
    with tempfile.TemporaryDirectory() as folder:
        names = ["plain", *args.apps]
        per_request = {name: instructions(name, args.requests, Path(folder)) / args.requests for name in names}
    plain = per_request["plain"]
    for name in names:
        label = APPS[name]
        figure = f"instructions per request, {label}: {per_request[name]:,.0f}"
        if name != "plain":
            figure += f" | ratio to plain {plain / per_request[name]:.3f}"
        print(f"{figure} ({args.requests} requests, their tasks at SUCCESS)")


if __name__ == "__main__":
    main()
