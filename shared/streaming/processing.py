"""The worker's processing of one micro-batch, free of Faust and of ClickHouse.

``TweetBatchProcessor.classify`` turns raw messages into accepted tweets, their classifications and dead
letters, ``LabelBatchProcessor.process`` label messages into labels and dead letters; the worker then writes them
through a ``ClassificationSink`` or ``LabelSink`` and only after that write returns acks the batch (see
``shared.streaming.worker``). Keeping this step pure makes it testable without a broker and lets the
replay and benchmark paths reuse exactly the worker's code.
"""


from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Protocol, Sequence

from shared.classifier.cache import ProbabilityCache
from shared.classifier.langid import UNKNOWN, DetectedLanguage, detect_languages
from shared.errors import StancestreamError
from shared.messages import (CATEGORIES, ORIGIN_HEADER, Classification, DeadLetter, Label, Probabilities, Tweet,
                             kafka_origin, utcnow)
from shared.streaming.validation import DEFAULT_LIMITS, InputLimits, InvalidMessage, parse_label, parse_tweet

#: The worker's duplicate-id check: tweet id -> SHA-256 (hex) of the text stored under it, for the given ids.
StoredTexts = Callable[[list[str]], dict[str, str]]


@dataclass(frozen=True)
class InboundMessage:
    """A message as read from Kafka: the raw value and where it came from."""

    value: bytes | None
    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None = None  # the broker's record timestamp: when the tweet entered Kafka
    origin: str = ""  # the feeder's ``<feed id>:<line>`` (header ``stancestream-origin``), if any

    @property
    def key(self) -> str:
        """Its durable identity: the origin, else its Kafka coordinates (which a restarted in-memory broker reuses)."""
        return self.origin or kafka_origin(self.topic, self.partition, self.offset)


def origin_of(headers) -> str:
    """The ``stancestream-origin`` header of a record: Faust gives a list of (key, bytes) pairs or a mapping.
    A header that is not short printable UTF-8 is ignored (the message is then known by its Kafka coordinates)."""
    if not headers:
        return ""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    for name, value in pairs:
        if isinstance(name, bytes):
            name = name.decode("utf-8", "replace")
        if name != ORIGIN_HEADER:
            continue
        try:
            text = value.decode("utf-8") if isinstance(value, (bytes, bytearray)) else str(value)
        except UnicodeDecodeError:
            return ""
        return text if 0 < len(text) <= 256 and text.isprintable() else ""
    return ""


@dataclass
class ParsedBatch:
    """A micro-batch after validation, before the duplicate-id check and the model."""

    tweets: list[tuple[Tweet, InboundMessage]] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return sorted({tweet.id for tweet, _ in self.tweets})


@dataclass
class BatchResult:
    tweets: list[Tweet] = field(default_factory=list)
    classifications: list[Classification] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    conflicting_ids: int = 0  # dead letters among them: an id already stored with another text
    copies: int = 0  # tweets whose probabilities came from an identical text already classified


class Classifier(Protocol):
    model_id: str
    adapter_version: str

    def predict_proba(self, texts: list[str]): ...


class ClassificationSink(Protocol):
    """Where results go (``shared.store.sinks.ClickHouseSink``). ``write`` must be durable when it returns, or raise."""

    def write(self, tweets: Sequence[Tweet], classifications: Sequence[Classification],
              dead_letters: Sequence[DeadLetter]) -> None: ...


class LabelSink(Protocol):
    """Where labels go (``shared.store.sinks.ClickHouseLabelSink``): durable when ``write`` returns, or raise."""

    def write(self, labels: Sequence[Label], dead_letters: Sequence[DeadLetter]) -> None: ...


_CANARY_TEXT = "Refugees are welcome here."  # any model that works classifies this


def _safe_language(text: str):
    try:
        return detect_languages([text])[0]
    except Exception:
        return DetectedLanguage(UNKNOWN, 0.0)


def unexpected_reason(exc: BaseException) -> str:
    return f"unexpected error: {type(exc).__name__}: {str(exc)[:300]}"


