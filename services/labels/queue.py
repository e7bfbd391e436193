"""``stancestream label-queue``: the store's recent classifications of the active adapter, scored again by the
latest candidate adapter when there is one, ranked and de-duplicated by ``shared.labeling.queue``, written by
``shared.labeling.files`` for Label Studio and as CSV."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable, Sequence

from services.wiring import open_migrated_store, open_registry
from shared.classifier.errors import ClassifierError
from shared.errors import StancestreamError
from shared.labeling.files import queue_paths, write_queue_files
from shared.labeling.queue import DEFAULT_SIMILARITY, LanguageQueue, PoolTweet, build_queue
from shared.settings import Settings
from shared.store.queries.label_queue import classified_languages, queue_pool
from shared.training.registry import AdapterRecord, AdapterRegistry, AdapterStatus

#: ``--candidate`` value that ranks without one.
NO_CANDIDATE = "none"


class LabelQueueError(StancestreamError):
    pass


@dataclass
class QueueResult:
    active_version: str
    candidate_version: str | None
    queues: list[LanguageQueue]
    written: list[Path] = field(default_factory=list)


def make_label_queue(settings: Settings, langs: Sequence[str], n: int, out: str, since: datetime, *,
                     by: str = "margin", candidate: str | None = None, pool: int = 500,
                     similarity: float = DEFAULT_SIMILARITY, note: Callable[[str], None] = lambda _: None
                     ) -> QueueResult:
    """Choose up to ``n`` tweets per language to label and write the queue's files. ``candidate``: a registry
    version, ``none``, or None for the latest candidate in the registry; ``note`` hears what was left out."""
    queue_paths(out)  # a bad --out fails before any work
    store = open_migrated_store(settings)
    registry = open_registry(settings, store, seed=False)
    active = registry.active()
    if active is None:
        raise LabelQueueError("no active adapter in the registry: the queue ranks the active adapter's "
                              "classifications (a worker registers the configured adapter when it starts)")
    known = classified_languages(store)
    unknown = [lang for lang in langs if lang not in known]
    if unknown:
        raise LabelQueueError(f"unknown language {', '.join(unknown)}: no tweet was ever classified as "
                              f"{'it' if len(unknown) == 1 else 'them'} (classified: {', '.join(known) or 'none'})")
    rows = queue_pool(store, active.version, since, langs, pool, by)
    if not rows:
        raise LabelQueueError(f"no tweets in the window: none created since {since:%Y-%m-%d %H:%M} UTC and "
                              f"classified by {active.version} in {', '.join(langs)} (widen --window or --since)")
    tweets = [PoolTweet(str(r[0]), r[1], r[2], (float(r[3]), float(r[4]), float(r[5]), float(r[6])), bool(r[7]))
              for r in rows]
    chosen = _candidate(registry, active, candidate, note)
    scores = None
    if chosen is not None:
        try:
            scores = _candidate_scores(settings, chosen, [t for t in tweets if not t.labeled])
            note(f"disagreement with candidate {chosen.version} boosts the ranking")
        except ClassifierError as exc:
            if candidate is not None:  # named by the user: say why it cannot be used
                raise
            note(f"the latest candidate {chosen.version} cannot be loaded ({exc}): ranked without it")
            chosen = None
    queues = [build_queue(lang, tweets, n, by=by, candidate=scores, similarity=similarity) for lang in langs]
    result = QueueResult(active.version, chosen.version if chosen else None, queues)
    result.written = write_queue_files(out, queues, active.version)
    return result


def _candidate(registry: AdapterRegistry, active: AdapterRecord, choice: str | None,
               note: Callable[[str], None]) -> AdapterRecord | None:
    if choice == NO_CANDIDATE:
        return None
    if choice is not None:
        record = registry.get(choice)
        if record.version == active.version:
            raise LabelQueueError(f"--candidate {choice} is the active adapter: name another version, or none")
        return record
    candidates = [r for r in registry.records() if r.status is AdapterStatus.candidate]
    if not candidates:
        note("no candidate adapter in the registry: ranked by the active adapter's uncertainty alone")
        return None
    return max(candidates, key=lambda r: (r.created_at, r.version))


def _candidate_scores(settings: Settings, record: AdapterRecord, tweets: list[PoolTweet]) -> dict[str, tuple]:
    """The candidate adapter's probabilities of each tweet, by id; a retweet or copy is scored once, as the worker
    does (``ProbabilityCache``)."""
    from shared.classifier.adapters import check_adapter
    from shared.classifier.cache import ProbabilityCache
    from shared.classifier.model import StanceClassifier

    check_adapter(Path(record.path))  # before the base model is loaded for nothing
    classifier = StanceClassifier.load(settings, Path(record.path))
    probs = ProbabilityCache(len(tweets)).predict(classifier, [t.text for t in tweets])
    return {t.tweet_id: tuple(float(p) for p in row) for t, row in zip(tweets, probs)}
