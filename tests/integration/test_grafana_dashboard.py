"""The provisioned Grafana dashboard (deploy/grafana/dashboards/stancestream.json): every ClickHouse query in it is
expanded the way Grafana and its ClickHouse plugin expand it, run against the real embedded store holding known
rows written by the worker's own sink, and its result checked.

How a panel's SQL reaches ClickHouse: Grafana's frontend first replaces dashboard variables (``$language``,
``${language:singlequote}``); the plugin's backend then expands its macros. The expansion below follows
``pkg/macros/macros.go`` of grafana/clickhouse-datasource v4.20.0 (the version docker-compose.yml pins), for
example ``$__timeFilter(c)`` -> ``c >= toDateTime(<from, unix s>) AND c <= toDateTime(<to, unix s>)`` and
``$__timeInterval(c)`` -> ``toStartOfInterval(toDateTime(c), INTERVAL <interval, s, at least 1> second)``; a macro
it does not know is left in place, as the plugin leaves it, and then fails the query here."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from shared.messages import Category, Classification, Probabilities, Tweet
from shared.quantification.estimators import Calibration
from shared.quantification.live import refresh_label_shares
from shared.store.sinks import ClickHouseSink

pytestmark = pytest.mark.clickhouse

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "stancestream.json").read_text())
PLUGIN = "grafana-clickhouse-datasource"
UTC = timezone.utc

# --- Grafana's and the plugin's expansion ------------------------------------------------------------------------

MACRO = re.compile(r"\$__(\w+)")


def _unix(t: datetime) -> int:
    return int(t.timestamp() // 1)  # Go's Time.Unix(): whole seconds, the milliseconds dropped


def _millis(t: datetime) -> int:
    return int(t.timestamp() * 1000 // 1)


def _plugin_macro(name: str, args: list[str], start: datetime, end: datetime, interval: timedelta) -> str | None:
    """One macro as the plugin's backend expands it; None for a macro it does not define."""
    seconds, millis = max(int(interval.total_seconds()), 1), max(int(interval.total_seconds() * 1000), 1)
    date = lambda t: f"toDate('{t.astimezone(UTC):%Y-%m-%d}')"  # noqa: E731
    between = lambda col, low, high: f"{col} >= {low} AND {col} <= {high}"  # noqa: E731
    seconds_of = lambda t: f"toDateTime({_unix(t)})"  # noqa: E731
    millis_of = lambda t: f"fromUnixTimestamp64Milli({_millis(t)})"  # noqa: E731
    arity = {"fromTime": 0, "toTime": 0, "fromTime_ms": 0, "toTime_ms": 0, "interval_s": 0, "timeFilter": 1,
             "timeFilter_ms": 1, "dateFilter": 1, "timeInterval": 1, "timeInterval_ms": 1, "timeFrom": 1,
             "timeTo": 1, "dateTimeFilter": 2, "dt": 2}
    if name not in arity:
        return None
    if len(args) != arity[name]:
        raise ValueError(f"$__{name} expected {arity[name]} argument(s), received {len(args)}")
    match name:
        case "fromTime":
            return seconds_of(start)
        case "toTime":
            return seconds_of(end)
        case "fromTime_ms":
            return millis_of(start)
        case "toTime_ms":
            return millis_of(end)
        case "interval_s":
            return str(seconds)
        case "timeFilter":
            return between(args[0], seconds_of(start), seconds_of(end))
        case "timeFilter_ms":
            return between(args[0], millis_of(start), millis_of(end))
        case "dateFilter":
            return between(args[0], date(start), date(end))
        case "dateTimeFilter" | "dt":
            dates = between(args[0], date(start), date(end))
            times = between(args[1], seconds_of(start), seconds_of(end))
            return f"({dates}) AND ({times})"
        case "timeInterval":
            return f"toStartOfInterval(toDateTime({args[0]}), INTERVAL {seconds} second)"
        case "timeInterval_ms":
            return f"toStartOfInterval(toDateTime64({args[0]}, 3), INTERVAL {millis} millisecond)"
        case "timeFrom":
            return f"{args[0]} >= {seconds_of(start)}"
        case "timeTo":
            return f"{args[0]} <= {seconds_of(end)}"


