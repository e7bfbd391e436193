"""What the command modules share: the epilog every command's help ends with, and argument types."""

from __future__ import annotations

import argparse
from datetime import datetime, timezone

EPILOG = "Settings come from the environment (see `stancestream settings`); KAFKA_BOOTSTRAP and CLICKHOUSE_URL " \
         "unset means the embedded broker and embedded ClickHouse."


def iso_timestamp(text: str) -> datetime:
    """An ISO 8601 time; naive means UTC."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r} (e.g. 2025-01-01 or 2025-01-01T12:00Z)")
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value
