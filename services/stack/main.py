"""``stancestream run``: the embedded stack (broker, ClickHouse, worker) with an optional feed and a live summary."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time

from rich.console import Console
from rich.live import Live

from shared.feed import FeedReport, produce_feed, read_feed
from shared.settings import Settings
from shared.stack import Stack
from shared.summary import RunSummary
from shared.topics import Topics, caught_up, physical


async def run(settings: Settings, feed: str | None, rate: float | None, exit_when_done: bool,
              console: Console) -> int:
    if feed and feed != "-":
        next(iter(read_feed(feed)), None)  # fail before starting anything if the feed cannot be read
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    stack = Stack(settings, run_trainer=True)
    report = FeedReport(done=feed is None)
    feeder: asyncio.Task | None = None
    exit_code = 0
    try:
        with console.status("starting") as status:
            await stack.start(status=lambda m: status.update(m))
        gateway = f"; `stancestream sql` goes through {stack.gateway.address}" if stack.gateway else ""
        console.print(f"[green]ready[/]: broker {stack.settings.kafka_bootstrap}, ClickHouse {stack.store.description}"
                      f", adapter {stack.classifier.adapter_version}{gateway}")
        if feed:
            topic = physical(Topics.raw, stack.settings)
            feeder = asyncio.create_task(
                produce_feed(stack.settings.kafka_bootstrap, topic, read_feed(feed), report, rate)
            )
        live = Live(console=console, refresh_per_second=2, transient=False) if console.is_terminal else None
        last_line = 0.0
        with live or contextlib.nullcontext():
            while not stop.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=1.0)
                if stack.stats.failure is not None:
                    console.print(f"[red]worker failed[/]: {stack.stats.failure}")
                    exit_code = 1
                    break
                if feeder is not None and feeder.done() and feeder.exception() is not None:
                    console.print(f"[red]feed failed[/]: {feeder.exception()}")
                    exit_code = 1
                    break
                summary = await asyncio.to_thread(RunSummary.read, stack.store, stack.started_at)
                if live is not None:
                    live.update(summary.render(f"stancestream — fed {report.sent}"))
                elif time.monotonic() - last_line > 5:
                    console.print(f"fed={report.sent} {summary.line()}")
                    last_line = time.monotonic()
                if exit_when_done and report.done:
                    if caught_up(await stack.committed(list(report.end_offsets)), report.end_offsets):
                        break
        summary = await asyncio.to_thread(RunSummary.read, stack.store, stack.started_at)
        console.print(summary.render(f"final summary — fed {report.sent}"))
    finally:
        if feeder is not None and not feeder.done():
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await feeder
        await stack.stop()
    return exit_code


def main(settings: Settings, feed: str | None, rate: float | None, exit_when_done: bool) -> int:
    console = Console(stderr=False)
    return asyncio.run(run(settings, feed, rate, exit_when_done, console))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(Settings(), None, None, False))
