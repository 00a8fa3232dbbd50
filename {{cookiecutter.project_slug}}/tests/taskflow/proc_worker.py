"""A worker process of the test service: `python -m tests.taskflow.proc_worker`.

Configured from the environment as proc_app.py is, with the same tasks (which record their
executions the same way); it runs them with app.taskflow.worker.run_worker, as `python -m
app.worker` runs the service's.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from app.taskflow.worker import run_worker

from .proc_app import ExecutionLog, build_manager, configure_logging


def main() -> None:
    configure_logging()
    manager = build_manager(ExecutionLog(Path(os.environ["PROC_RECORD_DIR"])))
    asyncio.run(run_worker(manager))


if __name__ == "__main__":
    main()
