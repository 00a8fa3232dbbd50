"""The one way taskflow calls into its event loop from code that may run on another thread."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def call_in_loop(loop: asyncio.AbstractEventLoop | None, callback: Callable[..., Any], *args: Any) -> None:
    """Run `callback(*args)` now if we are on `loop`, else schedule it there (sync tasks and
    endpoints run in threads). A loop that is gone (shutting down) drops the call."""
    if loop is None or loop.is_closed():
        return
    if on_loop_thread(loop):
        callback(*args)
        return
    with contextlib.suppress(RuntimeError):  # closed between the check and the call
        loop.call_soon_threadsafe(callback, *args)


def on_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    """True when called from the thread that runs `loop`.

    Called a few times per task. asyncio's loops record their thread while they run, which is
    cheaper to compare than asking for the running loop, which costs a system call per ask.
    Loops that do not expose it (uvloop) take the general way.
    """
    thread_id = getattr(loop, "_thread_id", None)
    if thread_id is not None:
        return bool(thread_id == threading.get_ident())
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


async def finished_in_thread(func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """`asyncio.to_thread`, but a cancelled caller (a loop being stopped) still waits for the
    thread to return: its connection is back in the pool before the store may be closed."""
    work = asyncio.ensure_future(asyncio.to_thread(func, *args, **kwargs))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        await asyncio.wait({work})
        raise
