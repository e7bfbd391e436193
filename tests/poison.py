"""The poison corpus: messages no worker or feeder may be stopped by, shared by the unit and stream tests."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from shared.settings import Settings

LIMIT = Settings().max_message_bytes
BROKER_LIMIT = 1_000_000  # Kafka's (and Tansu's) default largest produce request


def tweet(i: object, **fields: object) -> dict:
    return {"id": f"p{i}", "text": f"Refugees welcome here {i}", "created_at": "2026-11-01T10:00:00Z"} | fields


def line(i: object, **fields: object) -> bytes:
    return json.dumps(tweet(i, **fields)).encode()


def with_extra(i: object, raw: bytes) -> bytes:
    """A valid tweet plus a field ``x`` whose JSON text is ``raw``."""
    return line(i)[:-1] + b', "x": ' + raw + b"}"


#: (kind, message bytes, a fragment of the reason). None of these may become a classification.
POISON: list[tuple[str, bytes, str]] = [
    ("deep_arrays_10000", b"[" * 10_000 + b"]" * 10_000, "nested deeper"),
    ("deep_objects_10000", b'{"a":' * 10_000 + b"1" + b"}" * 10_000, "nested deeper"),
    ("deep_inside_a_tweet", with_extra(1, b"[" * 5_000 + b"]" * 5_000), "nested deeper"),
    ("text_of_1_mb", line(2, text="a" * 1_000_000), "message too large"),
    ("invalid_utf8_in_text", line(3).replace(b"Refugees", b"Refu\xffgees"), "not valid UTF-8 at byte"),
    ("invalid_utf8_in_key", line(4).replace(b'"text"', b'"te\xc3xt"'), "not valid UTF-8 at byte"),
    ("lone_surrogate_escaped", line(5).replace(b"Refugees", b"Refu\\ud800gees"), "lone surrogate"),
    ("overlong_utf8_slash", line(6).replace(b"Refugees", b"Refu\xc0\xafgees"), "not valid UTF-8 at byte"),
    ("raw_nul_byte", line(7).replace(b"Refugees", b"Refu\x00gees"), "not JSON"),
    ("escaped_nul", line(8).replace(b"Refugees", b"Refu\\u0000gees"), "NUL"),
    ("utf8_bom", b"\xef\xbb\xbf" + line(9), "BOM"),
    ("empty", b"", "not JSON"),
    ("whitespace_only", b" \t ", "not JSON"),
    ("json_null", b"null", "expected a JSON object"),
    ("json_number", b"42", "expected a JSON object"),
    ("json_string", b'"a tweet"', "expected a JSON object"),
    ("json_array", json.dumps([tweet(10)]).encode(), "expected a JSON object"),
    ("nan", with_extra(11, b"NaN"), "NaN"),
    ("infinity", with_extra(12, b"-Infinity"), "Infinity"),
    ("float_overflow", with_extra(13, b"1e999"), "out of range"),
    ("year_9999", line(14, created_at="9999-12-31T23:00:00Z"), "outside the accepted window"),
    ("year_2300", line(15, created_at="2300-01-01T00:00:00Z"), "outside the accepted window"),
    ("year_1800", line(16, created_at="1800-01-01T00:00:00Z"), "outside the accepted window"),
    ("year_1969", line(17, created_at="1969-12-31T23:59:59Z"), "outside the accepted window"),
    ("next_year", line(18, created_at=f"{datetime.now(timezone.utc).year + 1}-06-01T00:00:00Z"), "outside"),
    ("garbage_date", line(19, created_at="next tuesday"), "created_at"),
    ("date_minus_1", line(20, created_at=-1), "not a number"),
    ("date_epoch_number", line(21, created_at=1_762_000_000), "not a number"),
    ("missing_fields", json.dumps({"id": "p22"}).encode(), "Field required"),
    ("wrong_types", json.dumps({"id": "p23", "text": ["a"], "created_at": {"y": 1}}).encode(), "valid string"),
    ("id_of_65_chars", line(24, id="x" * 65), "at most 64"),
    ("id_empty", line(25, id=""), "at least 1"),
    ("id_float", line(26, id=1.5), "id: Input should be a valid string"),
    ("id_bool", line(27, id=True), "id: Input should be a valid string"),
    ("text_whitespace_only", line(28, text=" \n\t "), "text"),
    ("id_huge_integer", line(29).replace(b'"p29"', b"9" * 70), "at most 64"),
    ("integer_of_5000_digits", with_extra(30, b"7" * 5_000), "not JSON"),
    ("duplicate_keys", b'{"id": "p31", "text": "a", "text": "b", "created_at": "2026-11-01T10:00:00Z"}',
     "duplicate key 'text'"),
    ("text_over_10000_chars", line(32, text="word " * 2_001), "10000"),
    ("truncated_json", line(33)[:-5], "not JSON"),
]


def write_lines(path: Path, lines: list[bytes], opener=open) -> Path:
    with opener(path, "wb") as handle:
        handle.write(b"\n".join(lines) + b"\n")
    return path