def expand_macros(sql: str, start: datetime, end: datetime, interval: timedelta) -> str:
    """The plugin's macro pass: ``$__name`` or ``$__name(args)``, arguments split at top-level commas (nested
    parentheses and nested macros allowed) and trimmed; unknown macros stay as they are."""
    out, i = [], 0
    while match := MACRO.search(sql, i):
        out.append(sql[i:match.start()])
        end_of_macro, args = match.end(), []
        if sql[end_of_macro:end_of_macro + 1] == "(":
            depth, pieces, piece_start = 0, [], end_of_macro + 1
            for k in range(end_of_macro, len(sql)):
                if sql[k] == "(":
                    depth += 1
                elif sql[k] == ")":
                    depth -= 1
                if depth == 1 and sql[k] == ",":
                    pieces.append(sql[piece_start:k])
                    piece_start = k + 1
                if depth == 0:
                    pieces.append(sql[piece_start:k])
                    end_of_macro = k + 1
                    break
            else:
                raise ValueError(f"unbalanced parentheses after $__{match.group(1)}")
            args = [expand_macros(p, start, end, interval).strip() for p in pieces if p.strip()]
        expanded = _plugin_macro(match.group(1), args, start, end, interval)
        out.append(sql[match.start():end_of_macro] if expanded is None else expanded)
        i = end_of_macro
    return "".join(out + [sql[i:]])


VARIABLE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)")


def expand_variables(sql: str, values: dict[str, list[str]]) -> str:
    """Grafana's pass over dashboard variables (``$__`` names are left to the plugin): ``:singlequote`` quotes
    and joins the values, as does the plugin's own formatter for a multi-value variable without a format."""

    def one(match: re.Match) -> str:
        name, fmt = (match.group(1), match.group(2)) if match.group(1) else (match.group(3), None)
        if name.startswith("__"):
            return match.group(0)
        if fmt not in (None, "singlequote"):
            raise ValueError(f"format {fmt!r} of ${name} is not expanded here")
        return ",".join("'" + v.replace("'", "\\'") + "'" for v in values[name])

    return VARIABLE.sub(one, sql)


def expand(sql: str, values: dict[str, list[str]], start: datetime, end: datetime, interval: timedelta) -> str:
    expanded = expand_macros(expand_variables(sql, values), start, end, interval)
    left = re.findall(r"\$\{?\w+", expanded)
    assert not left, f"left unexpanded: {left} in {expanded}"
    return expanded


# --- the dashboard ----------------------------------------------------------------------------------------------


def _is_clickhouse(*sources: dict | None) -> bool:
    return any((s or {}).get("type") == PLUGIN for s in sources)


def _panels(panels: list[dict]) -> list[dict]:
    return [q for p in panels for q in ([p] + _panels(p.get("panels", [])))]


def clickhouse_queries() -> dict[str, tuple[str, int]]:
    """Every ClickHouse query of the dashboard: panel title (or ``variable <name>``) -> (SQL, format)."""
    queries = {}
    for panel in _panels(DASHBOARD["panels"]):
        for target in panel.get("targets", []):
            if _is_clickhouse(target.get("datasource"), panel.get("datasource")):
                queries[f"{panel['title']} {target['refId']}"] = (target["rawSql"], target["format"])
    for variable in DASHBOARD["templating"]["list"]:
        if variable["type"] == "query" and _is_clickhouse(variable.get("datasource")):
            queries[f"variable {variable['name']}"] = (variable["query"], 1)
    return queries


QUERIES = clickhouse_queries()
VARIABLES = [v["name"] for v in DASHBOARD["templating"]["list"]]

# --- known data, written by the worker's sink -------------------------------------------------------------------

START, END = datetime(2026, 11, 3, 0, 0, tzinfo=UTC), datetime(2026, 11, 3, 23, 59, 59, 999_000, tzinfo=UTC)
HOUR = timedelta(hours=1)
H9, H10, OUTSIDE = (datetime(2026, 11, 3, 9, 5, tzinfo=UTC), datetime(2026, 11, 3, 10, 20, tzinfo=UTC),
                    datetime(2026, 11, 5, 9, 0, tzinfo=UTC))
