"""Replays: their runs, the archive they read, and the tweets a run already classified."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterator, Sequence

from shared.messages import Tweet
from shared.store.base import Store

REPLAY_RUN_COLUMNS = ("run_id", "adapter_version", "adapter_path", "source", "since", "until", "langs", "total",
                      "done", "status", "message", "started_at", "updated_at")
ARCHIVE_PAGE = 2000


def replay_run(store: Store, run_id: str) -> dict[str, Any] | None:
    rows = store.query(f"SELECT {', '.join(REPLAY_RUN_COLUMNS)} FROM replay_runs FINAL WHERE run_id = {{r:String}}",
                       {"r": run_id}).dicts()
    return rows[0] if rows else None


def replay_runs(store: Store) -> list[dict[str, Any]]:
    return store.query(f"SELECT {', '.join(REPLAY_RUN_COLUMNS)} FROM replay_runs FINAL ORDER BY started_at").dicts()


def record_replay_run(store: Store, row: Sequence[Any]) -> None:
    """A run's progress, its values in ``REPLAY_RUN_COLUMNS`` order; the latest ``updated_at`` wins."""
    store.insert("replay_runs", [row], REPLAY_RUN_COLUMNS)


def archived_tweets(store: Store, since: datetime | None, until: datetime | None) -> Iterator[Tweet]:
    """The ``tweets`` archive in posting order, posted in [since, until), fetched page by page."""
    where, params = [], {}
    if since:
        where.append("created_at >= {since:DateTime64(3, 'UTC')}")
        params["since"] = since
    if until:
        where.append("created_at < {until:DateTime64(3, 'UTC')}")
        params["until"] = until
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    last: tuple | None = None
    while True:
        page_where = clause
        if last is not None:
            page_where += (" AND " if clause else "WHERE ") + \
                "(created_at, id) > ({lc:DateTime64(3, 'UTC')}, {li:String})"
            params |= {"lc": last[0], "li": last[1]}
        rows = store.query(f"SELECT id, text, created_at, platform_lang, author_id, country, source FROM tweets FINAL "
                           f"{page_where} ORDER BY created_at, id LIMIT {ARCHIVE_PAGE}", params).rows
        if not rows:
            return
        for r in rows:
            yield Tweet(id=r[0], text=r[1], created_at=r[2], lang=r[3], author_id=r[4], country=r[5], source=r[6])
        last = (rows[-1][2], rows[-1][0])


def replayed_tweet_ids(store: Store, run_id: str) -> set[str]:
    """The tweets a replay run already classified (what resuming it skips)."""
    return {r[0] for r in store.query("SELECT DISTINCT tweet_id FROM classifications WHERE replay_run = {r:String}",
                                      {"r": run_id}).rows}
