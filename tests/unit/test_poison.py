"""Poison input through the code that must survive it, in-process: ``parse_message`` (the bounds), dead letters
(bounded, identified, never rewritten), the batch processor (one message never fails a batch) and the feeder
reading files (no line can stop a feed). The same corpus through the real broker, worker and chDB:
``tests/integration/test_poison_stream.py``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from poison import LIMIT, POISON, line, with_extra, write_lines
from shared.messages import DEAD_LETTER_PREFIX_BYTES, DeadLetter, Label
from shared.streaming.feed import read_feed
from shared.streaming.feed_files import FeedError, feed_id, key_of_json
from shared.streaming.processing import InboundMessage, LabelBatchProcessor, TweetBatchProcessor, origin_of, text_digest
from shared.streaming.validation import InputLimits, InvalidMessage, json_nesting_exceeds, parse_message, parse_tweet
from shared.settings import Settings


# --- parse_message: the bounds ---------------------------------------------------------------------------------


def test_the_corpus_is_large_and_distinct():
    assert len(POISON) >= 25 and len({kind for kind, _, _ in POISON}) == len(POISON)
    assert len({value for _, value, _ in POISON}) == len(POISON)


@pytest.mark.parametrize(("kind", "value", "reason"), POISON, ids=[kind for kind, _, _ in POISON])
def test_poison_is_refused_with_its_reason(kind, value, reason):
    with pytest.raises(InvalidMessage) as info:
        parse_tweet(value)
    assert reason in str(info.value)


def test_valid_edge_cases_are_accepted():
    assert parse_tweet(line(1).replace(b"here", b"\\ud83d\\ude00")).text.endswith("1")  # an escaped pair is fine
    assert parse_tweet(line(1, text="[[[[{{{{ brackets in text " + "[" * 100)).id == "p1"
    assert parse_tweet(line(1, id=1234567890123456789)).id == "1234567890123456789"
    assert parse_tweet(line(1, created_at="2006-03-21T20:50:00Z")).created_at.year == 2006


def test_size_limit_is_exact_and_checked_before_parsing():
    limits = InputLimits(max_message_bytes=2048)
    body = line(1)
    fits = body[:-1] + b" " * (2048 - len(body)) + b"}"
    assert len(fits) == 2048 and parse_tweet(fits, limits).id == "p1"
    with pytest.raises(InvalidMessage, match=r"message too large: 2049 bytes \(limit 2048\)"):
        parse_tweet(fits[:-1] + b" }", limits)
    with pytest.raises(InvalidMessage, match="too large"):  # a too-large message is never decoded or parsed
        parse_tweet(b"\xff" + b"[" * 5000, limits)


def test_depth_is_measured_without_recursion_and_strings_do_not_count():
    assert not json_nesting_exceeds('{"a": [[1]]}', 3)
    assert json_nesting_exceeds('{"a": [[[1]]]}', 3)
    assert not json_nesting_exceeds('{"a": "[[[[[[\\"[[[["}', 1)
    assert json_nesting_exceeds("[" * 1_000_000, 32)  # linear: a million brackets
    limits = InputLimits(max_json_depth=3)
    assert parse_tweet(with_extra(1, b"[[1]]"), limits).id == "p1"
    with pytest.raises(InvalidMessage, match="deeper than 3"):
        parse_tweet(with_extra(1, b"[[[1]]]"), limits)


def test_a_recursion_error_never_escapes_even_with_a_huge_depth_limit():
    limits = InputLimits(max_message_bytes=900_000, max_json_depth=10_000_000)  # past Python's recursion limit
    for value in (b"[" * 200_000 + b"]" * 200_000, b'{"a":' * 100_000 + b"1" + b"}" * 100_000):
        with pytest.raises(InvalidMessage, match="nested too deep to parse"):
            parse_tweet(value, limits)


def test_the_date_window_follows_the_settings():
    limits = InputLimits.of(Settings(created_at_min=datetime(2020, 1, 1, tzinfo=timezone.utc),
                                     created_at_max_ahead_s=3600))
    with pytest.raises(InvalidMessage, match="2019-12-31"):
        parse_tweet(line(1, created_at="2019-12-31T23:59:59Z"), limits)
    soon = datetime.now(timezone.utc) + timedelta(minutes=30)
    assert parse_tweet(line(1, created_at=soon.isoformat()), limits).created_at == soon
    with pytest.raises(InvalidMessage, match="outside the accepted window"):
        parse_tweet(line(1, created_at=(soon + timedelta(hours=1)).isoformat()), limits)


def test_the_window_cannot_leave_clickhouse_hourly_range():
    with pytest.raises(ValueError, match="1970"):
        Settings(created_at_min=datetime(1960, 1, 1, tzinfo=timezone.utc))


def test_labels_get_the_same_protection():
    label = {"tweet_id": "l1", "text": "refugees welcome", "lang": "en", "label": "pro-immigration"}
    assert parse_message(json.dumps(label).encode(), Label, "label").tweet_id == "l1"
    for value, reason in [
        (b'{"tweet_id":' * 10_000, "nested deeper"),
        (json.dumps(label).encode().replace(b"welcome", b"wel\xffcome"), "not valid UTF-8"),
        (json.dumps(label | {"labeled_at": "9999-01-01T00:00:00Z"}).encode(), "labeled_at"),
        (json.dumps(label | {"text": "x" * 300_000}).encode(), "too large"),
    ]:
        with pytest.raises(InvalidMessage, match=reason):
            parse_message(value, Label, "label")
    batch = LabelBatchProcessor().process([InboundMessage(v, "tweets.labels", 0, i) for i, (_, v, _) in
                                           enumerate(POISON[:5])])
    assert len(batch.dead_letters) == 5 and batch.labels == []


# --- dead letters: bounded, identified, never rewritten ----------------------------------------------------------


@pytest.mark.parametrize("value", [b"a" * 2_000_000, b"\xff" * 300_000, b"\x00" * 300_000, "é".encode() * 500_000],
                         ids=["ascii", "invalid_utf8", "nul", "two_byte_chars"])
def test_a_dead_letter_always_fits_the_broker(value):
    letter = DeadLetter.of(InboundMessage(value, "tweets.raw", 3, 7), "x" * 50_000)
    assert len(letter.payload.encode()) <= 3 * DEAD_LETTER_PREFIX_BYTES
    assert letter.payload_bytes == len(value)
    assert letter.payload_sha256 == hashlib.sha256(value).hexdigest()
    assert len(letter.reason) <= 1000
    assert len(letter.model_dump_json().encode()) < 32 * 1024  # even all-NUL (6 bytes each once JSON-escaped)
    assert letter.origin == "kafka:tweets.raw:3:7"


def test_a_cut_multibyte_character_is_dropped_not_replaced():
    letter = DeadLetter.of(InboundMessage(b"a" + "é".encode() * 5000, "t", 0, 0), "r")
    assert letter.payload == "a" + "é" * (DEAD_LETTER_PREFIX_BYTES // 2 - 1)  # not "…\ufffd"


def test_a_small_payload_is_exact_and_its_hash_says_so():
    value = line(1, text="Grenzen schützen ¿por qué? 🍊")
    letter = DeadLetter.of(InboundMessage(value, "tweets.raw", 0, 1, origin="abc:3"), "r")
    assert letter.payload.encode() == value and letter.origin == "abc:3"
    assert hashlib.sha256(letter.payload.encode()).hexdigest() == letter.payload_sha256


def test_a_reason_with_a_lone_surrogate_is_made_safe():
    letter = DeadLetter.of(InboundMessage(b"x", "t", 0, 0), "bad \ud800 key")
    letter.model_dump_json()  # would raise on a surrogate
    assert "\\ud800" in letter.reason


def test_the_origin_header_is_read_from_pairs_or_a_mapping():
    assert origin_of([("other", b"x"), ("stancestream-origin", b"ab12:7")]) == "ab12:7"
    assert origin_of({"stancestream-origin": b"stdin:3"}) == "stdin:3"
    assert origin_of([(b"stancestream-origin", b"f:1")]) == "f:1"
    assert origin_of(None) == origin_of([]) == ""
    assert origin_of([("stancestream-origin", b"\xff")]) == origin_of([("stancestream-origin", b"a\nb")]) == ""
    assert InboundMessage(b"", "tweets.raw", 1, 2).key == "kafka:tweets.raw:1:2"
    assert InboundMessage(b"", "tweets.raw", 1, 2, origin="f:9").key == "f:9"


class FixedClassifier:
    model_id, adapter_version = "fixed@0", "base"

    def __init__(self):
        self.seen: list[str] = []

    def predict_proba(self, texts):
        self.seen += texts
        return np.tile(np.array([0.1, 0.2, 0.3, 0.4]), (len(texts), 1))


def messages(values: list[bytes]) -> list[InboundMessage]:
    return [InboundMessage(v, "tweets.raw", 0, i) for i, v in enumerate(values)]


def test_an_unexpected_error_in_one_message_is_its_own_dead_letter(monkeypatch):
    import shared.streaming.processing as processing

    real = processing.parse_tweet

    def flaky(value, limits):
        if b"boom" in value:
            raise KeyError("something nobody foresaw")
        return real(value, limits)

    monkeypatch.setattr(processing, "parse_tweet", flaky)
    result = TweetBatchProcessor(FixedClassifier()).classify(messages([line(1), line(2, text="boom"), line(3)]))
    assert [t.id for t in result.tweets] == ["p1", "p3"]
    (letter,) = result.dead_letters
    assert letter.reason == "unexpected error: KeyError: 'something nobody foresaw'" and letter.offset == 1


def test_conflicting_duplicate_ids_are_refused_before_the_model():
    classifier = FixedClassifier()
    stored = {"s1": text_digest("first text"), "s2": text_digest("same text")}
    asked: list[list[str]] = []

    def stored_texts(ids):
        asked.append(ids)
        return {i: d for i, d in stored.items() if i in ids}

    result = TweetBatchProcessor(classifier).classify(messages([
        line("x", id="b1", text="one text"), line("x", id="b1", text="  one text \n"),  # redelivery (normalized)
        line("x", id="b1", text="another text"),  # conflicts within the batch
        line("x", id="s1", text="a rewrite"),  # conflicts with the table
        line("x", id="s2", text="same text"),  # a redelivery of a stored tweet
    ]), stored_texts)
    assert asked == [["b1", "s1", "s2"]]  # one lookup per batch
    assert [t.id for t in result.tweets] == ["b1", "b1", "s2"]
    assert classifier.seen == ["one text", "one text", "same text"]  # no model time for the conflicts
    assert result.conflicting_ids == 2
    assert [d.offset for d in result.dead_letters] == [2, 3]
    assert all(d.reason.startswith("conflicting duplicate id: ") for d in result.dead_letters)


def test_replays_without_a_lookup_still_check_within_the_batch():
    result = TweetBatchProcessor(FixedClassifier()).classify(messages([line(1), line(1, text="other")]))
    assert len(result.tweets) == 1 and result.conflicting_ids == 1


# --- the feeder: survives every line ---------------------------------------------------------------------------


def test_the_key_function_survives_every_poison_line():
    for _, value, _ in POISON:
        key_of_json(value)  # never raises
    assert key_of_json(b'{"id": " t1 "}') == b"t1"  # stripped as Tweet strips it: one id, one partition
    assert key_of_json(b'{"id": true}') is None and key_of_json(b'{"id": 1.5}') is None
    assert key_of_json(b'{"id": "' + b"x" * 65 + b'"}') is None



def test_the_feeder_passes_every_poison_line_through_as_it_is(tmp_path):
    # The corpus minus what is not a line (a blank line is skipped; an embedded newline would split it).
    lines = [v for _, v, _ in POISON if v.strip() and b"\n" not in v]
    path = write_lines(tmp_path / "poison.jsonl", lines)
    records = list(read_feed(str(path)))
    assert len(records) == len(lines)
    passed = [r for r in records if r.rejected is None]
    assert [r.value for r in passed] == [v.strip() for v in lines if len(v.strip()) <= LIMIT]
    source = feed_id(str(path))
    assert [r.origin for r in records] == [f"{source}:{n}" for n in range(1, len(lines) + 1)]
    (big,) = [r for r in records if r.rejected]
    assert big.rejected == f"message too large: {len(line(2, text='a' * 1_000_000))} bytes (limit {LIMIT})"


def test_a_line_over_the_limit_is_streamed_and_refused_by_the_feeder(tmp_path):
    huge = b'{"id": "h1", "text": "' + b"z" * 2_000_000 + b'"}'
    path = write_lines(tmp_path / "big.jsonl", [line(1), huge, b"x" * LIMIT, line(2)])
    records = list(read_feed(str(path)))
    assert [r.rejected is None for r in records] == [True, False, True, True]
    assert records[1].payload_bytes == len(huge) and records[1].payload_sha256 == hashlib.sha256(huge).hexdigest()
    assert records[1].value == huge[:DEAD_LETTER_PREFIX_BYTES] and records[1].origin.endswith(":2")
    assert records[2].value == b"x" * LIMIT  # exactly at the limit: sent


def test_a_crlf_line_over_the_limit_hashes_without_its_terminator(tmp_path):
    huge = b"y" * (LIMIT + 10)
    path = tmp_path / "crlf.jsonl"
    path.write_bytes(huge + b"\r\n" + line(1) + b"\r\n")
    first, second = read_feed(str(path))
    assert first.payload_bytes == len(huge) and first.payload_sha256 == hashlib.sha256(huge).hexdigest()
    assert second.value == line(1)


@pytest.mark.parametrize("make", ["directory", "corrupt_gz", "truncated_gz", "not_gzip_at_all"])
def test_an_unreadable_feed_is_one_clear_error(tmp_path, make):
    path = tmp_path / ("x.jsonl" if make == "directory" else "x.jsonl.gz")
    if make == "directory":
        path.mkdir()
    elif make == "corrupt_gz":
        data = bytearray(gzip.compress(b"\n".join(line(i) for i in range(2000))))
        data[40:80] = b"\x00" * 40
        path.write_bytes(bytes(data))
    elif make == "truncated_gz":
        path.write_bytes(gzip.compress(b"\n".join(line(i) for i in range(2000)))[:-200])
    else:
        path.write_bytes(b"plain text, no gzip")
    with pytest.raises(FeedError) as info:
        list(read_feed(str(path)))
    assert "\n" not in str(info.value) and str(path) in str(info.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_a_file_without_permission_is_one_clear_error(tmp_path):
    path = write_lines(tmp_path / "locked.jsonl", [line(1)])
    path.chmod(0)
    with pytest.raises(FeedError, match="cannot read"):
        list(read_feed(str(path)))


CSV_HEADER = b"id,text,created_at\n"


def csv_feed(tmp_path: Path, body: bytes, name: str = "feed.csv") -> list:
    path = tmp_path / name
    path.write_bytes(CSV_HEADER + body)
    return list(read_feed(str(path)))


def test_a_csv_unterminated_quote_costs_its_own_line_only(tmp_path):
    records = csv_feed(tmp_path, b'c1,"unterminated,2026-11-01T10:00:00Z\nc2,row two,2026-11-01T10:00:00Z\n'
                                 b'c3,"closed ""ok"" text",2026-11-01T10:00:00Z\n')
    assert [r.rejected for r in records][0] == "malformed CSV at line 2: unterminated quoted field"
    assert records[0].value == b'c1,"unterminated,2026-11-01T10:00:00Z' and records[0].origin.endswith(":2")
    assert [json.loads(r.value)["text"] for r in records[1:]] == ["row two", 'closed "ok" text']
    assert [r.origin.rsplit(":", 1)[1] for r in records] == ["2", "3", "4"]


def test_a_csv_quote_closed_in_a_later_row_does_not_merge_them(tmp_path):
    records = csv_feed(tmp_path, b'c1,"open here,2026-11-01T10:00:00Z\nc2,"closed",2026-11-01T10:00:00Z\n')
    assert records[0].rejected and "line 2" in records[0].rejected
    assert json.loads(records[1].value)["id"] == "c2"


def test_csv_rows_with_a_wrong_field_count_or_bad_utf8_are_refused(tmp_path):
    records = csv_feed(tmp_path, b"c1,one,2026-11-01T10:00:00Z,extra\nc2,two\nc3,th\xffree,2026-11-01T10:00:00Z\n"
                                 b'c4,"multi\nline",2026-11-01T10:00:00Z\n')
    assert [r.rejected for r in records[:3]] == [
        "malformed CSV at line 2: 4 fields where the header has 3",
        "malformed CSV at line 3: 2 fields where the header has 3",
        "malformed CSV at line 4: not valid UTF-8 at byte 5",
    ]
    assert records[2].value == b"c3,th\xffree,2026-11-01T10:00:00Z"  # the bytes as they were
    assert json.loads(records[3].value)["text"] == "multi\nline" and records[3].rejected is None


def test_a_csv_with_a_bom_and_crlf_is_read(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbfid,text\r\nc1,hello\r\n")
    (record,) = read_feed(str(path))
    assert json.loads(record.value)["id"] == "c1" and record.key == b"c1"


def test_an_unterminated_quote_in_the_csv_header_is_a_feed_error(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes(b'id,"text\nc1,hello\n')
    with pytest.raises(FeedError, match="line 1"):
        list(read_feed(str(path)))


def test_csv_lines_over_the_limit_are_refused_as_the_worker_words_it(tmp_path):
    path = tmp_path / "big.csv"
    long_row = b"c1," + b"a" * LIMIT + b",2026-11-01T10:00:00Z"
    path.write_bytes(CSV_HEADER + long_row + b"\nc2,fine,2026-11-01T10:00:00Z\n")
    big, fine = read_feed(str(path))
    assert big.rejected == f"message too large: {len(long_row)} bytes (limit {LIMIT})"
    assert big.payload_bytes == len(long_row) and big.payload_sha256 == hashlib.sha256(long_row).hexdigest()
    assert json.loads(fine.value)["id"] == "c2" and fine.origin.endswith(":3")


class FragileClassifier(FixedClassifier):
    """Raises on any batch holding a "kaboom" text; gives NaN for "nan please"; broken entirely if ``broken``."""

    def __init__(self, broken: bool = False):
        super().__init__()
        self.broken = broken

    def predict_proba(self, texts):
        if self.broken or any("kaboom" in t for t in texts):
            raise RuntimeError("tokenizer exploded")
        probs = super().predict_proba(texts)
        probs[[i for i, t in enumerate(texts) if "nan please" in t]] = np.nan
        return probs


def test_a_text_that_breaks_the_model_is_dead_lettered_alone():
    values = [line(1), line(2, text="kaboom"), line(3, text="nan please"), line(4)]
    result = TweetBatchProcessor(FragileClassifier()).classify(messages(values))
    assert [t.id for t in result.tweets] == ["p1", "p4"]
    assert sorted((d.offset, d.reason.split(":")[0]) for d in result.dead_letters) == [
        (1, "unexpected error"), (2, "unexpected error")]
    assert "tokenizer exploded" in next(d.reason for d in result.dead_letters if d.offset == 1)


def test_a_broken_model_still_stops_the_batch():
    with pytest.raises(RuntimeError, match="tokenizer exploded"):
        TweetBatchProcessor(FragileClassifier(broken=True)).classify(messages([line(1), line(2)]))
