"""The active-learning label queue: which classified tweets are most worth a human label, per language.

Pure functions over tweets and their four probabilities (``CATEGORIES`` order), so the choice is testable without
a store or a model:

- **uncertainty** of the active adapter, in [0, 1]: ``margin`` is 1 − (top probability − second one), ``entropy``
  the entropy of the four probabilities divided by log 4;
- **disagreement** with a candidate adapter, in [0, 1], when one scored the tweets: half for predicting another
  label, half the total-variation distance between the two probability vectors (0 without a candidate);
- the **score** is uncertainty + disagreement; the highest go first;
- **no copies**: a tweet whose text is a copy of an already queued or already labeled one (same tokens after
  dropping ``RT @user:`` prefixes, links, mentions, punctuation and case, or word-bigram Jaccard similarity of at
  least ``similarity``) is dropped; retweets and copy-paste campaigns would otherwise fill the queue with one text;
- already **labeled** tweets are skipped (and counted).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

from shared.messages import CATEGORIES, Category

Probs = tuple[float, float, float, float]

#: How uncertainty can be measured (``label-queue --by``).
UNCERTAINTY_MEASURES = ("margin", "entropy")
#: Two texts whose word-bigram Jaccard similarity reaches this are copies of each other (``--similarity``).
DEFAULT_SIMILARITY = 0.8

_RETWEET = re.compile(r"^(?:RT\s+@\w+:?\s*)+", re.IGNORECASE)
_LINK = re.compile(r"https?://\S+|www\.\S+", re.IGNORECASE)
_MENTION = re.compile(r"(?<!\w)@\w+")
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class PoolTweet:
    """A classified tweet that could be queued; ``labeled``: a human label exists already."""

    tweet_id: str
    lang: str
    text: str
    probs: Probs
    labeled: bool = False


@dataclass(frozen=True)
class QueuedTweet:
    tweet: PoolTweet
    predicted: Category
    uncertainty: float
    disagreement: float | None  # None: no candidate adapter scored it
    score: float

    @property
    def confidence(self) -> float:
        return max(self.tweet.probs)


@dataclass
class LanguageQueue:
    """One language's queue, best first, and what was left out of it."""

    lang: str
    queued: list[QueuedTweet] = field(default_factory=list)
    pool: int = 0  # unlabeled tweets considered
    skipped_labeled: int = 0
    dropped_duplicates: int = 0

    def summary(self) -> str:
        if not self.pool and not self.skipped_labeled:
            return f"{self.lang}: nothing to queue (no classified tweets in the window)"
        return (f"{self.lang}: queued {len(self.queued)} of {self.pool} unlabeled tweet(s) in the pool; "
                f"{self.skipped_labeled} already labeled, skipped; {self.dropped_duplicates} near-duplicate(s) "
                "dropped")


def margin_uncertainty(probs: Sequence[float]) -> float:
    """1 − (top probability − second one): 0 when the model is sure, 1 when two labels tie."""
    top, second = sorted(probs, reverse=True)[:2]
    return 1.0 - (top - second)


def entropy_uncertainty(probs: Sequence[float]) -> float:
    """The entropy of the probabilities over its maximum, log 4: 0 when sure, 1 when uniform."""
    total = sum(probs)
    return -sum(p / total * math.log(p / total) for p in probs if p > 0) / math.log(len(probs))


UNCERTAINTY = {"margin": margin_uncertainty, "entropy": entropy_uncertainty}


def predicted_label(probs: Sequence[float]) -> Category:
    return CATEGORIES[max(range(len(probs)), key=lambda i: probs[i])]


def disagreement(active: Sequence[float], candidate: Sequence[float]) -> float:
    """In [0, 1]: half for another predicted label, half the total-variation distance of the probabilities."""
    flip = predicted_label(active) != predicted_label(candidate)
    distance = 0.5 * sum(abs(a - c) for a, c in zip(active, candidate))
    return 0.5 * flip + 0.5 * min(distance, 1.0)


def copy_tokens(text: str) -> tuple[str, ...]:
    """The words that make two tweets copies of each other: without ``RT @user:`` prefixes, links, mentions,
    punctuation and case."""
    text = _MENTION.sub(" ", _LINK.sub(" ", _RETWEET.sub("", text.strip())))
    return tuple(_WORD.findall(text.casefold()))


