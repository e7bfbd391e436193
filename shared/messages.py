"""The messages on our topics. ``schemas/*.json`` is generated from these models (``stancestream schemas``)."""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Label(str, Enum):
    """The four classes of the paper, in its order."""

    pro = "pro-immigration"
    anti = "anti-immigration"
    neutral = "neutral"
    unrelated = "unrelated"


LABELS: tuple[Label, ...] = tuple(Label)


class Topic(str, Enum):
    immigration = "immigration"
    unrelated = "unrelated"


class Stance(str, Enum):
    pro = "pro"
    anti = "anti"
    neutral = "neutral"


_STANCE_OF = {Label.pro: Stance.pro, Label.anti: Stance.anti, Label.neutral: Stance.neutral}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


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

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_string(cls, value: object) -> object:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("created_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


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

    def of(self, label: Label) -> float:
        return {Label.pro: self.pro, Label.anti: self.anti, Label.neutral: self.neutral}.get(label, self.unrelated)


class Classification(BaseModel):
    """One tweet's classification by one adapter version (topic ``tweets.classified``)."""

    tweet_id: str
    lang: str = Field(description="ISO 639-1 code detected from the text, `und` if unknown")
    lang_confidence: float = Field(ge=0, le=1)
    topic: Topic
    stance: Stance | None = Field(description="none when the tweet is unrelated to immigration")
    label: Label
    probabilities: Probabilities
    adapter_version: str = Field(description="adapter that produced this row; `base` for the bare base model")
    model_id: str = Field(description="base model name and weight fingerprint")
    classified_at: datetime
    latency_ms: float = Field(ge=0, description="from the tweet's arrival in Kafka to its classification")

    @classmethod
    def from_label(cls, label: Label, **fields: object) -> "Classification":
        topic = Topic.unrelated if label is Label.unrelated else Topic.immigration
        return cls(label=label, topic=topic, stance=_STANCE_OF.get(label), **fields)

    @model_validator(mode="after")
    def _consistent(self) -> "Classification":
        if (self.topic is Topic.unrelated) != (self.stance is None) or (self.label is Label.unrelated) != (
            self.topic is Topic.unrelated
        ):
            raise ValueError("topic, stance and label disagree")
        return self


class DeadLetter(BaseModel):
    """A message the worker could not accept (topic ``tweets.dlq``): the reason and the original bytes."""

    reason: str
    source_topic: str
    partition: int
    offset: int
    payload: str = Field(description="the original message value, decoded as UTF-8 with replacement")
    failed_at: datetime = Field(default_factory=utcnow)


#: Message model of each logical topic: the schema generator and the schema test read this.
TOPIC_MODELS: dict[str, type[BaseModel]] = {
    "tweets.raw": Tweet,
    "tweets.classified": Classification,
    "tweets.dlq": DeadLetter,
}
