"""The messages on our topics. ``schemas/*.json`` is generated from these models (``stancestream schemas``)."""

from __future__ import annotations

import codecs
import hashlib
from datetime import datetime, timezone
from enum import Enum

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator


class Category(str, Enum):
    """The four classes of the paper, in its order (the paper's "category numbers" 1-4)."""

    pro = "pro-immigration"
    anti = "anti-immigration"
    neutral = "neutral"
    unrelated = "unrelated"


CATEGORIES: tuple[Category, ...] = tuple(Category)


class Topic(str, Enum):
    immigration = "immigration"
    unrelated = "unrelated"


class Stance(str, Enum):
    pro = "pro"
    anti = "anti"
    neutral = "neutral"


_STANCE_OF = {Category.pro: Stance.pro, Category.anti: Stance.anti, Category.neutral: Stance.neutral}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _id_as_string(value: object) -> object:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _iso_8601_only(value: object) -> object:
    # A number would be read as seconds or milliseconds since 1970, by its size: a guess, so it is refused.
    if isinstance(value, (int, float)):
        raise ValueError("expected an ISO 8601 date-time string, not a number")
    return value


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class Tweet(BaseModel):
    """A tweet to classify (topic ``tweets.raw``)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    # Exporters send ids as JSON numbers too; they are kept as exact strings (the schema admits both).
    id: str = Field(min_length=1, max_length=64, description="platform tweet id",
                    json_schema_extra={"type": ["string", "integer"]})
    text: str = Field(min_length=1, max_length=10_000)
    created_at: datetime = Field(description="when the tweet was posted (ISO 8601; naive means UTC)")
    lang: str | None = Field(None, max_length=16, description="the platform's language tag, if any")
    author_id: str | None = Field(None, max_length=64)
    country: str | None = Field(None, max_length=64)
    source: str | None = Field(None, max_length=64, description="feed or archive this tweet came from")

    _id_as_string = field_validator("id", mode="before")(_id_as_string)
    _iso_only = field_validator("created_at", mode="before")(_iso_8601_only)
    _aware = field_validator("created_at")(_as_utc)


class Probabilities(BaseModel):
    """Class probabilities; they sum to 1."""

    pro: float = Field(ge=0, le=1, alias="pro-immigration")
    anti: float = Field(ge=0, le=1, alias="anti-immigration")
    neutral: float = Field(ge=0, le=1)
    unrelated: float = Field(ge=0, le=1)

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    @model_validator(mode="after")
    def _sums_to_one(self) -> "Probabilities":
        total = self.pro + self.anti + self.neutral + self.unrelated
        if abs(total - 1.0) > 1e-3:
            raise ValueError(f"probabilities sum to {total:.4f}, not 1")
        return self


class Classification(BaseModel):
    """One tweet's classification by one adapter version (topic ``tweets.classified``)."""

    tweet_id: str
    lang: str = Field(description="ISO 639-1 code detected from the text, `und` if unknown")
    lang_confidence: float = Field(ge=0, le=1)
    topic: Topic
    stance: Stance | None = Field(description="none when the tweet is unrelated to immigration")
    label: Category
    probabilities: Probabilities
    adapter_version: str = Field(description="adapter that produced this row; `base` for the bare base model")
    model_id: str = Field(description="base model name and weight fingerprint")
    classified_at: datetime
    latency_ms: float = Field(ge=0, description="from the tweet's arrival in Kafka to its classification")
    replay_run: str = Field("", description="the replay run that produced this row; empty for the live stream")

    @classmethod
    def from_label(cls, label: Category, **fields: object) -> "Classification":
        topic = Topic.unrelated if label is Category.unrelated else Topic.immigration
        return cls(label=label, topic=topic, stance=_STANCE_OF.get(label), **fields)

    @model_validator(mode="after")
    def _consistent(self) -> "Classification":
        if (self.topic is Topic.unrelated) != (self.stance is None) or (self.label is Category.unrelated) != (
            self.topic is Topic.unrelated
        ):
            raise ValueError("topic, stance and label disagree")
        return self


#: The Kafka header carrying a message's durable identity, set by the feeder: ``<feed id>:<line number>``.
ORIGIN_HEADER = "stancestream-origin"
#: How much of a refused message a dead letter keeps: its size and SHA-256 identify the rest.
DEAD_LETTER_PREFIX_BYTES = 4096
MAX_REASON_CHARS = 1000


def too_large_reason(size: int, limit: int) -> str:
    """The one wording of this refusal, whether the worker or the feeder refuses."""
    return f"message too large: {size} bytes (limit {limit})"