def shingles(tokens: Sequence[str]) -> frozenset:
    """Word bigrams (the word itself for a one-word text)."""
    if len(tokens) < 2:
        return frozenset(tokens)
    return frozenset(zip(tokens, tokens[1:]))


def jaccard(a: frozenset, b: frozenset) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


class CopyIndex:
    """Texts seen so far; ``is_copy`` says whether a text is one of theirs (identical tokens, or word-bigram
    Jaccard similarity ≥ ``similarity``). An inverted index over bigrams keeps it linear in practice."""

    def __init__(self, similarity: float = DEFAULT_SIMILARITY):
        self.similarity = similarity
        self._keys: set[tuple[str, ...]] = set()
        self._sizes: list[int] = []
        self._index: dict[object, list[int]] = {}

    def is_copy(self, text: str) -> bool:
        tokens = copy_tokens(text)
        if tokens in self._keys:
            return True
        own = shingles(tokens)
        if not own:
            return False
        shared = Counter(i for s in own for i in self._index.get(s, ()))
        return any(n / (len(own) + self._sizes[i] - n) >= self.similarity for i, n in shared.items())

    def add(self, text: str) -> None:
        tokens = copy_tokens(text)
        self._keys.add(tokens)
        own = shingles(tokens)
        for s in own:
            self._index.setdefault(s, []).append(len(self._sizes))
        self._sizes.append(len(own))


def rank(tweet: PoolTweet, by: str = "margin", candidate: Sequence[float] | None = None) -> QueuedTweet:
    """The tweet's uncertainty, disagreement with the candidate's probabilities (if any) and score."""
    uncertainty = UNCERTAINTY[by](tweet.probs)
    disagreeing = None if candidate is None else disagreement(tweet.probs, candidate)
    return QueuedTweet(tweet, predicted_label(tweet.probs), uncertainty, disagreeing,
                       uncertainty + (disagreeing or 0.0))


def build_queue(lang: str, pool: Iterable[PoolTweet], n: int, *, by: str = "margin",
                candidate: Mapping[str, Sequence[float]] | None = None, labeled_ids: Iterable[str] = (),
                similarity: float = DEFAULT_SIMILARITY) -> LanguageQueue:
    """At most ``n`` tweets of ``lang`` from ``pool``, highest score first, no two of them copies and none a copy
    of a labeled tweet. Tweets marked ``labeled`` or in ``labeled_ids`` are skipped; their texts still count as
    taken. ``candidate``: the candidate adapter's probabilities by tweet id."""
    if by not in UNCERTAINTY:
        raise ValueError(f"unknown uncertainty measure {by!r}: use one of {', '.join(UNCERTAINTY_MEASURES)}")
    labeled = set(labeled_ids)
    queue = LanguageQueue(lang)
    taken = CopyIndex(similarity)
    ranked: list[QueuedTweet] = []
    seen: set[str] = set()
    for tweet in pool:
        if tweet.lang != lang or tweet.tweet_id in seen:
            continue
        seen.add(tweet.tweet_id)
        if tweet.labeled or tweet.tweet_id in labeled:
            queue.skipped_labeled += 1
            taken.add(tweet.text)
            continue
        queue.pool += 1
        ranked.append(rank(tweet, by, None if candidate is None else candidate.get(tweet.tweet_id)))
    ranked.sort(key=lambda q: (-q.score, q.tweet.tweet_id))
    for item in ranked:
        if len(queue.queued) == n:
            break
        if taken.is_copy(item.tweet.text):
            queue.dropped_duplicates += 1
            continue
        taken.add(item.tweet.text)
        queue.queued.append(item)
    return queue


#: The queue's CSV: what `labels import` reads back once the blank ``label`` column is filled in.
CSV_COLUMNS = ("id", "lang", "text", "predicted", "p_pro", "p_anti", "p_neutral", "p_unrelated", "uncertainty",
               "disagreement", "label")


def csv_row(item: QueuedTweet) -> list[str]:
    t = item.tweet
    return [t.tweet_id, t.lang, t.text, item.predicted.value, *(f"{p:.4f}" for p in t.probs), f"{item.uncertainty:.4f}",
            "" if item.disagreement is None else f"{item.disagreement:.4f}", ""]
