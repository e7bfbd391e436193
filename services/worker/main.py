"""``stancestream worker``: one Faust worker process against configured Kafka and ClickHouse."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from services.stack.stack import Stack
from services.wiring import on_stop_signals
from shared.settings import Settings

log = logging.getLogger("stancestream.worker")


async def serve(settings: Settings) -> int:
    stop = asyncio.Event()
    on_stop_signals(stop.set)
    stack = Stack(settings, allow_embedded_broker=False)
    try:
        await stack.start(status=lambda message: log.info(message))
        log.info("worker running: group %s on %s", settings.worker_group, stack.settings.kafka_bootstrap)
        while not stop.is_set() and stack.stats.failure is None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0)
    finally:
        await stack.stop()
    return 1 if stack.stats is not None and stack.stats.failure is not None else 0


def main(settings: Settings) -> int:
    return asyncio.run(serve(settings))
