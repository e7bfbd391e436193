"""Live numbers of a run, read back from ClickHouse (what is there is what counts), and their rendering."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from rich.console import Group
from rich.table import Table
from rich.text import Text

from shared.store import Store

_LABEL_COLUMNS = ("pro-immigration", "anti-immigration", "neutral", "unrelated")


@dataclass
class RunSummary:
    classified: int = 0
    dead_letters: int = 0
    rate_per_s: float = 0.0
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    by_language: dict[str, dict[str, int]] = field(default_factory=dict)
    adapters: list[str] = field(default_factory=list)

    @classmethod
    def read(cls, store: Store, since: datetime, rate_window_s: int = 10) -> "RunSummary":
        params = {"since": since}
        totals = store.query(
            "SELECT count(), quantileExact(0.5)(latency_ms), quantileExact(0.95)(latency_ms),"
            " countIf(classified_at >= now64(3) - toIntervalSecond({w:UInt32})), groupUniqArray(adapter_version)"
            " FROM classifications FINAL WHERE classified_at >= {since:DateTime64(3)}",
            params | {"w": rate_window_s},
        ).rows[0]
        summary = cls(
            classified=int(totals[0]),
            latency_p50_ms=float(totals[1]) if totals[0] else None,
            latency_p95_ms=float(totals[2]) if totals[0] else None,
            rate_per_s=int(totals[3]) / rate_window_s,
            adapters=sorted(totals[4]),
        )
        summary.dead_letters = int(
            store.query("SELECT count() FROM dead_letters FINAL WHERE failed_at >= {since:DateTime64(3)}", params)
            .scalar()
        )
        for lang, label, n in store.query(
            "SELECT lang, toString(label), count() FROM classifications FINAL"
            " WHERE classified_at >= {since:DateTime64(3)} GROUP BY lang, label",
            params,
        ).rows:
            summary.by_language.setdefault(lang, {})[label] = int(n)
        return summary

    def render(self, title: str = "stancestream") -> Group:
        head = Text.assemble(
            (f"{self.classified}", "bold green"), " classified   ",
            (f"{self.dead_letters}", "bold red" if self.dead_letters else "bold"), " dead letters   ",
            (f"{self.rate_per_s:.1f}", "bold"), " tweets/s   latency p50 ",
            (_ms(self.latency_p50_ms), "bold"), " p95 ", (_ms(self.latency_p95_ms), "bold"),
            "   adapter ", (", ".join(self.adapters) or "-", "bold cyan"),
        )
        table = Table(title=title, title_justify="left", show_footer=True)
        table.add_column("lang", footer="all")
        totals = {label: sum(row.get(label, 0) for row in self.by_language.values()) for label in _LABEL_COLUMNS}
        for label in _LABEL_COLUMNS:
            table.add_column(label, justify="right", footer=str(totals[label]))
        table.add_column("total", justify="right", footer=str(sum(totals.values())))
        for lang, row in sorted(self.by_language.items(), key=lambda kv: -sum(kv[1].values())):
            table.add_row(lang, *(str(row.get(label, 0)) for label in _LABEL_COLUMNS), str(sum(row.values())))
        return Group(head, table)

    def line(self) -> str:
        return (f"classified={self.classified} dead_letters={self.dead_letters} rate={self.rate_per_s:.1f}/s "
                f"latency_p50={_ms(self.latency_p50_ms)} p95={_ms(self.latency_p95_ms)}")


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1000:.2f}s" if value >= 1000 else f"{value:.0f}ms"
