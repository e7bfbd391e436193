"""The example messages in schemas/examples run through the real worker code into the real store.

Each file under ``schemas/examples/<topic>/`` is one exact message value: ``valid_*`` files must be accepted
(classified and stored), ``invalid_*`` files must end up as dead letters, never as classifications.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path

import pytest

from shared import schemas
from shared.streaming.processing import InboundMessage, TweetBatchProcessor
from shared.store.sinks import ClickHouseSink

EXAMPLES_DIR = schemas.SCHEMAS_DIR / "examples"
EXAMPLES = sorted(EXAMPLES_DIR.glob("**/*.json"))
OPTIONAL_COLUMNS = {"lang": "platform_lang", "author_id": "author_id", "country": "country", "source": "source"}

pytestmark = [pytest.mark.clickhouse, pytest.mark.model]


def _utc(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


@pytest.mark.parametrize("path", EXAMPLES, ids=[str(p.relative_to(EXAMPLES_DIR)) for p in EXAMPLES])
def test_example_through_the_worker(path: Path, tiny_classifier, clean_store):
    topic = path.parent.relative_to(EXAMPLES_DIR).as_posix()
    assert path.name.startswith(("valid_", "invalid_")), f"{path.name}: name examples valid_* or invalid_*"
    valid = path.name.startswith("valid_")
    raw = path.read_bytes()
    offset = EXAMPLES.index(path)

    result = TweetBatchProcessor(tiny_classifier).classify([InboundMessage(raw, topic, 0, offset)])
    ClickHouseSink(clean_store).write(result.tweets, result.classifications, result.dead_letters)

    classifications = clean_store.query(
        "SELECT tweet_id, label, topic, stance, p_pro, p_anti, p_neutral, p_unrelated, adapter_version, model_id,"
        " tweet_created_at FROM classifications FINAL"
    ).dicts()
    dead = clean_store.query("SELECT source_topic, partition, offset, reason, payload FROM dead_letters FINAL").dicts()

    if not valid:
        assert classifications == []
        assert clean_store.query("SELECT count() FROM tweets").scalar() == 0
        assert len(dead) == 1, dead
        assert dead[0]["payload"] == raw.decode("utf-8")
        assert dead[0]["reason"].strip()
        assert (dead[0]["source_topic"], dead[0]["partition"], dead[0]["offset"]) == (topic, 0, offset)
        return

    message = json.loads(raw)
    tweet_id = str(message["id"])
    assert dead == []
    assert len(classifications) == 1, classifications
    row = classifications[0]
    assert row["tweet_id"] == tweet_id
    probs = [row["p_pro"], row["p_anti"], row["p_neutral"], row["p_unrelated"]]
    assert all(math.isfinite(p) and 0 <= p <= 1 for p in probs)
    assert sum(probs) == pytest.approx(1.0, abs=1e-3)
    labels = ["pro-immigration", "anti-immigration", "neutral", "unrelated"]
    assert row["label"] == labels[max(range(4), key=probs.__getitem__)]
    assert (row["topic"] == "unrelated") == (row["stance"] is None) == (row["label"] == "unrelated")
    assert (row["adapter_version"], row["model_id"]) == (tiny_classifier.adapter_version, tiny_classifier.model_id)
    assert _as_utc(row["tweet_created_at"]) == _utc(message["created_at"].replace("Z", "+00:00"))

    tweets = clean_store.query(
        "SELECT id, text, created_at, platform_lang, author_id, country, source FROM tweets FINAL"
        " WHERE id = {id:String}", {"id": tweet_id}
    ).dicts()
    assert len(tweets) == 1, tweets
    assert tweets[0]["text"] == message["text"].strip()
    assert _as_utc(tweets[0]["created_at"]) == _as_utc(row["tweet_created_at"])
    for field, column in OPTIONAL_COLUMNS.items():
        assert tweets[0][column] == message.get(field), column

    try:
        import jsonschema
    except ImportError:  # not a dependency: the schema check is an extra when it is installed
        return
    schema = json.loads((schemas.SCHEMAS_DIR / f"{topic}.json").read_text())
    jsonschema.validate(message, schema)
