"""The one way taskflow calls into its event loop from code that may run on another thread."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any


def call_in_loop(loop: asyncio.AbstractEventLoop | None, callback: Callable[..., Any], *args: Any) -> None:
    """Run `callback(*args)` now if we are on `loop`, else schedule it there (sync tasks and
    endpoints run in threads). A loop that is gone (shutting down) drops the call."""
    if loop is None or loop.is_closed():
        return
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        callback(*args)
        return
    with contextlib.suppress(RuntimeError):  # closed between the check and the call
        loop.call_soon_threadsafe(callback, *args)