class DeadLetter(BaseModel):
    """A message that could not be accepted (topic ``tweets.dlq``): the reason, where it came from, and a bounded
    copy of its bytes (the first 4 KiB, the size and the SHA-256), so that a dead letter always fits the broker.

    ``origin`` is its durable identity and the key of the ``dead_letters`` table: the feeder's ``<feed id>:<line>``
    when the message carried it (it survives a broker that restarts its offsets from 0), else
    ``kafka:<topic>:<partition>:<offset>``.
    """

    reason: str
    source_topic: str
    partition: int = Field(description="-1 when the feeder refused the message before producing it")
    offset: int = Field(description="-1 when the feeder refused the message before producing it")
    payload: str = Field(description="the first 4 KiB of the original value, decoded as UTF-8 with replacement "
                                     "(for display; exact when its SHA-256 equals payload_sha256)")
    failed_at: datetime = Field(default_factory=utcnow)
    origin: str = Field("", description="durable identity: `<feed id>:<line>` from the feeder, else "
                                        "`kafka:<topic>:<partition>:<offset>`")
    payload_bytes: int = Field(0, ge=0, description="size of the original value in bytes")
    payload_sha256: str = Field("", description="SHA-256 (hex) of the original value")

    @classmethod
    def build(cls, reason: str, value: bytes | None, *, source_topic: str, partition: int, offset: int,
              origin: str = "", payload_bytes: int | None = None, payload_sha256: str | None = None) -> "DeadLetter":
        """A dead letter of ``value``; pass ``payload_bytes``/``payload_sha256`` when ``value`` is only a prefix."""
        value = value or b""
        prefix = value[:DEAD_LETTER_PREFIX_BYTES]
        # final=False on a cut value drops a multi-byte character split by the cut instead of "replacing" it.
        text = codecs.getincrementaldecoder("utf-8")("replace").decode(
            prefix, final=len(prefix) == len(value) and payload_bytes in (None, len(value)))
        reason = reason.encode("utf-8", "backslashreplace").decode("utf-8")  # no lone surrogates, ever
        if len(reason) > MAX_REASON_CHARS:
            reason = reason[:MAX_REASON_CHARS - 1] + "…"
        return cls(reason=reason, source_topic=source_topic, partition=partition, offset=offset, payload=text,
                   origin=origin or kafka_origin(source_topic, partition, offset),
                   payload_bytes=len(value) if payload_bytes is None else payload_bytes,
                   payload_sha256=hashlib.sha256(value).hexdigest() if payload_sha256 is None else payload_sha256)

    @classmethod
    def of(cls, message, reason: str) -> "DeadLetter":
        """The dead letter of an ``InboundMessage`` (anything with value, topic, partition, offset, and
        optionally origin)."""
        return cls.build(reason, message.value, source_topic=message.topic, partition=message.partition,
                         offset=message.offset, origin=getattr(message, "origin", "") or "")


def kafka_origin(topic: str, partition: int, offset: int) -> str:
    """The identity of a message that came without the feeder's origin header: its Kafka coordinates."""
    return f"kafka:{topic}:{partition}:{offset}"


class Label(BaseModel):
    """A human label for one tweet (topic ``tweets.labels``); the latest ``labeled_at`` per tweet id wins."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    tweet_id: str = Field(min_length=1, max_length=64, validation_alias=AliasChoices("tweet_id", "id"),
                          json_schema_extra={"type": ["string", "integer"]})
    text: str = Field(min_length=1, max_length=10_000)
    lang: str = Field(min_length=2, max_length=16, description="language of the text (ISO 639-1 or the dataset's tag)")
    label: Category
    annotator: str = Field("unknown", min_length=1, max_length=64, description="who labeled it (person or tool)")
    labeled_at: datetime = Field(default_factory=utcnow, description="ISO 8601; naive means UTC")

    _id_as_string = field_validator("tweet_id", mode="before")(_id_as_string)
    _iso_only = field_validator("labeled_at", mode="before")(_iso_8601_only)
    _aware = field_validator("labeled_at")(_as_utc)


class AdapterAction(str, Enum):
    promote = "promote"
    rollback = "rollback"


class AdapterEvent(BaseModel):
    """The active adapter changed (topic ``adapters.events``): every running worker switches to ``version``."""

    version: str
    path: str = Field(description="the adapter directory, as seen by the workers (shared volume)")
    action: AdapterAction
    previous: str | None = None
    reason: str = ""
    at: datetime = Field(default_factory=utcnow)


#: Message model of each logical topic: the schema generator and the schema test read this.
TOPIC_MODELS: dict[str, type[BaseModel]] = {
    "tweets.raw": Tweet,
    "tweets.classified": Classification,
    "tweets.dlq": DeadLetter,
    "tweets.labels": Label,
    "adapters.events": AdapterEvent,
}
