"""Identical tweets classified once: a bounded LRU of probabilities keyed by adapter version and normalised text.

Retweets and copy-paste campaigns repeat a text with another id, a ``RT @handle:`` prefix, another shortened link
or other spacing. Such copies get the probabilities of the first one the same model and adapter classified;
every tweet still gets its own row. Texts are keyed by a SHA-256 of the normalised text, so the cache holds no
tweet text.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from typing import Protocol

import numpy as np

_RETWEET = re.compile(r"^(?:RT\s+@\w+:?\s*)+", re.IGNORECASE)
_LINK = re.compile(r"https?://\S+")


def copy_key(text: str) -> str:
    """What makes two tweets copies of each other: the text without retweet prefixes, with every link the same,
    and with runs of whitespace as one space."""
    return " ".join(_LINK.sub("http", _RETWEET.sub("", text.strip())).split())


class Scorer(Protocol):
    model_id: str
    adapter_version: str

    def predict_proba(self, texts: list[str]) -> np.ndarray: ...


class ProbabilityCache:
    """Probabilities of recently classified texts, at most ``capacity`` of them (least recently used go first).

    ``predict`` classifies only the texts neither cached nor repeated earlier in the same call. Not thread-safe:
    like the classifier, it is used from the worker's one model thread."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.lookups = 0
        self.hits = 0
        self._entries: OrderedDict[bytes, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def predict(self, scorer: Scorer, texts: list[str]) -> np.ndarray:
        """(len(texts), 4) probabilities: cached ones reused, the others from one ``scorer.predict_proba`` call."""
        # The version names the adapter's weights and the model id the base: a swap or another base never reuses.
        scope = f"{scorer.model_id}\0{scorer.adapter_version}\0"
        keys = [hashlib.sha256((scope + copy_key(text)).encode("utf-8")).digest() for text in texts]
        found: dict[bytes, np.ndarray] = {}
        for key in keys:
            if key in self._entries and key not in found:
                self._entries.move_to_end(key)
                found[key] = self._entries[key]
        misses = list(dict.fromkeys(k for k in keys if k not in found))  # first text of each new key
        if misses:
            first_text = {}
            for key, text in zip(keys, texts):
                first_text.setdefault(key, text)
            scored = scorer.predict_proba([first_text[k] for k in misses])
            for key, probabilities in zip(misses, scored):
                found[key] = probabilities
                self._remember(key, probabilities)
        self.lookups += len(texts)
        self.hits += len(texts) - len(misses)
        return np.stack([found[k] for k in keys]) if texts else np.zeros((0, 4), dtype=np.float32)

    def _remember(self, key: bytes, probabilities: np.ndarray) -> None:
        if self.capacity <= 0:
            return
        self._entries[key] = probabilities
        if len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