def text_digest(text: str) -> str:
    """What the duplicate-id check compares: SHA-256 of the text as stored (after ``Tweet``'s stripping)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class TweetBatchProcessor:
    """Validates, language-tags and classifies a micro-batch in one model call.

    No message can fail the batch: a refused one, or one whose parsing raised anything at all, becomes its own
    dead letter. Tweet ids are immutable: a message whose id is already taken by another text (earlier in the
    batch, or in the ``tweets`` table when ``stored_texts`` is given) is dead-lettered as a conflicting duplicate
    before any model time is spent; the same id with the same text is a redelivery and is processed normally.
    """

    def __init__(self, classifier: Classifier, replay_run: str = "", limits: InputLimits = DEFAULT_LIMITS,
                 cache: ProbabilityCache | None = None):
        self.classifier = classifier
        self.replay_run = replay_run  # set by replays: their rows are tagged with the run id
        self.limits = limits
        self.cache = cache  # identical texts classified once (see ``shared.classifier.cache``)

    def classify(self, messages: Sequence[InboundMessage], stored_texts: StoredTexts | None = None) -> BatchResult:
        """``parse``, look the ids up with ``stored_texts`` (if given), then ``classify_parsed``."""
        parsed = self.parse(messages)
        stored = stored_texts(parsed.ids) if stored_texts is not None and parsed.ids else {}
        return self.classify_parsed(parsed, stored)

    def parse(self, messages: Sequence[InboundMessage]) -> "ParsedBatch":
        """Validate every message; a refused one, or one whose parsing raised anything at all, becomes its own
        dead letter (never the batch's failure)."""
        parsed = ParsedBatch()
        for message in messages:
            try:
                parsed.tweets.append((parse_tweet(message.value, self.limits), message))
            except InvalidMessage as exc:
                parsed.dead_letters.append(DeadLetter.of(message, str(exc)))
            except Exception as exc:  # a bug or an input nobody foresaw
                parsed.dead_letters.append(DeadLetter.of(message, unexpected_reason(exc)))
        return parsed

    def classify_parsed(self, parsed: "ParsedBatch", stored: dict[str, str] | None = None) -> BatchResult:
        """Classify the parsed tweets whose id is free or held by the same text; ``stored`` maps the ids already
        in the ``tweets`` table to the SHA-256 of their text (``ClickHouseSink.stored_text_digests``)."""
        result = BatchResult(dead_letters=list(parsed.dead_letters))
        accepted = self._without_conflicts(parsed.tweets, stored or {}, result)
        if not accepted:
            return result
        accepted, probabilities = self._predict(accepted, result)
        texts = [tweet.text for tweet, _ in accepted]
        try:
            languages = detect_languages(texts)
        except Exception:  # language tags are a nicety: one odd text must not cost the batch its classification
            languages = [_safe_language(text) for text in texts]
        classifier = self.classifier  # one version for the whole batch, even if it is swapped meanwhile
        now = utcnow()
        for (tweet, message), language, probs in zip(accepted, languages, probabilities):
            arrived = (
                datetime.fromtimestamp(message.timestamp_ms / 1000, tz=timezone.utc) if message.timestamp_ms else now
            )
            try:
                classification = Classification.from_label(
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
            except Exception as exc:  # e.g. NaN probabilities for one odd text
                result.dead_letters.append(DeadLetter.of(message, unexpected_reason(exc)))
                continue
            result.tweets.append(tweet)
            result.classifications.append(classification)
        return result

    def _predict(self, accepted: list[tuple[Tweet, InboundMessage]], result: BatchResult):
        """One model call for the batch. If it raises, each tweet is tried alone: one that still fails is a
        poison message (dead-lettered) — unless the model fails on a plain text too, which is the model's fault,
        not the messages': then it raises, and the worker stops with the batch uncommitted."""
        texts = [tweet.text for tweet, _ in accepted]
        try:
            if self.cache is None:
                return accepted, self.classifier.predict_proba(texts)
            hits = self.cache.hits
            probabilities = self.cache.predict(self.classifier, texts)
            result.copies += self.cache.hits - hits
            return accepted, probabilities
        except Exception as batch_error:
            kept, probabilities, failed = [], [], []
            for tweet, message in accepted:
                try:
                    probabilities.append(self.classifier.predict_proba([tweet.text])[0])
                    kept.append((tweet, message))
                except Exception as exc:
                    failed.append((message, exc))
            if failed and not kept:
                try:
                    self.classifier.predict_proba([_CANARY_TEXT])
                except Exception:
                    raise batch_error from None
            for message, exc in failed:
                result.dead_letters.append(DeadLetter.of(message, f"{unexpected_reason(exc)} (in the model)"))
            return kept, probabilities

    @staticmethod
    def _without_conflicts(parsed: list[tuple[Tweet, InboundMessage]], stored: dict[str, str],
                           result: BatchResult) -> list[tuple[Tweet, InboundMessage]]:
        """The parsed tweets whose id is not already taken by another text; the others become dead letters."""
        first: dict[str, str] = {}
        for tweet, _ in parsed:
            first.setdefault(tweet.id, text_digest(tweet.text))
        accepted = []
        for tweet, message in parsed:
            digest = text_digest(tweet.text)
            if tweet.id in stored:
                owner, where = stored[tweet.id], "stored"
            else:
                owner, where = first[tweet.id], "earlier in the batch"
            if digest == owner:
                accepted.append((tweet, message))
                continue
            result.dead_letters.append(DeadLetter.of(
                message, f"conflicting duplicate id: {tweet.id!r} is already {where} with another text "
                         f"(sha256 {owner[:12]}…, this one {digest[:12]}…); a tweet id is immutable"))
            result.conflicting_ids += 1
        return accepted


class DlqLimitExceeded(StancestreamError):
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


@dataclass
class LabelBatch:
    labels: list[Label] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)


class LabelBatchProcessor:
    """Validates label messages; a refused one, or one whose parsing raised anything, becomes its dead letter."""

    def __init__(self, limits: InputLimits = DEFAULT_LIMITS):
        self.limits = limits

    def process(self, messages: Sequence[InboundMessage]) -> LabelBatch:
        batch = LabelBatch()
        for message in messages:
            try:
                batch.labels.append(parse_label(message.value, self.limits))
            except InvalidMessage as exc:
                batch.dead_letters.append(DeadLetter.of(message, str(exc)))
            except Exception as exc:
                batch.dead_letters.append(DeadLetter.of(message, unexpected_reason(exc)))
        return batch