AT_9, AT_10, AT_11 = (datetime(2026, 11, 3, 9, 30, tzinfo=UTC), datetime(2026, 11, 3, 10, 30, tzinfo=UTC),
                      datetime(2026, 11, 3, 11, 0, tzinfo=UTC))
A, P, N, U = Category.anti, Category.pro, Category.neutral, Category.unrelated
# (tweet id, language, label, posted, confidence of the label, adapter version, classified at, replay run)
ROWS = [
    ("e1", "en", A, H9, 0.9, "v1", AT_9, ""), ("e2", "en", A, H9, 0.9, "v1", AT_9, ""),
    ("e3", "en", A, H9, 0.45, "v1", AT_9, ""), ("e4", "en", P, H9, 0.6, "v1", AT_9, ""),
    ("e5", "en", U, H9, 0.95, "v1", AT_9, ""), ("e6", "en", U, H9, 1.0, "v1", AT_9, ""),
    ("d1", "de", P, H9, 0.9, "v1", AT_9, ""), ("d2", "de", P, H9, 0.3, "v1", AT_9, ""),
    ("d3", "de", N, H9, 0.75, "v1", AT_9, ""), ("d4", "de", N, H9, 0.9, "v1", AT_9, ""),
    # after the hot swap to v2
    ("e7", "en", A, H10, 0.9, "v2", AT_10, ""), ("e8", "en", N, H10, 0.9, "v2", AT_10, ""),
    # outside the time range: in no panel, and no language of the variable
    ("f1", "fr", A, OUTSIDE, 0.9, "v2", OUTSIDE, ""), ("f2", "fr", P, OUTSIDE, 0.9, "v2", OUTSIDE, ""),
    # a replay of two live tweets by v2 (other labels, other confidences): the live panels do not count them
    ("e1", "en", N, H9, 0.35, "v2", AT_11, "rp1"), ("e2", "en", N, H9, 0.9, "v2", AT_11, "rp1"),
]


# An adapter whose errors are even: the correction moves shares only by what the probabilities say.
CALIBRATION = Calibration.measure(np.eye(4) * 0.7 + 0.075, np.arange(4), "hand-made")


def _probabilities(label: Category, confidence: float) -> Probabilities:
    rest = (1 - confidence) / 3
    return Probabilities(**{c.name: confidence if c is label else rest for c in Category})


@pytest.fixture(scope="module")
def known_store(store):
    from conftest import DATA_TABLES

    for table in DATA_TABLES:
        store.command(f"TRUNCATE TABLE IF EXISTS {table}")
    tweets = {tweet_id: Tweet(id=tweet_id, text=f"text of {tweet_id}", created_at=posted, source="test")
              for tweet_id, _, _, posted, *_ in ROWS}
    classifications = [
        Classification.from_label(label, tweet_id=tweet_id, lang=lang, lang_confidence=0.99,
                                  probabilities=_probabilities(label, confidence), adapter_version=version,
                                  model_id="tiny@0", classified_at=classified, latency_ms=250.0, replay_run=run)
        for tweet_id, lang, label, _, confidence, version, classified, run in ROWS]
    ClickHouseSink(store).write(list(tweets.values()), classifications, [])
    # the corrected-share panel reads what the trainer service computes from those rows
    refresh_label_shares(store, lambda version: CALIBRATION, "hour", START - timedelta(days=1), resamples=50)
    return store


def run(store, name: str, languages: tuple[str, ...] = ("de", "en")):
    """The named query, expanded for the day of the known data in hourly intervals, through a read-only session
    (the analyst's data source is read-only too)."""
    sql, fmt = QUERIES[name]
    result = store.read_only().query(expand(sql, {"language": list(languages)}, START, END, HOUR))
    if fmt == 0:  # a time series: the plugin needs a DateTime column for the time axis
        assert result.types[0].startswith("DateTime"), (name, result.types)
    return result.rows


def _hour(h: int) -> datetime:
    return datetime(2026, 11, 3, h, 0)


# --- the expansion itself ---------------------------------------------------------------------------------------


