"""A run's live summary, as ``stancestream run`` shows it: a rich table on a terminal, one line otherwise."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from shared.store.queries.monitoring import RunSummary

_LABEL_COLUMNS = ("pro-immigration", "anti-immigration", "neutral", "unrelated")


def render_summary(summary: RunSummary, title: str = "stancestream") -> Group:
    head = Text.assemble(
        (f"{summary.classified}", "bold green"), " classified   ",
        (f"{summary.dead_letters}", "bold red" if summary.dead_letters else "bold"), " dead letters   ",
        (f"{summary.rate_per_s:.1f}", "bold"), " tweets/s   latency p50 ",
        (_ms(summary.latency_p50_ms), "bold"), " p95 ", (_ms(summary.latency_p95_ms), "bold"),
        "   adapter ", (", ".join(summary.adapters) or "-", "bold cyan"),
    )
    table = Table(title=title, title_justify="left", show_footer=True)
    table.add_column("lang", footer="all")
    totals = {label: sum(row.get(label, 0) for row in summary.by_language.values()) for label in _LABEL_COLUMNS}
    for label in _LABEL_COLUMNS:
        table.add_column(label, justify="right", footer=str(totals[label]))
    table.add_column("total", justify="right", footer=str(sum(totals.values())))
    for lang, row in sorted(summary.by_language.items(), key=lambda kv: -sum(kv[1].values())):
        table.add_row(lang, *(str(row.get(label, 0)) for label in _LABEL_COLUMNS), str(sum(row.values())))
    return Group(head, table)


def summary_line(summary: RunSummary) -> str:
    return (f"classified={summary.classified} dead_letters={summary.dead_letters} rate={summary.rate_per_s:.1f}/s "
            f"latency_p50={_ms(summary.latency_p50_ms)} p95={_ms(summary.latency_p95_ms)}")


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1000:.2f}s" if value >= 1000 else f"{value:.0f}ms"
