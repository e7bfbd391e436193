"""What the label queue chooses from: tweets classified by one adapter version in a window, with their text."""

from __future__ import annotations

from datetime import datetime
from typing import Sequence

from shared.store.base import Store

_PROBS = "[p_pro, p_anti, p_neutral, p_unrelated]"
#: The active adapter's uncertainty in SQL, as ``shared.labeling.queue`` computes it in Python.
UNCERTAINTY_SQL = {
    "margin": f"1 - (arrayReverseSort({_PROBS})[1] - arrayReverseSort({_PROBS})[2])",
    "entropy": f"-arraySum(x -> if(x > 0, x * log(x), 0), {_PROBS}) / log(4)",
}


def classified_languages(store: Store) -> list[str]:
    """Every language any adapter ever classified a tweet as."""
    return [r[0] for r in store.query("SELECT DISTINCT lang FROM classifications ORDER BY lang").rows]


def queue_pool(store: Store, version: str, since: datetime, langs: Sequence[str], pool: int, by: str = "margin"
               ) -> list[tuple]:
    """(tweet id, lang, text, p_pro, p_anti, p_neutral, p_unrelated, labeled) of the tweets of ``langs`` created
    since ``since`` and classified by ``version``: per language the ``pool`` most uncertain ones without a label
    (by ``by``), and every one with a label (``labeled`` = 1; the queue skips them and drops copies of them)."""
    uncertainty = UNCERTAINTY_SQL[by]
    params = {"version": version, "since": since, "langs": list(langs), "pool": pool}
    window = (f"SELECT tweet_id, lang, p_pro, p_anti, p_neutral, p_unrelated, {uncertainty} AS u, "
              "tweet_id IN (SELECT tweet_id FROM labels) AS labeled FROM classifications FINAL "
              "WHERE adapter_version = {version:String} AND tweet_created_at >= {since:DateTime64(3, 'UTC')} "
              "AND lang IN {langs:Array(String)}")
    texts = "SELECT id, text FROM tweets FINAL WHERE created_at >= {since:DateTime64(3, 'UTC')}"
    columns = "c.tweet_id, c.lang, t.text, c.p_pro, c.p_anti, c.p_neutral, c.p_unrelated, c.labeled"
    unlabeled = store.query(
        f"SELECT {columns} FROM ({window}) AS c "
        f"INNER JOIN ({texts}) AS t ON t.id = c.tweet_id WHERE NOT c.labeled "
        "ORDER BY c.lang, c.u DESC, c.tweet_id LIMIT {pool:UInt32} BY c.lang", params).rows
    labeled = store.query(
        f"SELECT {columns} FROM ({window}) AS c INNER JOIN ({texts}) AS t ON t.id = c.tweet_id WHERE c.labeled "
        "ORDER BY c.lang, c.tweet_id", params).rows
    return [tuple(r) for r in unlabeled + labeled]
