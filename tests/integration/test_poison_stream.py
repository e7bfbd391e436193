"""Poison input against the real infrastructure: label files imported into chDB, migration 0004 on real chDB,
and the corpus mixed with tweets through the real feeder, the real Tansu broker, the real worker and chDB.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from datetime import datetime, timezone

import pytest

from poison import BROKER_LIMIT, LIMIT, POISON, line, write_lines
from reliability_log import record
from services.labels.importer import import_labels
from shared.streaming.feed import FeedReport, produce_feed, read_feed
from shared.streaming.feed_files import FeedRecord, feed_id
from shared.streaming.label_files import LabelFileError, read_label_file
from shared.messages import DEAD_LETTER_PREFIX_BYTES, DeadLetter
from shared.settings import Settings
from services.stack.stack import Stack
from shared.store.migrations import MIGRATIONS_DIR
from shared.store.sinks import write_dead_letters
from shared.streaming.topics import Topics, physical
from streams import read_topic, stream_settings, wait_committed

pytestmark = pytest.mark.clickhouse


# --- labels: a malformed CSV imports nothing ------------------------------------------------------------------


LABELS_HEADER = b"id,lang,label,text\n"


@pytest.mark.parametrize(("body", "message"), [
    (b'l1,en,pro-immigration,"fine"\nl2,en,anti-immigration,"unterminated\nl3,en,neutral,text\n',
     "line 3: unterminated quoted field; nothing imported"),
    (b"l1,en,pro-immigration,fine\nl2,en,neutral\n", "line 3: 3 fields where the header has 4; nothing imported"),
    (b"l1,en,pro-immigration,fi\xffne\n", "line 2: not valid UTF-8 at byte 24; nothing imported"),
])
def test_a_malformed_label_csv_names_the_line_and_imports_nothing(tmp_path, clean_store, store_dir, body, message):
    path = tmp_path / "labels.csv"
    path.write_bytes(LABELS_HEADER + body)
    with pytest.raises(LabelFileError) as info:
        list(read_label_file(str(path)))
    assert str(info.value) == f"{path}: {message}"
    with pytest.raises(LabelFileError):
        import_labels(Settings(data_dir=store_dir), str(path))
    assert clean_store.query("SELECT count() FROM labels").scalar() == 0


def test_a_label_csv_with_multiline_texts_imports_every_row(tmp_path, clean_store, store_dir):
    path = tmp_path / "labels.csv"
    path.write_bytes(LABELS_HEADER + b'l1,en,pro-immigration,"two\nlines"\nl2,en,neutral,plain\n')
    result = import_labels(Settings(data_dir=store_dir), str(path))
    assert (result.sent, result.stored, result.dead_lettered) == (2, 2, 0)
    assert clean_store.query("SELECT tweet_id, text FROM labels FINAL ORDER BY tweet_id").rows == [
        ("l1", "two\nlines"), ("l2", "plain")]


# --- the migration, on real chDB --------------------------------------------------------------------------------


def migration_sql(direction: str, database: str) -> list[str]:
    """0004's statements with its tables qualified by ``database`` (so the session's tables are not touched)."""
    text = (MIGRATIONS_DIR / f"0004_dead_letter_bounds.{direction}.sql").read_text()
    text = "\n".join(x for x in text.splitlines() if not x.lstrip().startswith("--"))
    text = re.sub(r"\b(dead_letters(?:_000[34])?)\b", rf"{database}.\1", text)
    return [s.strip() for s in text.split(";") if s.strip()]


def test_migration_0004_rekeys_dead_letters_and_keeps_every_row(store):
    db = "poison_migration"
    store.command(f"DROP DATABASE IF EXISTS {db}")
    store.command(f"CREATE DATABASE {db}")
    try:
        old = (MIGRATIONS_DIR / "0001_core_tables.up.sql").read_text()
        create = old[old.index("CREATE TABLE IF NOT EXISTS dead_letters"):].split(";")[0]
        store.command(create.replace("dead_letters", f"{db}.dead_letters"))
        failed = datetime(2026, 11, 1, tzinfo=timezone.utc)
        store.insert(f"{db}.dead_letters", [("tweets.raw", 0, 5, "not JSON", "oops", failed),
                                            ("tweets.raw", 1, 5, "bad date", "{}", failed)],
                     ("source_topic", "partition", "offset", "reason", "payload", "failed_at"))
        for statement in migration_sql("up", db):
            store.command(statement)
        rows = store.query(f"SELECT origin, partition, offset, payload, payload_bytes, payload_sha256 "
                           f"FROM {db}.dead_letters FINAL ORDER BY origin").rows
        assert rows == [("kafka:tweets.raw:0:5", 0, 5, "oops", 4, hashlib.sha256(b"oops").hexdigest()),
                        ("kafka:tweets.raw:1:5", 1, 5, "{}", 2, hashlib.sha256(b"{}").hexdigest())]
        key = store.query("SELECT sorting_key FROM system.tables WHERE database = {d:String} AND name = "
                          "'dead_letters'", {"d": db}).scalar()
        assert key == "source_topic, origin"
        # Same Kafka coordinates, different origins (a restarted in-memory broker): two rows, not one.
        store.insert(f"{db}.dead_letters", [("tweets.raw", 0, 5, "r", "a", failed, "f1:1", 1, ""),
                                            ("tweets.raw", 0, 5, "r", "b", failed, "f1:2", 1, ""),
                                            ("tweets.raw", -1, -1, "too large", "c", failed, "f1:3", 9, "")],
                     ("source_topic", "partition", "offset", "reason", "payload", "failed_at", "origin",
                      "payload_bytes", "payload_sha256"))
        assert store.query(f"SELECT count() FROM {db}.dead_letters FINAL").scalar() == 5
        for statement in migration_sql("down", db):
            store.command(statement)
        assert store.query(f"SELECT count() FROM {db}.dead_letters FINAL").scalar() == 3  # what the old key sees
        assert store.query("SELECT count() FROM system.tables WHERE database = {d:String}", {"d": db}).scalar() == 1
    finally:
        store.command(f"DROP DATABASE IF EXISTS {db}")


# --- everything together: feeder → Tansu → worker → chDB -------------------------------------------------------


@pytest.mark.kafka
@pytest.mark.model
def test_poison_mixed_with_tweets_through_the_real_stream(broker, clean_store, store_dir, tiny_classifier, tmp_path):
    settings = stream_settings(broker, store_dir)
    clean_store.insert("tweets", [("stored-1", "the first text", datetime(2026, 11, 1, tzinfo=timezone.utc), None,
                                   None, None, None, datetime.now(timezone.utc))],
                       ("id", "text", "created_at", "platform_lang", "author_id", "country", "source", "ingested_at"))
    valid = [line(f"v{i}") for i in range(80)]
    poison = [v for _, v, _ in POISON if v.strip() and b"\n" not in v]
    huge = b'{"id": "h1", "text": "' + b"z" * 2_000_000 + b'", "created_at": "2026-11-01T10:00:00Z"}'
    conflicts = [line("x", id="stored-1", text="a rewrite of history"), line("x", id="pv3", text="another text")]
    redeliveries = [line("x", id="stored-1", text="  the first text "), line("v5")]
    lines = valid[:40] + poison + [huge] + conflicts + redeliveries + valid[40:]
    path = write_lines(tmp_path / "mixed.jsonl", lines)
    # Under the broker's limit but over ours: produced by another producer, refused by the worker.
    direct = FeedRecord(None, line("d", text="b" * 600_000), origin="other-producer:1")
    feeder_refused = [v for v in lines if len(v) > LIMIT]  # the 1 MB text and the 2 MB line
    expected_dead = len(poison) + 1 + len(conflicts) + 1
    expected_ids = {f"pv{i}" for i in range(80)} | {"stored-1"}
    topic = physical(Topics.raw, settings)

    async def feed(stack: Stack) -> tuple[FeedReport, FeedReport]:
        report = await produce_feed(settings.kafka_bootstrap, topic, read_feed(str(path)), FeedReport(),
                                    dead_letter_sink=lambda letters: write_dead_letters(clean_store, letters))
        other = await produce_feed(settings.kafka_bootstrap, topic, iter([direct]), FeedReport(),
                                   max_message_bytes=BROKER_LIMIT - 1000)
        await wait_committed(stack, report)
        await wait_committed(stack, other)
        return report, other

    async def scenario():
        stack = await Stack(settings, classifier=tiny_classifier).start()
        try:
            first = await feed(stack)
            counts = dead_letter_counts()
            second = await feed(stack)  # the same file again: new Kafka offsets, the same origins
            dlq = await read_topic(settings, Topics.dlq, 2 * expected_dead)
        finally:
            await stack.stop()
        return stack, first, counts, second, dlq

    def dead_letter_counts() -> tuple[int, int]:
        return tuple(clean_store.query("SELECT count(), uniqExact(origin) FROM dead_letters FINAL").rows[0])

    stack, (first, other), counts, (second, _), dlq = asyncio.run(scenario())

    assert stack.stats.failure is None and stack.stats.batches > 0  # the worker never stopped
    for report in (first, second):
        assert report.sent + report.dead_lettered == len(lines)
        assert report.dead_lettered == len(feeder_refused) == 2
    assert other.sent == 1
    # Lines in = classified + dead-lettered, for both rounds, and in ClickHouse (FINAL).
    fed = 2 * (len(lines) + 1)
    assert stack.stats.tweets + stack.stats.dead_letters + first.dead_lettered + second.dead_lettered == fed
    assert stack.stats.dead_letters + first.dead_lettered + second.dead_lettered == 2 * expected_dead
    assert counts == (expected_dead, expected_dead)
    assert dead_letter_counts() == counts  # re-fed: each bad line replaced its own row, none was added
    assert set(r[0] for r in clean_store.query("SELECT tweet_id FROM classifications FINAL").rows) == expected_ids
    assert clean_store.query("SELECT count() FROM classifications FINAL").scalar() == len(expected_ids)

    letters = clean_store.query("SELECT origin, reason, payload, payload_bytes, payload_sha256, partition "
                                "FROM dead_letters FINAL").dicts()
    assert all(d["reason"].strip() for d in letters)
    source = feed_id(str(path))
    originals = {f"{source}:{n}": value.strip() for n, value in enumerate(lines, start=1)}
    originals[direct.origin] = direct.value
    assert {d["origin"] for d in letters} <= set(originals)  # durable identity from the feeder's header
    for d in letters:
        original = originals[d["origin"]]
        assert d["payload_bytes"] == len(original), d
        assert d["payload_sha256"] == hashlib.sha256(original).hexdigest(), d  # the bytes as fed, not rewritten
        assert len(d["payload"].encode()) <= 3 * DEAD_LETTER_PREFIX_BYTES
    by_size = {d["payload_bytes"]: d for d in letters}
    for refused in feeder_refused:
        assert by_size[len(refused)]["partition"] == -1
        assert by_size[len(refused)]["reason"] == f"message too large: {len(refused)} bytes (limit {LIMIT})"
    assert by_size[len(direct.value)]["reason"] == f"message too large: {len(direct.value)} bytes (limit {LIMIT})"
    assert by_size[len(direct.value)]["partition"] >= 0  # this one went through the broker and the worker

    # Every DLQ message on the broker is small; the id conflicts were refused and counted; history kept.
    assert len(dlq) == 2 * expected_dead and max(len(v) for v in dlq) < min(LIMIT, BROKER_LIMIT)
    assert all(DeadLetter.model_validate_json(v).reason for v in dlq)
    assert stack.stats.conflicting_ids == 2 * len(conflicts)
    classified = clean_store.query("SELECT count() FROM classifications FINAL").scalar()
    rollup = clean_store.query("SELECT sum(tweets) FROM classifications_hourly").scalar()
    record(f"poison corpus ({len(POISON)} kinds) mixed with 80 tweets, fed twice",
           "`read_feed` + `produce_feed` of one JSONL file through Tansu to the worker, plus a 600 KB message from "
           "another producer", len(lines) + 1, len(expected_ids), expected_dead,
           {"classified": classified, "rollup": rollup, "dead_letters": dead_letter_counts()[0]},
           f"worker never stopped; 2 over-limit lines refused by the feeder; {len(conflicts)} conflicting ids and "
           f"{len(redeliveries)} same-text redeliveries; the second feed replaced every dead letter by its origin")
    assert stack.telemetry.conflicting_ids._value.get() == 2 * len(conflicts)
    conflict_reasons = [d["reason"] for d in letters if d["reason"].startswith("conflicting duplicate id")]
    assert len(conflict_reasons) == len(conflicts)
    assert clean_store.query("SELECT id, text FROM tweets FINAL WHERE id IN ('stored-1', 'pv3') ORDER BY id").rows \
        == [("pv3", "Refugees welcome here v3"), ("stored-1", "the first text")]