def test_expansion_matches_the_plugins_own_test_cases():
    # pkg/macros/macros_test.go of grafana/clickhouse-datasource v4.20.0: these inputs, these outputs
    start = datetime(2014, 11, 12, 11, 45, 26, 123_000, tzinfo=UTC)
    end = datetime(2015, 11, 12, 11, 45, 26, 456_000, tzinfo=UTC)
    minute = timedelta(minutes=1)
    cases = {
        "select * from foo where $__timeFilter(cast(sth as timestamp) )":
            "select * from foo where cast(sth as timestamp) >= toDateTime(1415792726) AND "
            "cast(sth as timestamp) <= toDateTime(1447328726)",
        "select * from foo where $__timeFilter_ms(cast(sth as timestamp))":
            "select * from foo where cast(sth as timestamp) >= fromUnixTimestamp64Milli(1415792726123) AND "
            "cast(sth as timestamp) <= fromUnixTimestamp64Milli(1447328726456)",
        "select * from foo where ( date >= $__fromTime ) and ( date <= $__toTime ) limit 100":
            "select * from foo where ( date >= toDateTime(1415792726) ) and "
            "( date <= toDateTime(1447328726) ) limit 100",
        "select * from foo where ( date >= $__fromTime_ms and date <= $__toTime_ms ) limit 100":
            "select * from foo where ( date >= fromUnixTimestamp64Milli(1415792726123) and "
            "date <= fromUnixTimestamp64Milli(1447328726456) ) limit 100",
        "SELECT $__timeInterval($__fromTime) AS from_time":
            "SELECT toStartOfInterval(toDateTime(toDateTime(1415792726)), INTERVAL 60 second) AS from_time",
        "SELECT $__timeInterval_ms($__fromTime_ms)":
            "SELECT toStartOfInterval(toDateTime64(fromUnixTimestamp64Milli(1415792726123), 3), "
            "INTERVAL 60000 millisecond)",
        "$__dateFilter(dateCol)": "dateCol >= toDate('2014-11-12') AND dateCol <= toDate('2015-11-12')",
        "$__dateTimeFilter(dateCol, timeCol)":
            "(dateCol >= toDate('2014-11-12') AND dateCol <= toDate('2015-11-12')) AND "
            "(timeCol >= toDateTime(1415792726) AND timeCol <= toDateTime(1447328726))",
        "$__timeFrom(ts)": "ts >= toDateTime(1415792726)",
        "$__timeTo(ts)": "ts <= toDateTime(1447328726)",
    }
    for sql, expected in cases.items():
        assert expand_macros(sql, start, end, minute) == expected
    twenty = timedelta(seconds=20)
    assert expand_macros("$__timeInterval(col)", start, end, twenty) == \
        "toStartOfInterval(toDateTime(col), INTERVAL 20 second)"
    assert expand_macros("$__interval_s", start, end, twenty) == "20"
    assert expand_macros("$__interval_s", start, end, timedelta(0)) == "1"  # never below one second


def test_an_unexpanded_macro_or_variable_fails_the_query():
    with pytest.raises(AssertionError, match=r"\$__timeFiltre"):  # a typo: the plugin would send it as is
        expand("SELECT 1 WHERE $__timeFiltre(t)", {}, START, END, HOUR)
    with pytest.raises(AssertionError, match=r"\$__interval_ms"):  # Grafana's, not this plugin's
        expand("SELECT $__interval_ms", {}, START, END, HOUR)
    with pytest.raises(KeyError):  # a dashboard variable that does not exist
        expand("SELECT 1 WHERE lang IN (${country:singlequote})", {"language": ["en"]}, START, END, HOUR)
    assert expand("SELECT 1 WHERE lang IN (${language:singlequote}) OR lang = $language", {"language": ["en", "it's"]},
                  START, END, HOUR) == "SELECT 1 WHERE lang IN ('en','it\\'s') OR lang = 'en','it\\'s'"


# --- the dashboard's queries ------------------------------------------------------------------------------------


