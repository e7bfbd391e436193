"""What the store holds of a feed's lines: the lookups that let ``run --feed`` resume a file
(``shared.streaming.feed_resume``)."""

from __future__ import annotations

from shared.store.base import Store


class StoredFeedOutcomes:
    def __init__(self, store: Store):
        self.store = store

    def live_texts(self, ids: list[str]) -> dict[str, str]:
        """Text of each of ``ids`` that is stored and classified by the live stream."""
        if not ids:
            return {}
        rows = self.store.query(
            "SELECT id, text FROM tweets FINAL WHERE id IN {ids:Array(String)} AND id IN"
            " (SELECT tweet_id FROM classifications WHERE tweet_id IN {ids:Array(String)} AND replay_run = '')",
            {"ids": ids}).rows
        return dict(rows)

    def dead_letter_origins(self, origins: list[str]) -> set[str]:
        if not origins:
            return set()
        rows = self.store.query("SELECT origin FROM dead_letters WHERE origin IN {o:Array(String)}",
                                {"o": origins}).rows
        return {row[0] for row in rows}
