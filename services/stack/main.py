"""``stancestream run``: the embedded stack (broker, ClickHouse, worker) with an optional feed and a live summary.

The embedded broker keeps messages in memory, so stopping must not drop what it holds: the first Ctrl-C stops
feeding and drains (the worker finishes every fed tweet, then the summary); a second one exits at once and
says how many fed tweets were not processed and how to resume them. Store errors never stop ``run``: the
worker retries its writes for as long as it takes, and the summary shows the error meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import sys
import time

from rich.console import Console
from rich.live import Live

from services.stack.stack import Stack
from services.views.summary import render_summary, summary_line
from services.wiring import on_stop_signals
from shared.settings import Settings
from shared.store import StoreError
from shared.store.queries.feeds import StoredFeedOutcomes
from shared.store.queries.monitoring import RunSummary
from shared.store.sinks import write_dead_letters
from shared.streaming.feed import FeedReport, produce_feed, read_feed
from shared.streaming.feed_resume import ResumeReport, undone
from shared.streaming.topics import Topics, caught_up, physical

#: Without a feed of our own we cannot know what external producers sent: draining ends once the worker
#: has been idle this long.
IDLE_DRAIN_S = 3.0


class _Interrupts:
    """Counts Ctrl-C / SIGTERM: the first asks to drain, the second to exit now."""

    def __init__(self, console: Console):
        self.console = console
        self.count = 0
        self.changed = asyncio.Event()

    def __call__(self) -> None:
        self.count += 1
        if self.count == 1:
            self.console.print("[yellow]stopping[/]: feeding stopped, finishing what the broker holds "
                               "(Ctrl-C again to exit now)")
        self.changed.set()


async def run(settings: Settings, feed: str | None, rate: float | None, exit_when_done: bool,
              console: Console) -> int:
    if feed and feed != "-":
        next(iter(read_feed(feed, settings.max_message_bytes)), None)  # fail before starting anything if unreadable
    interrupts = _Interrupts(console)
    on_stop_signals(interrupts)
    stack = Stack(settings, run_trainer=True, retry_store_forever=True)
    report = FeedReport(done=feed is None)
    resumed = ResumeReport()
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
            limit = settings.max_message_bytes
            records = read_feed(feed, limit)
            if feed != "-":
                records = undone(records, StoredFeedOutcomes(stack.store), resumed)
            feeder = asyncio.create_task(produce_feed(
                stack.settings.kafka_bootstrap, topic, records, report, rate, max_message_bytes=limit,
                dead_letter_sink=lambda letters: write_dead_letters(stack.store, letters)))
        live = Live(console=console, refresh_per_second=2, transient=False) if console.is_terminal else None
        last_line, last_batches, idle_since = 0.0, -1, time.monotonic()
        with live or contextlib.nullcontext():
            while interrupts.count < 2:
                interrupts.changed.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(interrupts.changed.wait(), timeout=1.0)
                if interrupts.count >= 2:
                    break
                if stack.stats.failure is not None:
                    console.print(f"[red]worker failed[/]: {stack.stats.failure}")
                    exit_code = 1
                    break
                if feeder is not None and feeder.done() and not feeder.cancelled() and feeder.exception():
                    console.print(f"[red]feed failed[/]: {feeder.exception()}")
                    exit_code = 1
                    break
                draining = interrupts.count == 1
                if draining and feeder is not None and not feeder.done():
                    await _stop_feeding(feeder)
                title = f"stancestream — fed {report.sent}{_skipped(resumed)}" + (" — draining" if draining else "")
                summary = await _read_summary(stack, console)
                if summary is not None and live is not None:
                    live.update(render_summary(summary, title))
                elif summary is not None and time.monotonic() - last_line > 5:
                    console.print(f"fed={report.sent} {summary_line(summary)}")
                    last_line = time.monotonic()
                if stack.stats.retrying:
                    console.print(f"[yellow]failing, retrying[/]: {stack.stats.retrying}")
                if stack.stats.batches != last_batches:
                    last_batches, idle_since = stack.stats.batches, time.monotonic()
                fed_all_we_will = report.done or (draining and feeder is not None)
                if (exit_when_done or draining) and fed_all_we_will and report.end_offsets:
                    if caught_up(await stack.committed(list(report.end_offsets)), report.end_offsets):
                        break
                elif draining and (feeder is None or not report.end_offsets):
                    if time.monotonic() - idle_since > IDLE_DRAIN_S:
                        break
                elif exit_when_done and report.done and not report.end_offsets:
                    break  # an empty feed
        if interrupts.count >= 2:
            exit_code = 130
            await _report_abandoned(stack, report, feed, console)
        else:
            summary = await _read_summary(stack, console)
            if summary is not None:
                console.print(render_summary(summary, f"final summary — fed {report.sent}{_skipped(resumed)}"))
            if interrupts.count == 1 and feed and not report.done:
                console.print(f"stopped before the end of {feed}; {_resume_hint(feed)}", soft_wrap=True)
    finally:
        if feeder is not None and not feeder.done():
            await _stop_feeding(feeder)
        await stack.stop()
    return exit_code


async def _stop_feeding(feeder: asyncio.Task) -> None:
    feeder.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await feeder


async def _read_summary(stack: Stack, console: Console) -> RunSummary | None:
    """The live summary, or None (with the reason shown) while ClickHouse cannot answer."""
    try:
        return await asyncio.to_thread(RunSummary.read, stack.store, stack.started_at)
    except StoreError as exc:
        console.print(f"[yellow]summary unavailable[/] (the worker keeps going): {exc}")
        return None


async def _report_abandoned(stack: Stack, report: FeedReport, feed: str | None, console: Console) -> None:
    """After a second Ctrl-C: how many fed tweets the in-memory broker held unprocessed, and how to resume."""
    try:
        committed = await asyncio.wait_for(stack.committed(list(report.end_offsets)), timeout=5)
        left = sum(max(0, end - committed.get(p, 0)) for p, end in report.end_offsets.items())
    except Exception:  # the broker may be unreachable: say what we know
        left = None
    held = f"{left} fed tweet(s) were" if left is not None else "an unknown number of fed tweets were"
    if stack.broker is not None and stack.broker.durable:
        console.print(f"[yellow]interrupted[/]: {held} not processed yet; they stay in the durable broker "
                      f"({stack.broker.storage_dir}) and the next `stancestream run` processes them", soft_wrap=True)
        return
    where = "only in the embedded broker" if stack.broker is not None else "left in Kafka for the next worker"
    console.print(f"[red]interrupted[/]: {held} not processed ({where})"
                  + (f"; {_resume_hint(feed)}" if feed else ""), soft_wrap=True)  # one line: copy-pastable


def _skipped(resumed: ResumeReport) -> str:
    return f" (skipped {resumed.skipped} line(s) already stored)" if resumed.skipped else ""


def _resume_hint(feed: str) -> str:
    if feed == "-":
        return "standard input cannot be resumed: feed the rest again"
    return f"resume with: stancestream run --feed {shlex.quote(feed)} (lines already stored are skipped)"


def main(settings: Settings, feed: str | None, rate: float | None, exit_when_done: bool) -> int:
    console = Console(stderr=False)
    return asyncio.run(run(settings, feed, rate, exit_when_done, console))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(Settings(), None, None, False))
