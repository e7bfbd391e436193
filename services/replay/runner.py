"""Replays: archived tweets re-classified with a chosen adapter, beside the live stream, never through it.

A replay reads tweets from the ClickHouse ``tweets`` archive or from JSONL/CSV archives (.gz, e.g. one file per
hour), filters them by posting time and detected language, and runs them through the worker's own batch code
(``TweetBatchProcessor`` → ``ClickHouseSink``) with its own classifier. It never produces to ``tweets.raw`` and
never joins the worker group, so the live stream's ordering and committed offsets cannot be disturbed. Rows are
stored per adapter version (``classifications`` is keyed on tweet × version) and tagged with the run id, so
versions can be compared on exactly the replayed tweets (docs/queries.md, Q3).

Progress is recorded in ``replay_runs``; an interrupted run resumes with ``--resume RUN``, skipping the tweets
the run already stored.
"""

from __future__ import annotations

import json
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Iterator

from shared.classifier.cache import ProbabilityCache
from shared.errors import StancestreamError
from shared.streaming.feed import read_feed
from shared.classifier.langid import detect_languages
from shared.messages import Tweet, utcnow
from shared.streaming.pacing import RatePacer
from shared.streaming.processing import InboundMessage, TweetBatchProcessor
from shared.streaming.validation import InvalidMessage, parse_tweet
from shared.store.base import Store, as_utc_datetime
from shared.store.queries.replays import archived_tweets, record_replay_run, replay_run, replayed_tweet_ids
from shared.store.sinks import ClickHouseSink


class ReplayError(StancestreamError):
    pass


@dataclass
class ReplayPlan:
    run_id: str
    adapter_version: str
    adapter_path: str
    files: list[str] = field(default_factory=list)  # empty: the ClickHouse archive
    since: datetime | None = None
    until: datetime | None = None
    langs: list[str] = field(default_factory=list)
    started_at: datetime = field(default_factory=utcnow)

    @property
    def source(self) -> str:
        return json.dumps(self.files) if self.files else "clickhouse:tweets"

    @classmethod
    def new(cls, adapter_version: str, adapter_path: str, files: list[str], since, until, langs) -> "ReplayPlan":
        return cls(f"replay-{utcnow():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:4]}", adapter_version, adapter_path,
                   list(files), since, until, sorted(set(langs)))

    @classmethod
    def load(cls, store: Store, run_id: str) -> "ReplayPlan":
        r = replay_run(store, run_id)
        if r is None:
            raise ReplayError(f"no replay run {run_id!r} (see `stancestream replay status`)")
        files = [] if r["source"] == "clickhouse:tweets" else json.loads(r["source"])
        return cls(run_id, r["adapter_version"], r["adapter_path"], files, as_utc_datetime(r["since"]), as_utc_datetime(r["until"]),
                   list(r["langs"]), as_utc_datetime(r["started_at"]))


def file_tweets(plan: ReplayPlan, invalid: list[str]) -> Iterator[Tweet]:
    """Valid tweets of the archive files in the plan's window; invalid lines are counted in ``invalid``."""
    for path in plan.files:
        for record in read_feed(path):
            try:
                tweet = parse_tweet(record.value)
            except InvalidMessage as exc:
                invalid.append(f"{path}: {exc}")
                continue
            if (plan.since and tweet.created_at < plan.since) or (plan.until and tweet.created_at >= plan.until):
                continue
            yield tweet


@dataclass
class ReplayProgress:
    total: int
    done: int


def run_replay(store: Store, classifier, plan: ReplayPlan, *, batch_size: int = 128, rate: float | None = None,
               progress: bool = True, cache: ProbabilityCache | None = None) -> ReplayProgress:
    """Classify the plan's tweets (skipping those this run already stored); record progress as it goes. A batch
    is written (and the progress recorded) in a second thread while the next one is classified."""
    from tqdm.auto import tqdm

    invalid: list[str] = []
    source = file_tweets(plan, invalid) if plan.files else archived_tweets(store, plan.since, plan.until)
    tweets = _in_languages(source, plan.langs)
    already = replayed_tweet_ids(store, plan.run_id)
    total = len(tweets)
    todo = [t for t in tweets if t.id not in already]
    done = total - len(todo)
    processor = TweetBatchProcessor(classifier, replay_run=plan.run_id, cache=cache)
    sink = ClickHouseSink(store)
    _record(store, plan, total, done, "running", f"{len(invalid)} invalid archive line(s) skipped" if invalid else "")
    pacer = RatePacer(rate)

    def write(result, written: int) -> int:
        sink.write(result.tweets, result.classifications, result.dead_letters)
        _record(store, plan, total, written, "running", "")
        return written

    with tqdm(total=total, initial=done, desc=f"replay {plan.run_id}", unit="tweet", disable=not progress) as bar, \
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="replay-write") as writer:
        pending: Future | None = None

        def settle() -> None:  # wait for the write in flight; only then does it count as done
            nonlocal done, pending
            if pending is not None:
                written, pending = pending.result(), None
                bar.update(written - done)
                done = written

        try:
            for at in range(0, len(todo), batch_size):
                chunk = todo[at: at + batch_size]
                pacer.wait_blocking(at)
                messages = [InboundMessage(t.model_dump_json().encode(), "replay", 0, at + i,
                                           origin=f"replay:{plan.run_id}:{t.id}") for i, t in enumerate(chunk)]
                result = processor.classify(messages)
                settle()
                pending = writer.submit(write, result, done + len(chunk))
            settle()
        except KeyboardInterrupt:
            settle()
            _record(store, plan, total, done, "interrupted", f"resume with: stancestream replay --resume {plan.run_id}")
            raise
        except Exception as exc:
            if pending is not None and pending.exception() is None:  # what was classified before it is stored
                settle()
            _record(store, plan, total, done, "failed", str(exc))
            raise
    _record(store, plan, total, done, "done", f"{len(invalid)} invalid archive line(s) skipped" if invalid else "")
    return ReplayProgress(total, done)


def _in_languages(tweets: Iterator[Tweet], langs: list[str]) -> list[Tweet]:
    """All tweets, or those whose detected language is one of ``langs`` (detected as the worker does)."""
    tweets = list(tweets)
    if not langs:
        return tweets
    detected = detect_languages([t.text for t in tweets])
    return [t for t, lang in zip(tweets, detected) if lang.code in langs]


def _record(store: Store, plan: ReplayPlan, total: int, done: int, status: str, message: str) -> None:
    record_replay_run(store, (plan.run_id, plan.adapter_version, plan.adapter_path, plan.source, plan.since,
                              plan.until, plan.langs, total, done, status, message, plan.started_at, utcnow()))


def resolve_adapter(registry, choice: str | None) -> tuple[str, Path]:
    """``vN`` from the registry, an adapter directory, or (None) the active version."""
    from shared.classifier.adapters import check_adapter

    if choice is None:
        active = registry.active()
        if active is None:
            raise ReplayError("no active adapter in the registry: pass --adapter vN or DIR")
        return active.version, Path(active.path)
    path = Path(choice)
    if path.is_dir():
        return check_adapter(path), path
    record = registry.get(choice)
    return record.version, Path(record.path)
