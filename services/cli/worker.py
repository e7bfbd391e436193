"""Consume tweets.raw in micro-batches, classify, write to ClickHouse, then commit."""

from __future__ import annotations

HELP = "run one worker against KAFKA_BOOTSTRAP and ClickHouse (production process)"


def run(args, settings) -> int:
    from services.worker.main import main

    return main(settings)
