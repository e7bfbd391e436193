"""The trainer service's periodic side jobs (the label_shares refresh, the drift check)."""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

log = logging.getLogger(__name__)


async def periodically(what: str, interval_s: float, step: Callable[[], None]) -> None:
    """Run ``step`` in a thread now and every ``interval_s`` after, until cancelled. A step that fails is logged
    and tried again next time: a side job never stops the trainer."""
    while True:
        try:
            await asyncio.to_thread(step)
        except Exception as exc:
            log.warning("%s failed: %s", what, exc)
        await asyncio.sleep(interval_s)
