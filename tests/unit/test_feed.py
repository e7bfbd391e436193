"""Reading feed files: JSONL lines go through verbatim (bad ones too), CSV rows become tweet JSON."""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from shared.streaming.feed import read_feed

JSONL_LINES = [
    '{"id": "t1", "text": "Refugees welcome here", "created_at": "2026-01-01T00:00:00Z"}',
    '{"id": 987654321, "text": "numeric id", "created_at": "2026-01-01T00:00:01Z"}',
    '{"id": "t3", "text": "broken json',
    '["not", "an", "object"]',
    '{"text": "no id at all", "created_at": "2026-01-01T00:00:02Z"}',
    '{"id": "", "text": "empty id", "created_at": "2026-01-01T00:00:03Z"}',
    '{"id": "t7",   "text":   "odd   spacing kept",  "created_at": "2026-01-01T00:00:04Z"}',
]
JSONL_KEYS = [b"t1", b"987654321", None, None, None, None, b"t7"]

CSV_TEXT = (
    "id,lang,label,text,extra\n"
    "c1,en,pro,\"Open borders, open hearts\",x\n"
    "c2,es,anti,Cerrar las fronteras ya,y\n"
    "c3,,neutral,\"Multi\nline tweet\",z\n"
)


def write_jsonl(path: Path, opener=open) -> Path:
    content = "\n\n".join(JSONL_LINES[:3]) + "\n   \n" + "\n".join(JSONL_LINES[3:]) + "\n\n"
    with opener(path, "wt", encoding="utf-8") as fh:
        fh.write(content)
    return path


def write_csv(path: Path, opener=open) -> Path:
    with opener(path, "wt", encoding="utf-8", newline="") as fh:
        fh.write(CSV_TEXT)
    return path


@pytest.mark.parametrize(("name", "opener"), [("feed.jsonl", open), ("feed.jsonl.gz", gzip.open)])
def test_jsonl_lines_pass_through_verbatim(tmp_path, name, opener):
    records = list(read_feed(str(write_jsonl(tmp_path / name, opener))))
    assert [r.value for r in records] == [line.encode() for line in JSONL_LINES]
    assert [r.key for r in records] == JSONL_KEYS


@pytest.mark.parametrize("suffix", [".json", ".ndjson"])
def test_other_json_line_extensions(tmp_path, suffix):
    records = list(read_feed(str(write_jsonl(tmp_path / f"feed{suffix}"))))
    assert len(records) == len(JSONL_LINES)


@pytest.mark.parametrize(("name", "opener"), [("paper.csv", open), ("paper.csv.gz", gzip.open)])
def test_csv_rows_become_tweet_json(tmp_path, name, opener):
    before = datetime.now(timezone.utc)
    records = list(read_feed(str(write_csv(tmp_path / name, opener))))
    after = datetime.now(timezone.utc)

    assert [r.key for r in records] == [b"c1", b"c2", b"c3"]
    tweets = [json.loads(r.value) for r in records]
    assert [t["text"] for t in tweets] == ["Open borders, open hearts", "Cerrar las fronteras ya", "Multi\nline tweet"]
    assert [t.get("lang") for t in tweets] == ["en", "es", None]  # an empty cell is left out, not ""
    for tweet in tweets:
        assert "label" not in tweet and "extra" not in tweet
        assert tweet["source"] == name
        created = datetime.fromisoformat(tweet["created_at"])
        assert created.tzinfo is not None
        assert before - timedelta(seconds=1) <= created <= after + timedelta(seconds=1)
        assert set(tweet) <= {"id", "text", "created_at", "lang", "author_id", "country", "source"}


def test_csv_keeps_its_own_created_at_and_source(tmp_path):
    path = tmp_path / "own.csv"
    path.write_text("id,text,created_at,source,country\nk1,hello,2020-05-06T07:08:09Z,archive,FR\n")
    (record,) = read_feed(str(path))
    assert json.loads(record.value) == {
        "id": "k1", "text": "hello", "created_at": "2020-05-06T07:08:09Z", "country": "FR", "source": "archive"
    }


def test_csv_non_ascii_text_is_kept(tmp_path):
    path = tmp_path / "utf8.csv"
    path.write_text("id,text\nu1,Grenzen schützen — ¿por qué? 🍊\n", encoding="utf-8")
    (record,) = read_feed(str(path))
    assert json.loads(record.value.decode("utf-8"))["text"] == "Grenzen schützen — ¿por qué? 🍊"


@pytest.mark.parametrize("name", ["feed.txt", "feed.parquet", "feed.gz", "feed"])
def test_unknown_extension_raises_value_error(tmp_path, name):
    path = tmp_path / name
    path.write_text("{}\n")
    with pytest.raises(ValueError, match="format"):
        list(read_feed(str(path)))


@pytest.mark.parametrize("name", ["missing.jsonl", "missing.csv.gz"])
def test_missing_file_raises_file_not_found(tmp_path, name):
    with pytest.raises(FileNotFoundError):
        list(read_feed(str(tmp_path / name)))
