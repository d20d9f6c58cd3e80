"""Running a turn's bookkeeping in a thread so that a cancel cannot skip it."""
from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger("tether")


async def settled(fn: Callable[..., T], *args: Any, on_cancel: Callable[[T], Any] | None = None) -> T:
    """`fn(*args)` in the default executor, run to its end even if the task is cancelled.

    `asyncio.to_thread` drops a job still queued when its task is cancelled (the executor
    is shared with litellm and often busy): an answer that arrived in full was then never
    stored, or a saved question never marked. Here a cancel waits for the job, then runs
    `on_cancel(result)` (short, inline: the turn's caller is gone) and is raised again.
    """
    loop = asyncio.get_running_loop()
    ctx = contextvars.copy_context()
    job = loop.run_in_executor(None, functools.partial(ctx.run, fn, *args))
    cancelled = False
    while not job.done():
        try:
            await asyncio.shield(job)
        except asyncio.CancelledError:
            if job.cancelled():  # the loop shut its executor down: nothing ran
                raise
            cancelled = True
        except BaseException:  # noqa: BLE001 - the job's own error, read below
            break
    if not cancelled:
        return job.result()
    if job.exception() is None and on_cancel is not None:
        try:
            on_cancel(job.result())
        except Exception:  # noqa: BLE001 - the cancel is what the caller waits for
            log.exception("tidying up after a cancelled turn failed")
    raise asyncio.CancelledError
