"""`label-queue` and `labels import` as an analyst runs them: a real Label Studio export imported, the queue made
from a real chDB store of classified tweets (skipping what is labeled, dropping copies), its CSV filled in and
imported, the queue made again."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from commands import cli_env, run_cli

pytestmark = [pytest.mark.clickhouse, pytest.mark.model]

EXPORT = Path(__file__).resolve().parents[1] / "fixtures" / "label_studio_export.json"

#: (id, lang, text, p_pro, p_anti, p_neutral, p_unrelated, hours ago, adapter version). The rt-* tweets are the
#: ones of the Label Studio export; its annotated ones (rt-en-1, rt-en-3, rt-de-1, rt-de-2) get labeled.
TWEETS = [
    ("rt-en-1", "en", "Refugees are welcome in our city, we have room for everyone", .40, .30, .20, .10, 1, "v1"),
    ("rt-en-3", "en", "The minister will talk about visa rules on Monday", .20, .15, .45, .20, 1, "v1"),
    ("rt-en-4", "en", "Deport them all and close the border now", .05, .80, .10, .05, 1, "v1"),  # u .30
    ("en-rt1", "en", "RT @citynews: Refugees are welcome in our city, we have room for everyone https://t.co/x1",
     .40, .30, .20, .10, 1, "v1"),  # u .90, a copy of the labeled rt-en-1
    ("en-a", "en", "Open the border and help the families", .30, .50, .10, .10, 1, "v1"),  # u .80
    ("en-a2", "en", "RT @ngo: open the border and help the FAMILIES!! https://t.co/y2", .30, .50, .10, .10, 1,
     "v1"),  # u .80, a copy of en-a
    ("en-b", "en", "The government should close the asylum centres", .30, .45, .15, .10, 1, "v1"),  # u .85
    ("en-c", "en", "Great match tonight, what a goal", .05, .05, .20, .70, 1, "v1"),  # u .50
    ("en-old", "en", "Old news about asylum policy", .40, .40, .10, .10, 30 * 24, "v1"),  # outside the window
    ("en-v0", "en", "Visa policy for students", .40, .40, .10, .10, 1, "v0"),  # another adapter's
    ("rt-de-1", "de", "Flüchtlinge sind hier willkommen, wir helfen gern", .45, .25, .20, .10, 1, "v1"),
    ("rt-de-2", "de", "Die Grenzen müssen sofort geschlossen werden", .10, .55, .30, .05, 1, "v1"),
    ("rt-de-3", "de", "Der Bundestag berät heute über das neue Einwanderungsgesetz", .15, .15, .50, .20, 1, "v1"),
    ("de-a", "de", "Wir brauchen mehr Fachkräfte aus dem Ausland", .40, .35, .15, .10, 1, "v1"),  # u .95
    ("fr-1", "fr", "Les réfugiés sont les bienvenus", .40, .35, .15, .10, 1, "v1"),  # not asked for
]


def _seed(env: dict[str, str]) -> None:
    def sql(statement: str) -> None:
        done = run_cli("sql", "--write", statement, env=env)
        assert done.returncode == 0, done.stderr

    def quoted(text: str) -> str:
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"

    assert run_cli("migrate", env=env).returncode == 0
    rows = ", ".join(f"({quoted(i)}, '{lang}', {quoted(text)}, {pp}, {pa}, {pn}, {pu}, {hours}, '{version}')"
                     for i, lang, text, pp, pa, pn, pu, hours, version in TWEETS)
    source = ("values('id String, lang String, text String, pp Float32, pa Float32, pn Float32, pu Float32, "
              f"hours UInt32, version String', {rows})")
    sql(f"INSERT INTO tweets (id, text, created_at, ingested_at) SELECT id, text, now64(3) - hours * 3600, now64(3) "
        f"FROM {source}")
    sql("INSERT INTO classifications (tweet_id, adapter_version, model_id, lang, lang_confidence, topic, stance, "
        "label, p_pro, p_anti, p_neutral, p_unrelated, tweet_created_at, classified_at, latency_ms) "
        "SELECT id, version, 'tiny@0', lang, 0.9, 'immigration', 'neutral', 'neutral', pp, pa, pn, pu, "
        f"now64(3) - hours * 3600, now64(3), 5 FROM {source}")
    # the registry: the active v1, whose classifications the queue ranks (no candidate: see
    # tests/integration/test_label_studio.py for the queue with one)
    sql("INSERT INTO adapters SELECT 'v1', NULL, 'var/adapters/v1', 'active', NULL, '{}', 'seeded', now64(3), "
        "now64(3)")


def _queued(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_label_queue_skips_labeled_tweets_drops_copies_and_reads_back_its_filled_in_csv(tmp_path, tiny_model_dir):
    env = cli_env(tmp_path, tiny_model_dir)
    _seed(env)
    imported = run_cli("labels", "import", str(EXPORT), env=env)
    assert imported.returncode == 0, imported.stderr
    assert "stored 6 label(s), dead-lettered 0" in imported.stdout
    assert "6 annotated task(s); 3 without an annotation skipped" in imported.stderr

    # no candidate in the registry: the ranking is the active adapter's margin alone, so the queue is known
    made = run_cli("label-queue", "--lang", "en,de", "--n", "3", "--out", str(tmp_path / "q.json"), env=env)
    assert made.returncode == 0, made.stderr
    assert "note: no candidate adapter in the registry" in made.stderr
    assert made.stdout.splitlines()[:2] == [
        "en: queued 3 of 6 unlabeled tweet(s) in the pool; 2 already labeled, skipped; 2 near-duplicate(s) dropped",
        "de: queued 2 of 2 unlabeled tweet(s) in the pool; 2 already labeled, skipped; 0 near-duplicate(s) dropped"]
    tasks = json.loads((tmp_path / "q.json").read_text())
    assert [(t["data"]["lang"], t["data"]["tweet_id"]) for t in tasks] == [
        ("en", "en-b"), ("en", "en-a"), ("en", "en-c"), ("de", "de-a"), ("de", "rt-de-3")]
    assert [t["predictions"][0]["result"][0]["value"]["choices"] for t in tasks[:2]] == [["anti-immigration"]] * 2
    assert {t["predictions"][0]["model_version"] for t in tasks} == {"v1"}
    rows = _queued(tmp_path / "q.csv")
    assert [r["id"] for r in rows] == [t["data"]["tweet_id"] for t in tasks] and {r["label"] for r in rows} == {""}
    assert rows[0]["text"] == "The government should close the asylum centres"
    assert float(rows[0]["uncertainty"]) == pytest.approx(0.85, abs=1e-4) and rows[0]["disagreement"] == ""
    assert "<Choice value=\"unrelated\"" in (tmp_path / "q.label_config.xml").read_text()

    # the analyst labels two rows of the CSV; the next queue skips them, and the copy of one of them
    with open(tmp_path / "q.csv", newline="") as handle:
        table = list(csv.reader(handle))
    table[1][-1], table[2][-1] = "anti-immigration", "pro-immigration"  # en-b, en-a
    with open(tmp_path / "q.csv", "w", newline="") as handle:
        csv.writer(handle).writerows(table)
    filled = run_cli("labels", "import", str(tmp_path / "q.csv"), env=env)
    assert filled.returncode == 0 and "stored 2 label(s), dead-lettered 0" in filled.stdout, filled.stderr
    assert "3 row(s) with a blank label skipped" in filled.stderr
    again = run_cli("label-queue", "--lang", "en", "--n", "3", "--out", str(tmp_path / "again.json"),
                    "--candidate", "none", env=env)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[0] == ("en: queued 2 of 4 unlabeled tweet(s) in the pool; 4 already labeled, "
                                            "skipped; 2 near-duplicate(s) dropped")
    assert [t["data"]["tweet_id"] for t in json.loads((tmp_path / "again.json").read_text())] == ["en-c", "rt-en-4"]

    unknown = run_cli("label-queue", "--lang", "en,xx", "--out", str(tmp_path / "x.json"), env=env)
    assert unknown.returncode == 2 and unknown.stderr.startswith("stancestream label-queue: unknown language xx")
    assert len(unknown.stderr.splitlines()) == 1 and not (tmp_path / "x.json").exists()