def test_the_dashboard_has_the_panels_it_promises():
    titles = {p["title"] for p in _panels(DASHBOARD["panels"])}
    assert {"Stance share per language", "Volume per language", "Confidence distribution",
            "Adapter versions over time", "Dead letters per second", "Consumer lag",
            "Tweet latency percentiles"} <= titles
    assert VARIABLES == ["language"]
    # every ClickHouse query is filtered by the dashboard's time range (the variable's too) and, in panels, by
    # its language selection
    for name, (sql, _) in QUERIES.items():
        assert re.search(r"\$__timeFilter\(\w+\)", sql), name
        assert name.startswith("variable") or "${language:singlequote}" in sql, name


def test_every_clickhouse_query_expands_completely_and_runs(known_store):
    assert len(QUERIES) >= 5
    for name in QUERIES:
        assert run(known_store, name), f"{name}: no rows for the known data"


def test_language_variable_lists_the_languages_in_the_time_range(known_store):
    assert run(known_store, "variable language") == [("de",), ("en",)]  # not fr: posted outside the range


def test_stance_share_per_language(known_store):
    rows = run(known_store, "Stance share per language A")
    assert [(t, series, pytest.approx(share)) for t, series, share in rows] == [
        (_hour(9), "de neutral", 0.5), (_hour(9), "de pro", 0.5),
        (_hour(9), "en anti", 0.75), (_hour(9), "en pro", 0.25),  # the unrelated ones are no stance
        (_hour(10), "en anti", 0.5), (_hour(10), "en neutral", 0.5)]
    totals: dict[tuple, float] = {}
    for t, series, share in rows:
        totals[(t, series.split()[0])] = totals.get((t, series.split()[0]), 0) + share
    assert totals == {key: pytest.approx(1.0) for key in totals}  # per language and interval, shares add up to 1
    only_en = run(known_store, "Stance share per language A", languages=("en",))
    assert [r[:2] for r in only_en] == [(_hour(9), "en anti"), (_hour(9), "en pro"), (_hour(10), "en anti"),
                                        (_hour(10), "en neutral")]


def test_volume_per_language(known_store):
    assert run(known_store, "Volume per language A") == [(_hour(9), "de", 4), (_hour(9), "en", 6), (_hour(10), "en", 2)]
    assert run(known_store, "Volume per language A", languages=("de",)) == [(_hour(9), "de", 4)]


def test_confidence_distribution(known_store):
    rows = run(known_store, "Confidence distribution A")
    # 0.3, 0.45, 0.6, 0.75, then six at 0.9, one at 0.95 and one at 1.0 (the top bucket includes 1.0); the
    # replay's 0.35 is not live
    assert rows == [("0.3-0.4", 1), ("0.4-0.5", 1), ("0.6-0.7", 1), ("0.7-0.8", 1), ("0.9-1.0", 8)]
    assert sum(n for _, n in rows) == 12  # every live tweet of the range, once


def test_adapter_versions_over_time(known_store):
    # by classification time: v1 until the swap, v2 after; the replay (v2 at 11:00) is not the live stream
    assert run(known_store, "Adapter versions over time A") == [(_hour(9), "v1", 10), (_hour(10), "v2", 2)]


def test_corrected_anti_share_with_its_interval_and_the_counted_one(known_store):
    rows = run(known_store, "Anti-immigration share, corrected A")
    at_9 = {series: share for t, series, share in rows if t == _hour(9)}
    # English at 9: e1-e3 predicted anti of six live tweets; German: none of four
    assert at_9["en v1 counted"] == pytest.approx(0.5) and at_9["de v1 counted"] == 0
    for lang in ("en", "de"):
        low, share, high = (at_9[f"{lang} v1 {k}"] for k in ("95% low", "corrected", "95% high"))
        assert low <= share + 1e-6 and share <= high + 1e-6
    assert {series.split()[0] for _, series, _ in rows} == {"de", "en"}  # no fr: outside the range
    assert {t for t, *_ in rows} == {_hour(9), _hour(10)}


def test_the_time_range_filters(known_store):
    # the day after the known data: every panel and the variable are empty
    day = timedelta(days=1)
    later = {name: known_store.read_only().query(expand(sql, {"language": ["de", "en", "fr"]}, START + day, END + day,
                                                        HOUR)).rows
             for name, (sql, _) in QUERIES.items()}
    assert later == {name: [] for name in QUERIES}
