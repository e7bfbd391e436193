"""The worker's processing of one micro-batch, free of Faust and of ClickHouse.

``TweetBatchProcessor.classify`` turns raw messages into accepted tweets, their classifications and dead
letters; the worker then writes them with a ``ClassificationSink`` and only after that write returns acks the
batch (see ``shared.streaming``). Keeping this step pure makes it testable without a broker and lets the
replay and benchmark paths reuse exactly the worker's code.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Protocol, Sequence, TypeVar

from pydantic import BaseModel, ValidationError

from shared.langid import detect_languages
from shared.messages import CATEGORIES, Classification, DeadLetter, Probabilities, Tweet, utcnow


M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class InboundMessage:
    """A message as read from Kafka: the raw value and where it came from."""

    value: bytes | None
    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None = None  # the broker's record timestamp: when the tweet entered Kafka


@dataclass
class BatchResult:
    tweets: list[Tweet] = field(default_factory=list)
    classifications: list[Classification] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)


class Classifier(Protocol):
    model_id: str
    adapter_version: str

    def predict_proba(self, texts: list[str]): ...


class ClassificationSink(Protocol):
    """Where results go. ``write`` must be durable when it returns, or raise."""

    def write(self, result: BatchResult) -> None: ...


class InvalidMessage(ValueError):
    """A message that can never be processed: it goes to the DLQ with this reason."""


def parse_message(value: bytes | None, model: type[M], what: str) -> M:
    """A message value validated as ``model``; anything else raises ``InvalidMessage`` with the reason."""
    if value is None:
        raise InvalidMessage("empty message (null value)")
    try:
        payload = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidMessage(f"not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise InvalidMessage(f"expected a JSON object, got {type(payload).__name__}")
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise InvalidMessage(f"invalid {what}: {describe_errors(exc)}") from exc


def parse_tweet(value: bytes | None) -> Tweet:
    return parse_message(value, Tweet, "tweet")


def describe_errors(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'message'}: {err['msg']}" for err in exc.errors())


class TweetBatchProcessor:
    """Validates, language-tags and classifies a micro-batch in one model call."""

    def __init__(self, classifier: Classifier, replay_run: str = ""):
        self.classifier = classifier
        self.replay_run = replay_run  # set by replays: their rows are tagged with the run id

    def classify(self, messages: Sequence[InboundMessage]) -> BatchResult:
        result = BatchResult()
        accepted: list[tuple[Tweet, InboundMessage]] = []
        for message in messages:
            try:
                accepted.append((parse_tweet(message.value), message))
            except InvalidMessage as exc:
                result.dead_letters.append(DeadLetter.of(message, str(exc)))
        if not accepted:
            return result
        texts = [tweet.text for tweet, _ in accepted]
        languages = detect_languages(texts)
        probabilities = self.classifier.predict_proba(texts)
        classifier = self.classifier  # one version for the whole batch, even if it is swapped meanwhile
        now = utcnow()
        for (tweet, message), language, probs in zip(accepted, languages, probabilities):
            arrived = (
                datetime.fromtimestamp(message.timestamp_ms / 1000, tz=timezone.utc) if message.timestamp_ms else now
            )
            result.tweets.append(tweet)
            result.classifications.append(
                Classification.from_label(
                    CATEGORIES[int(probs.argmax())],
                    tweet_id=tweet.id,
                    lang=language.code,
                    lang_confidence=language.confidence,
                    probabilities=Probabilities(**{label.value: float(p) for label, p in zip(CATEGORIES, probs)}),
                    adapter_version=classifier.adapter_version,
                    model_id=classifier.model_id,
                    classified_at=now,
                    latency_ms=max(0.0, (now - arrived).total_seconds() * 1000),
                    replay_run=self.replay_run,
                )
            )
        return result


class DlqLimitExceeded(RuntimeError):
    """Too many invalid messages: a bad producer deploy, not noise. The worker stops without acking."""


class InvalidRatioGuard:
    """Tracks the share of invalid messages over the last ``window`` messages (cf. arroyo's ``DlqLimit``)."""

    def __init__(self, max_ratio: float, window: int = 1000, min_seen: int = 100):
        self.max_ratio = max_ratio
        self.min_seen = min_seen
        self._recent: deque[bool] = deque(maxlen=window)

    def check(self, result: BatchResult) -> None:
        self._recent.extend([False] * len(result.tweets) + [True] * len(result.dead_letters))
        if len(self._recent) >= self.min_seen:
            ratio = sum(self._recent) / len(self._recent)
            if ratio > self.max_ratio:
                raise DlqLimitExceeded(
                    f"{ratio:.0%} of the last {len(self._recent)} messages were invalid "
                    f"(limit {self.max_ratio:.0%}): stopping without committing them"
                )
