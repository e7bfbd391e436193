"""What an idle embedded stack costs a small machine: each thread's CPU and wake-ups, and the classifier's speed
beside it.

    .venv/bin/python benchmarks/idle_stack.py cpu               # per thread: CPU ms/s and wake-ups/s over 30 s
    .venv/bin/python benchmarks/idle_stack.py model --rounds 3  # the classifier with the stack up vs down

``cpu``: an embedded stack with default settings (Tansu, chDB, the worker) started, left 20 s to settle, then each
thread of this process and of its children (the broker) read from /proc over ``--seconds``, nothing offered.
``model``: the served classifier classifies ``--n`` test.csv tweets 3 at a time (the calls a worker makes near
capacity on a 2-core AVX2 host when nothing fills them) with an idle stack running beside it and without one,
alternating, one process (the stack's data stays in one folder: chDB opens one path per process). On two cores the
stack's background wake-ups preempt one of torch's two threads and the other waits for it at the next barrier
(docs/benchmarks.md, "A live feed that never came in a burst").
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "immigration-tweets" / "test.csv"


def threads() -> dict[str, tuple[float, int]]:
    """(CPU seconds, voluntary context switches) per thread of this process and its children."""
    names = {thread.native_id: thread.name for thread in threading.enumerate()}
    out: dict[str, tuple[float, int]] = {}
    for process in [psutil.Process(), *psutil.Process().children(recursive=True)]:
        for task in os.listdir(f"/proc/{process.pid}/task"):
            try:
                stat = open(f"/proc/{process.pid}/task/{task}/stat").read()
                status = open(f"/proc/{process.pid}/task/{task}/status").read()
            except OSError:
                continue
            comm = stat[stat.index("(") + 1: stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2:].split()
            cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            wakeups = int(status.split("\nvoluntary_ctxt_switches:")[1].split()[0])
            out[f"{process.name()}: {names.get(int(task), comm)} #{task}"] = (cpu, wakeups)
    return out


async def start_stack(data_dir: Path):
    from services.stack.stack import Stack
    from shared.settings import Settings

    settings = Settings(data_dir=data_dir, kafka_bootstrap=None, clickhouse_url=None, metrics_port=None)
    return await Stack(settings).start()


async def cpu(seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        stack = await start_stack(Path(tmp))
        try:
            await asyncio.sleep(20)
            before, started = threads(), time.perf_counter()
            await asyncio.sleep(seconds)
            after, elapsed = threads(), time.perf_counter() - started
        finally:
            await stack.stop()
    rows = sorted(((c - before.get(k, (0, 0))[0]) * 1000 / elapsed, (w - before.get(k, (0, 0))[1]) / elapsed, k)
                  for k, (c, w) in after.items())[::-1]
    print("| thread | CPU ms/s | wake-ups/s |\n|---|---|---|")
    for ms, wakeups, name in rows:
        if ms >= 0.5 or wakeups >= 2:
            print(f"| {name} | {ms:.1f} | {wakeups:.1f} |")
    print(f"| all | {sum(r[0] for r in rows):.1f} | {sum(r[1] for r in rows):.0f} |")


async def model(n: int, rounds: int) -> None:
    from services.bench.main import read_tweets
    from shared.classifier.model import StanceClassifier
    from shared.settings import Settings

    texts, _ = read_tweets(DATA, n)
    settings = Settings()
    classifier = StanceClassifier.load(settings, adapter=settings.adapter)
    classifier.predict_proba(texts[:8])
    loop = asyncio.get_running_loop()

    def run() -> float:
        started = time.perf_counter()
        for at in range(0, len(texts), 3):
            classifier.predict_proba(texts[at: at + 3])
        return len(texts) / (time.perf_counter() - started)

    rates: dict[str, list[float]] = {"stack up": [], "stack down": []}
    with tempfile.TemporaryDirectory() as tmp:
        for round_no in range(rounds):
            for side in (list(rates) if round_no % 2 == 0 else list(rates)[::-1]):
                stack = None
                if side == "stack up":
                    stack = await start_stack(Path(tmp))
                    await asyncio.sleep(15)  # past its start-up work (the group join, the first merges)
                try:
                    rates[side].append(await loop.run_in_executor(None, run))
                finally:
                    if stack is not None:
                        await stack.stop()
                print(f"round {round_no + 1}, {side}: {rates[side][-1]:.2f} tweets/s", flush=True)
    up, down = (statistics.median(rates[side]) for side in rates)
    print(f"medians: stack up {up:.2f}, stack down {down:.2f} tweets/s: {up / down:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["cpu", "model"])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--n", type=int, default=120)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(cpu(args.seconds) if args.what == "cpu" else model(args.n, args.rounds))


if __name__ == "__main__":
    main()
