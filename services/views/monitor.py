"""``stancestream monitor``: live numbers of the stream, read from ClickHouse (through the gateway when embedded).

Everything shown is a query over the last ``window_s`` seconds of live (non-replay) rows, so the monitor works
against any deployment — one worker or many — without talking to the workers themselves.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from shared.messages import CATEGORIES
from shared.store.clickhouse import Store

RATE_WINDOW_S = 30  # the ingest rate is over the last 30 s (or the window, if shorter)


@dataclass
class MonitorSnapshot:
    window_s: int
    ingest_per_s: float
    tweets_in_window: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    mix: dict[str, dict[str, int]] = field(default_factory=dict)  # lang -> label -> tweets, in the window
    dead_letters_in_window: int = 0
    dead_letters_total: int = 0
    active_adapter: str | None = None
    last_training: dict | None = None

    @classmethod
    def read(cls, store: Store, window_s: int) -> "MonitorSnapshot":
        window = {"w": window_s, "r": min(RATE_WINDOW_S, window_s)}
        live = "replay_run = '' AND classified_at >= now64(3) - toIntervalSecond({w:UInt32})"
        n, p50, p95, recent = store.query(
            f"SELECT count(), quantileExact(0.5)(latency_ms), quantileExact(0.95)(latency_ms), "
            f"countIf(classified_at >= now64(3) - toIntervalSecond({{r:UInt32}})) FROM classifications WHERE {live}",
            window).rows[0]
        mix: dict[str, dict[str, int]] = {}
        for lang, label, count in store.query(
                f"SELECT lang, toString(label), count() FROM classifications WHERE {live} GROUP BY lang, label "
                "ORDER BY count() DESC", window).rows:
            mix.setdefault(lang, {})[label] = int(count)
        # The two queries see a stream that moved on in between: the count is the mix's, so they always agree.
        n = sum(sum(labels.values()) for labels in mix.values())
        dlq_window, dlq_total = store.query(
            "SELECT countIf(failed_at >= now64(3) - toIntervalSecond({w:UInt32})), count() FROM dead_letters FINAL",
            window).rows[0]
        active = store.query("SELECT version FROM adapters FINAL WHERE status = 'active' "
                             "ORDER BY updated_at DESC LIMIT 1").scalar()
        runs = store.query("SELECT started_at, toString(decision) AS decision, candidate_version, reason, duration_s "
                           "FROM adapter_runs ORDER BY started_at DESC LIMIT 1").dicts()
        return cls(window_s, round(int(recent) / window["r"], 2), int(n),
                   float(p50) if n else None, float(p95) if n else None, mix, int(dlq_window), int(dlq_total),
                   active, {k: str(v) if k == "started_at" else v for k, v in runs[0].items()} if runs else None)

    def as_json(self) -> dict:
        return asdict(self)

    def render(self):
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        latency = (f"{self.latency_p50_ms / 1000:.2f} s / {self.latency_p95_ms / 1000:.2f} s"
                   if self.latency_p50_ms is not None else "—")
        head = Text.assemble(
            ("ingest ", "bold"), f"{self.ingest_per_s:.1f} tweets/s   ",
            ("latency p50/p95 ", "bold"), f"{latency}   ",
            ("DLQ ", "bold"), (f"{self.dead_letters_in_window}", "red" if self.dead_letters_in_window else ""),
            f" in window, {self.dead_letters_total} total   ",
            ("adapter ", "bold"), self.active_adapter or "(none)")
        labels = [c.value for c in CATEGORIES]
        table = Table("lang", *labels, "tweets", "anti share", title=f"last {self.window_s} s, live tweets",
                      title_justify="left")
        for lang, counts in sorted(self.mix.items(), key=lambda kv: -sum(kv[1].values())):
            total = sum(counts.values())
            stance = total - counts.get("unrelated", 0)
            anti = f"{counts.get('anti-immigration', 0) / stance:.0%}" if stance else "—"
            table.add_row(lang, *(str(counts.get(label, 0)) for label in labels), str(total), anti)
        run = self.last_training
        last = Text.assemble(("last trainer run ", "bold"),
                             f"{run['started_at']}: {run['decision']} {run['candidate_version'] or ''} — {run['reason']}"
                             if run else "none yet")
        return Group(head, table, last)
