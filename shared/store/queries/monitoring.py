"""What the views read: the monitor's sliding window of live tweets, a run's summary, the dashboard's charts, and
the bench's wait for its own tweets. Each reads what is stored, so it works against any deployment: one worker or
many, embedded or not, without talking to the workers themselves."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime

from shared.store.base import Store

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
    corrected: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # lang -> label -> [share, low, high]
    drift: list[dict] = field(default_factory=list)  # the drift alarms on: lang, measure, value, threshold, …

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


def dashboard_data(store: Store, days: int) -> dict:
    recent = "tweet_created_at >= now64(3) - toIntervalDay({d:UInt32})"
    params = {"d": days}
    stance: dict[str, list[dict]] = {}
    for lang, day, pro, anti, neutral in store.query(
            f"SELECT lang, toString(toDate(tweet_created_at)) AS day, countIf(stance = 'pro'), countIf(stance = 'anti'), "
            f"countIf(stance = 'neutral') FROM latest_classifications WHERE topic = 'immigration' AND {recent} "
            "GROUP BY lang, day ORDER BY lang, day", params).rows:
        total = pro + anti + neutral
        stance.setdefault(lang, []).append({"day": day, "n": int(total), "pro": round(pro / total, 4),
                                            "anti": round(anti / total, 4), "neutral": round(neutral / total, 4)})
    volume = [{"lang": lang, "tweets": int(n)} for lang, n in store.query(
        f"SELECT lang, count() AS n FROM latest_classifications WHERE {recent} GROUP BY lang ORDER BY n DESC, lang",
        params).rows]
    confidence = [{"bin": round(float(b), 1), "tweets": int(n)} for b, n in store.query(
        f"SELECT least(floor(confidence * 10), 9) / 10 AS bin, count() FROM latest_classifications WHERE {recent} "
        "GROUP BY bin ORDER BY bin", params).rows]
    adapters = [{"version": v, "status": s, "created_at": str(c), "updated_at": str(u)} for v, s, c, u in store.query(
        "SELECT version, toString(status), created_at, updated_at FROM adapters FINAL ORDER BY created_at, version").rows]
    return {"days": days, "stance": stance, "volume": volume, "confidence": confidence, "adapters": adapters}


def classified_ids_with_prefix(store: Store, prefix: str) -> list[str]:
    """Ids of the classified tweets whose id starts with ``prefix`` (rows, not FINAL: the first sighting counts)."""
    return [r[0] for r in store.query("SELECT tweet_id FROM classifications WHERE startsWith(tweet_id, {p:String})",
                                      {"p": prefix}).rows]
