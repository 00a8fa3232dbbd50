"""A worker process: `python -m app.worker` (`make worker`) runs the service's tasks without HTTP.

It uses the service's settings (DATABASE_URL, TASK_*, logging, tracing), applies pending
migrations like the web process, and runs until SIGTERM or SIGINT, which drain it. Start as many
as the work needs; set TASK_CONCURRENCY=0 on the web processes to leave every task to them.
"""

from __future__ import annotations

import asyncio

from app.config import Settings, get_settings
from app.logging_setup import configure_logging
from app.schema import prepare
from app.taskflow.worker import run_worker
from app.tasks import configure_task_manager
from app.tracing_setup import configure_tracing


def main(settings: Settings | None = None) -> None:
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_format)
    prepare(settings)
    # app.tasks declares every task on this manager, so the worker can run each one by name.
    task_manager = configure_task_manager(settings)
    tracer_provider = configure_tracing(settings)
    if tracer_provider is not None:
        task_manager.enable_tracing(tracer_provider)
    try:
        asyncio.run(run_worker(task_manager))
    finally:
        if tracer_provider is not None:
            tracer_provider.shutdown()  # sends the spans still batched


if __name__ == "__main__":
    main()
