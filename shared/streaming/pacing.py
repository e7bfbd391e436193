"""Pacing a stream of items to a rate: the feeder's ``--rate``, a replay's ``--rate`` and the bench's offered load."""

from __future__ import annotations

import asyncio
import time


class RatePacer:
    """Item n is due n / rate seconds after the pacer was made, so a late item is caught up on rather than
    delaying every item after it. No rate (None or 0): nothing waits."""

    def __init__(self, rate: float | None):
        self.rate = rate
        self.started = time.monotonic()

    def delay(self, count: int) -> float:
        """Seconds until the item after the first ``count`` is due."""
        if not self.rate:
            return 0.0
        return self.started + count / self.rate - time.monotonic()

    async def wait(self, count: int) -> None:
        if (delay := self.delay(count)) > 0:
            await asyncio.sleep(delay)

    def wait_blocking(self, count: int) -> None:
        if (delay := self.delay(count)) > 0:
            time.sleep(delay)
