"""The message models: what a tweet must look like, and the consistency rules of a classification."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from shared.messages import Classification, Category, Probabilities, Stance, Topic, Tweet

PROBS = {"pro-immigration": 0.1, "anti-immigration": 0.2, "neutral": 0.3, "unrelated": 0.4}


def classification_fields(**overrides: object) -> dict:
    fields = dict(
        tweet_id="42", lang="en", lang_confidence=0.9, probabilities=Probabilities(**PROBS),
        adapter_version="v1", model_id="tiny@abc", classified_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
        latency_ms=12.5,
    )
    return fields | overrides


def test_int_id_becomes_exact_string():
    tweet = Tweet.model_validate({"id": 1234567890123456789, "text": "hi", "created_at": "2026-01-01T00:00:00"})
    assert tweet.id == "1234567890123456789"


def test_bool_id_is_not_turned_into_a_string():
    with pytest.raises(ValidationError):
        Tweet.model_validate({"id": True, "text": "hi", "created_at": "2026-01-01T00:00:00"})


def test_naive_created_at_is_taken_as_utc():
    tweet = Tweet.model_validate({"id": "1", "text": "hi", "created_at": "2026-03-04T05:06:07"})
    assert tweet.created_at.utcoffset() == timedelta(0)
    assert tweet.created_at.replace(tzinfo=None) == datetime(2026, 3, 4, 5, 6, 7)


def test_aware_created_at_is_converted_to_utc():
    tweet = Tweet.model_validate({"id": "1", "text": "hi", "created_at": "2026-03-04T05:06:07+02:00"})
    assert tweet.created_at.utcoffset() == timedelta(0)
    assert (tweet.created_at.hour, tweet.created_at.minute) == (3, 6)


def test_missing_text_is_rejected():
    with pytest.raises(ValidationError) as info:
        Tweet.model_validate({"id": "1", "created_at": "2026-01-01T00:00:00Z"})
    assert any(err["loc"] == ("text",) for err in info.value.errors())


@pytest.mark.parametrize("text", ["", "   \n\t "])
def test_empty_text_is_rejected(text):
    with pytest.raises(ValidationError) as info:
        Tweet.model_validate({"id": "1", "text": text, "created_at": "2026-01-01T00:00:00Z"})
    assert any(err["loc"] == ("text",) for err in info.value.errors())


@pytest.mark.parametrize(
    ("label", "topic", "stance"),
    [
        (Category.pro, Topic.immigration, Stance.pro),
        (Category.anti, Topic.immigration, Stance.anti),
        (Category.neutral, Topic.immigration, Stance.neutral),
        (Category.unrelated, Topic.unrelated, None),
    ],
)
def test_from_label_sets_topic_and_stance(label, topic, stance):
    c = Classification.from_label(label, **classification_fields())
    assert (c.label, c.topic, c.stance) == (label, topic, stance)


@pytest.mark.parametrize(
    ("label", "topic", "stance"),
    [
        (Category.unrelated, Topic.unrelated, Stance.pro),  # unrelated, yet with a stance
        (Category.pro, Topic.immigration, None),  # about immigration, yet no stance
        (Category.pro, Topic.unrelated, None),  # a stance label on an unrelated topic
        (Category.unrelated, Topic.immigration, Stance.neutral),
    ],
)
def test_inconsistent_classification_is_rejected(label, topic, stance):
    with pytest.raises(ValidationError, match="disagree"):
        Classification(label=label, topic=topic, stance=stance, **classification_fields())


@pytest.mark.parametrize("values", [(0.1, 0.2, 0.3, 0.3), (0.5, 0.5, 0.5, 0.5), (0, 0, 0, 0)])
def test_probabilities_must_sum_to_one(values):
    with pytest.raises(ValidationError, match="sum"):
        Probabilities(**dict(zip(PROBS, values)))


def test_probabilities_out_of_range_are_rejected():
    with pytest.raises(ValidationError):
        Probabilities(**dict(zip(PROBS, (1.5, -0.5, 0.0, 0.0))))


def test_probabilities_accept_field_names_and_aliases():
    by_alias = Probabilities(**PROBS)
    by_name = Probabilities(pro=0.1, anti=0.2, neutral=0.3, unrelated=0.4)
    assert by_alias == by_name
    assert (by_alias.pro, by_alias.anti, by_alias.neutral, by_alias.unrelated) == (0.1, 0.2, 0.3, 0.4)


def test_classification_json_round_trip_keeps_label_keys():
    original = Classification.from_label(Category.anti, **classification_fields())
    text = original.model_dump_json()
    payload = json.loads(text)
    assert set(payload["probabilities"]) == {"pro-immigration", "anti-immigration", "neutral", "unrelated"}
    assert payload["probabilities"]["anti-immigration"] == 0.2
    assert payload["label"] == "anti-immigration" and payload["topic"] == "immigration"
    assert payload["stance"] == "anti"
    assert Classification.model_validate_json(text) == original


def test_unrelated_classification_serializes_null_stance():
    payload = json.loads(Classification.from_label(Category.unrelated, **classification_fields()).model_dump_json())
    assert payload["stance"] is None and payload["topic"] == "unrelated"
