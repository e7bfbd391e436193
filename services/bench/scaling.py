"""(f) Workers: the embedded stack's backlog throughput with 1, 2, … worker processes, up to the machine's cores.

For k workers: a stack (broker, store, gateway and a worker of its own, in this process) and k − 1
`stancestream worker` processes attached to it, as a user scales out on one machine; each process gets
cores // k torch threads, ``tweets.raw`` has 2 × the most workers partitions, the cache is off (the bench's
tweets repeat). Once every worker holds partitions and has classified a warm-up burst, a burst of ``n`` tweets:
tweets per second from its first produce to its last result.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from services.bench.e2e import _Offer, _Results
from services.stack.stack import Stack
from shared.settings import Settings
from shared.streaming.broker import free_port

REPO = Path(__file__).resolve().parents[2]


def _assigned(port: int) -> int:
    """``stancestream_assigned_partitions`` of the worker serving metrics on ``port`` (0 while it is not up)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            lines = response.read().decode().splitlines()
    except OSError:
        return 0
    return next((int(float(line.split()[1])) for line in lines
                 if line.startswith("stancestream_assigned_partitions ")), 0)


async def _one(settings: Settings, texts: list[str], k: int, partitions: int, threads: int, n: int, log) -> dict:
    # The same data directory every time: this process can open only one embedded store.
    owner_settings = settings.model_copy(update={
        "torch_threads": threads, "partitions": partitions, "cache_entries": 0, "metrics_port": None,
        "trainer_embedded": False})
    stack = await Stack(owner_settings).start(status=lambda m: log(f"  {k} worker(s): {m}"))
    ports = [free_port() for _ in range(k - 1)]
    env = {key: value for key, value in os.environ.items() if not key.startswith(("KAFKA_", "CLICKHOUSE_"))} | {
        "STANCESTREAM_DATA_DIR": str(owner_settings.data_dir), "STANCESTREAM_TORCH_THREADS": str(threads),
        "STANCESTREAM_PARTITIONS": str(partitions), "STANCESTREAM_CACHE_ENTRIES": "0",
        "STANCESTREAM_TRAINER_EMBEDDED": "false"}
    attached = [subprocess.Popen([sys.executable, "-m", "services.cli", "worker"], cwd=REPO,
                                 env=env | {"STANCESTREAM_METRICS_PORT": str(port)},
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for port in ports]
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=stack.settings.kafka_bootstrap, linger_ms=0, acks=1)
    results = _Results(stack.settings)
    await producer.start()
    await results.start()
    try:
        deadline = time.monotonic() + 600
        while True:  # every worker up and holding partitions, the group settled
            own = stack.telemetry.registry.get_sample_value("stancestream_assigned_partitions") or 0
            held = [int(own)] + [_assigned(port) for port in ports]
            if all(held) and sum(held) == partitions:
                break
            if any(p.poll() is not None for p in attached) or time.monotonic() > deadline:
                raise RuntimeError(f"the {k - 1} attached worker(s) did not all start (partitions held: {held})")
            await asyncio.sleep(1)
        offer = _Offer(stack, producer, results)
        await offer.run([texts[i % len(texts)] for i in range(32 * k)], None, f"w{k}-warmup")
        row = await offer.run([texts[i % len(texts)] for i in range(n)], None, f"w{k}")
        log(f"  {k} worker(s) × {threads} thread(s): {row['throughput']:.2f} tweets/s (partitions held {held})")
        return {"workers": k, "torch_threads": threads, "n": n, "tweets_per_s": row["throughput"],
                "p50_s": row["p50_s"], "partitions_held": held}
    finally:
        for proc in attached:
            proc.terminate()
        for proc in attached:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        await results.stop()
        await producer.stop()
        await stack.stop()


def run_scaling(settings: Settings, texts: list[str], log, n: int, max_workers: int | None = None) -> dict:
    """Backlog throughput for 1 … ``max_workers`` (default: the cores) worker processes; ``speedup`` against one."""
    cores = os.cpu_count() or 1
    most = max_workers or cores
    rows = [asyncio.run(_one(settings, texts, k, 2 * most, max(1, cores // k), n, log)) for k in range(1, most + 1)]
    for row in rows:
        row["speedup"] = round(row["tweets_per_s"] / rows[0]["tweets_per_s"], 3)
    return {"cores": cores, "rows": rows}
