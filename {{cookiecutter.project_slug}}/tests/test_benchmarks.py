"""The benchmark scripts in bench/ still run, at a tiny size, and print their figures.

They are scripts, not timed tests: nothing here checks a speed. It only keeps them working
as the code they drive changes (each figure in the docs names the command that made it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .taskflow.services import POSTGRES_URL, require_postgres, require_service

SERVICE_ROOT = Path(__file__).resolve().parents[1]

NUMBER = r"\d+(\.\d+)?"

BENCHMARKS = {
    "throughput": (
        ["bench.throughput_bench", "--requests", "40", "--rounds", "1", "--drain", "200"],
        [
            rf"requests persist=False back to back: plain +{NUMBER} req/s \| managed +{NUMBER} req/s \| ratio {NUMBER}",
            rf"requests persist=True +interleaved : plain +{NUMBER} req/s \| managed +{NUMBER} req/s \| ratio {NUMBER}",
            rf"floor \(plain \+ 1 SQLite INSERT\+COMMIT per request\) back to back: .* ratio {NUMBER}",
            rf"drain 200 queued persist=True : plain +{NUMBER} tasks/s \| managed +{NUMBER} tasks/s \| ratio {NUMBER} "
            rf"\| longest event-loop stall: plain {NUMBER} ms, managed {NUMBER} ms",
        ],
    ),
    "throughput-compare": (
        ["bench.throughput_bench", "--compare-intake", "--interleave", "--requests", "40", "--rounds", "1"],
        [
            rf"interleaved against plain {NUMBER} req/s \(median of 1 alternating rounds of 40\): floor {NUMBER} \| "
            rf"intake {NUMBER} \| no intake {NUMBER} \| no commit {NUMBER} \| persist=False {NUMBER}",
        ],
    ),
    "instructions": (
        # Two of the four apps: under valgrind each costs its process's start, 20 s or more.
        ["bench.instructions_bench", "--requests", "20", "--apps", "persist=True"],
        [
            r"instructions per request, plain: [\d,]+ \(20 requests",
            rf"instructions per request, managed persist=True: [\d,]+ \| ratio to plain {NUMBER}",
        ],
    ),
    "process": (
        ["bench.process_bench", "--tasks", "4", "--work", "20000", "--rounds", "1"],
        [
            rf"4 CPU-bound tasks of 20000 steps, \d+ CPUs, median of 1 rounds: "
            rf"threads {NUMBER} tasks/s \| processes {NUMBER} tasks/s \| ratio {NUMBER}"
        ],
    ),
    "priority": (
        ["bench.priority_bench", "--jobs", "200", "--rounds", "1"],
        [
            rf"runner queue, 200 jobs, median of 1 rounds: deque {NUMBER} ns/job \| JobQueue default priority "
            rf"{NUMBER} ns/job, ratio {NUMBER} \| mixed priorities {NUMBER} ns/job, ratio {NUMBER}"
        ],
    ),
    "limits": (
        ["bench.limits_bench", "--tasks", "100", "--concurrency", "4", "--postgres", POSTGRES_URL],
        [
            rf"{engine} +drain of 100 tasks, concurrency 4, median of 1: no limit [\d,]+ tasks/s \| "
            rf"max_concurrent=4 [\d,]+ tasks/s \| ratio {NUMBER}"
            for engine in ("sqlite", "postgresql")
        ],
    ),
    "recovery": (
        ["bench.recovery_bench", "--tasks", "100", "--rounds", "1", "--no-postgres"],
        [rf"sqlite +100 tasks, median of 1: first started +{NUMBER} s \| all started +{NUMBER} s"],
    ),
    "admin": (
        ["bench.admin_bench", "--rows", "3000", "--samples", "3"],
        [rf"stream messages to one client: {NUMBER}/s", rf"message size: mean {NUMBER} B"],
    ),
    "retention": (
        ["bench.retention_bench", "--sizes", "1200"],
        [rf"retention, +1200 finished tasks, chunks of 500: median +{NUMBER} ms \| longest +{NUMBER} ms"],
    ),
    "worker-drain": (
        ["bench.worker_drain_bench", "--tasks", "200", "--workers", "1", "2", "--postgres", POSTGRES_URL],
        [
            r"cpu count: \d+",
            rf"1 worker\(s\): 200 tasks in {NUMBER} s, [\d,]+ tasks/s \| ratio to 1 worker\(s\) 1\.00",
            rf"2 worker\(s\): 200 tasks in {NUMBER} s, [\d,]+ tasks/s \| ratio to 1 worker\(s\) {NUMBER}",
        ],
    ),
    "writer": (
        ["bench.writer_bench", "--sizes", "500", "1000", "--batch", "20", "--rounds", "2", "--no-postgres"],
        [
            rf"writer sqlite, +500 rows in the table, batches of 20: UUID4 ids +{NUMBER} us/row \| "
            rf"time-ordered ids +{NUMBER} us/row \| ratio {NUMBER}",
            r"writer sqlite, +1000 rows in the table",
        ],
    ),
}


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_benchmark_script_runs_and_prints_its_figures(name: str, tmp_path: Path) -> None:
    module_and_args, expected_lines = BENCHMARKS[name]
    if name == "instructions":
        require_service("valgrind", shutil.which("valgrind") is not None, "apt-get install valgrind")
    if name in ("worker-drain", "limits"):
        require_postgres()
    env = {**os.environ, "PYTHONPATH": str(SERVICE_ROOT), "TMPDIR": str(tmp_path)}
    finished = subprocess.run(
        [sys.executable, "-m", *module_and_args],
        cwd=SERVICE_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,  # a loaded machine; the scripts take seconds at these sizes
        check=False,
    )
    assert finished.returncode == 0, f"{name} benchmark failed:\n{finished.stdout}\n{finished.stderr}"
    for pattern in expected_lines:
        assert re.search(pattern, finished.stdout), f"no line matching {pattern!r} in:\n{finished.stdout}"
