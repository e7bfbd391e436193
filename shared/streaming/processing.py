"""The worker's processing of one micro-batch, free of Faust and of ClickHouse.

``TweetBatchProcessor.classify`` turns raw messages into accepted tweets, their classifications and dead
letters; the worker then writes them with a ``ClassificationSink`` and only after that write returns acks the
batch (see ``shared.streaming.worker``). Keeping this step pure makes it testable without a broker and lets the
replay and benchmark paths reuse exactly the worker's code.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable, Protocol, Sequence, TypeVar

from pydantic import BaseModel, ValidationError

from shared.errors import StancestreamError
from shared.classifier.langid import UNKNOWN, DetectedLanguage, detect_languages
from shared.messages import (
    CATEGORIES, ORIGIN_HEADER, Classification, DeadLetter, Probabilities, Tweet, too_large_reason, utcnow,
)
from shared.settings import Settings


M = TypeVar("M", bound=BaseModel)

#: The worker's duplicate-id check: tweet id -> SHA-256 (hex) of the text stored under it, for the given ids.
StoredTexts = Callable[[list[str]], dict[str, str]]


@dataclass(frozen=True)
class InputLimits:
    """Bounds on what a message may be (see the input-limits settings); breaking one dead-letters the message."""

    max_message_bytes: int = Settings.model_fields["max_message_bytes"].default
    max_text_chars: int = Settings.model_fields["max_text_chars"].default
    max_json_depth: int = Settings.model_fields["max_json_depth"].default
    created_at_min: datetime = Settings.model_fields["created_at_min"].default
    created_at_max_ahead_s: float = Settings.model_fields["created_at_max_ahead_s"].default

    @classmethod
    def of(cls, settings: Settings) -> "InputLimits":
        return cls(settings.max_message_bytes, settings.max_text_chars, settings.max_json_depth,
                   settings.created_at_min, settings.created_at_max_ahead_s)

    def created_at_max(self) -> datetime:
        return utcnow() + timedelta(seconds=self.created_at_max_ahead_s)


DEFAULT_LIMITS = InputLimits()


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
        return self.origin or f"kafka:{self.topic}:{self.partition}:{self.offset}"


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


class Classifier(Protocol):
    model_id: str
    adapter_version: str

    def predict_proba(self, texts: list[str]): ...


class ClassificationSink(Protocol):
    """Where results go (``shared.store.sinks.ClickHouseSink``). ``write`` must be durable when it returns, or raise."""

    def write(self, tweets: Sequence[Tweet], classifications: Sequence[Classification],
              dead_letters: Sequence[DeadLetter]) -> None: ...


class InvalidMessage(ValueError):
    """A message that can never be processed: it goes to the DLQ with this reason."""


# A JSON string (skipped whole, escapes included) or a bracket: enough to measure nesting in one linear pass.
_JSON_NESTING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)
_BAD_CHARS = re.compile("[\x00\ud800-\udfff]")


def json_nesting_exceeds(text: str, limit: int) -> bool:
    """True if ``text`` nests arrays/objects deeper than ``limit``; linear, no recursion (brackets in strings don't
    count; on broken JSON it may over-count, and the message is refused either way)."""
    depth = 0
    for match in _JSON_NESTING.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > limit:
                return True
        elif token in "]}":
            depth -= 1
    return False


def _reject_constant(name: str) -> float:
    raise InvalidMessage(f"not JSON: {name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InvalidMessage(f"not JSON: number {text[:40]} is out of range")
    return value


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        duplicate = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise InvalidMessage(f"duplicate key {duplicate[:64]!r} in one JSON object")
    return result


def _check_strings(payload: object) -> None:
    """Refuse strings ClickHouse or UTF-8 cannot carry as they are: lone surrogates (JSON ``\\ud800``) and NULs."""
    stack: list[tuple[str, object]] = [("", payload)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                stack.append((f"{path}.{key}" if path else key, key))
                stack.append((f"{path}.{key}" if path else key, item))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", item) for i, item in enumerate(value))
        elif isinstance(value, str):
            bad = _BAD_CHARS.search(value)
            if bad:
                char = bad.group()
                what = "a NUL character" if char == "\x00" else f"a lone surrogate U+{ord(char):04X} (not UTF-8)"
                where = path[:64].encode("utf-8", "backslashreplace").decode("utf-8") or "message"
                raise InvalidMessage(f"{where}: contains {what}")


def parse_message(value: bytes | None, model: type[M], what: str, limits: InputLimits = DEFAULT_LIMITS) -> M:
    """A message value validated as ``model``; anything else raises ``InvalidMessage`` with the reason.

    Bounded before anything is parsed: the size, strict UTF-8 (invalid bytes are refused, never replaced), the
    nesting depth (measured without recursion); then JSON without NaN/Infinity, duplicate keys, lone surrogates or
    NULs; then the model, the text length and the date window (``created_at``/``labeled_at``)."""
    if value is None:
        raise InvalidMessage("empty message (null value)")
    if len(value) > limits.max_message_bytes:
        raise InvalidMessage(too_large_reason(len(value), limits.max_message_bytes))
    try:
        text = bytes(value).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidMessage(f"not valid UTF-8 at byte {exc.start}") from None
    if json_nesting_exceeds(text, limits.max_json_depth):
        raise InvalidMessage(f"JSON nested deeper than {limits.max_json_depth} levels")
    try:
        payload = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float,
                             object_pairs_hook=_no_duplicate_keys)
    except InvalidMessage:
        raise
    except RecursionError:  # only with a depth limit near Python's recursion limit (~1000)
        raise InvalidMessage("JSON nested too deep to parse") from None
    except ValueError as exc:  # JSONDecodeError, and int() refusing a number of more than 4300 digits
        raise InvalidMessage(f"not JSON: {str(exc)[:200]}") from None
    if not isinstance(payload, dict):
        raise InvalidMessage(f"expected a JSON object, got {type(payload).__name__}")
    _check_strings(payload)
    try:
        message = model.model_validate(payload)
    except ValidationError as exc:
        raise InvalidMessage(f"invalid {what}: {describe_errors(exc)}") from None
    text_value = getattr(message, "text", None)
    if isinstance(text_value, str) and len(text_value) > limits.max_text_chars:
        raise InvalidMessage(f"invalid {what}: text: longer than {limits.max_text_chars} characters "
                             f"({len(text_value)})")
    latest = limits.created_at_max()
    for name in ("created_at", "labeled_at"):
        moment = getattr(message, name, None)
        if isinstance(moment, datetime) and not limits.created_at_min <= moment <= latest:
            raise InvalidMessage(
                f"invalid {what}: {name} {moment.isoformat()} is outside the accepted window "
                f"{limits.created_at_min:%Y-%m-%d} .. {latest:%Y-%m-%d %H:%M} UTC (now + "
                f"{limits.created_at_max_ahead_s / 3600:g} h)")
    return message


def parse_tweet(value: bytes | None, limits: InputLimits = DEFAULT_LIMITS) -> Tweet:
    return parse_message(value, Tweet, "tweet", limits)


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


def describe_errors(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'message'}: {err['msg']}" for err in exc.errors())


class TweetBatchProcessor:
    """Validates, language-tags and classifies a micro-batch in one model call.

    No message can fail the batch: a refused one, or one whose parsing raised anything at all, becomes its own
    dead letter. Tweet ids are immutable: a message whose id is already taken by another text (earlier in the
    batch, or in the ``tweets`` table when ``stored_texts`` is given) is dead-lettered as a conflicting duplicate
    before any model time is spent; the same id with the same text is a redelivery and is processed normally.
    """

    def __init__(self, classifier: Classifier, replay_run: str = "", limits: InputLimits = DEFAULT_LIMITS):
        self.classifier = classifier
        self.replay_run = replay_run  # set by replays: their rows are tagged with the run id
        self.limits = limits

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
        try:
            return accepted, self.classifier.predict_proba([tweet.text for tweet, _ in accepted])
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
