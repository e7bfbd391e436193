"""Prometheus metrics of a worker or trainer process, served on ``metrics_host:metrics_port`` (loopback by default).

Each process has its own registry (the embedded ``run`` serves the worker's and the trainer's metrics on one
endpoint). A port already taken is reported and the process goes on without an endpoint: metrics must never
stop classification.
"""

from __future__ import annotations

import logging
from typing import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from shared.settings import Settings
from shared.streaming.topics import Topics

log = logging.getLogger(__name__)


class Telemetry:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.tweets = Counter("stancestream_tweets", "Tweets classified and stored", registry=r)
        self.batches = Counter("stancestream_batches", "Micro-batches processed", registry=r)
        self.dead_letters = Counter("stancestream_dead_letters", "Messages refused to the dead-letter topic",
                                    ["topic"], registry=r)
        self.conflicting_ids = Counter("stancestream_conflicting_ids",
                                       "Tweets dead-lettered because their id was already taken by another text",
                                       registry=r)
        self.cache_hits = Counter("stancestream_cache_hits",
                                  "Tweets classified by reusing the probabilities of an identical text (retweets, "
                                  "copies); the hit rate is its rate over stancestream_tweets_total's", registry=r)
        self.batch_size = Histogram("stancestream_batch_size", "Tweets per model call (takes merged under backlog)",
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512), registry=r)
        self.labels = Counter("stancestream_labels", "Human labels stored", registry=r)
        self.batch_seconds = Histogram("stancestream_batch_seconds",
                                       "From the start of a micro-batch's classification to its write and produce",
                                       buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32), registry=r)
        self.tweet_latency = Histogram("stancestream_tweet_latency_seconds",
                                       "From a tweet's arrival in Kafka to its row being written",
                                       buckets=(0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64), registry=r)
        self.assigned_partitions = Gauge("stancestream_assigned_partitions",
                                         "Partitions of tweets.raw this worker consumes since the last rebalance",
                                         registry=r)
        self.adapter = Gauge("stancestream_active_adapter", "1 for the adapter version this process serves",
                             ["version"], registry=r)
        self.adapter_switches = Counter("stancestream_adapter_switches", "Hot-swaps", ["outcome"], registry=r)
        self.training_runs = Counter("stancestream_training_runs", "Trainer cycles by decision", ["decision"],
                                     registry=r)
        self.training_seconds = Gauge("stancestream_last_training_seconds", "Duration of the last trainer cycle",
                                      registry=r)
        self.consumer_lag = Gauge("stancestream_consumer_lag",
                                  "Messages of a partition this worker holds that are not committed yet: the highwater "
                                  "of the partition's last fetch minus the group's committed offset",
                                  ["topic", "partition"], registry=r)
        self.drift_value = Gauge("stancestream_drift",
                                 "The trainer's last drift judgement of a language and measure (label_psi, "
                                 "confidence_js, low_confidence_rise; lang all: unseen_language_share)",
                                 ["lang", "measure"], registry=r)
        self.drift_alarm = Gauge("stancestream_drift_alarm", "1 while the drift alarm of a language and measure is on",
                                 ["lang", "measure"], registry=r)
        # Labelled series exist at 0 from the start: an alert on increase() cannot see a series' first increment.
        for topic in (Topics.raw, Topics.labels):
            self.dead_letters.labels(topic.value)
        for outcome in ("switched", "refused"):
            self.adapter_switches.labels(outcome)
        for decision in ("promoted", "rejected", "skipped", "failed"):
            self.training_runs.labels(decision)
        self.address: str | None = None
        self._server = None
        self._served_version: str | None = None
        self._lagging: set[tuple[str, int]] = set()
        self._judged: set[tuple[str, str]] = set()

    def serve(self, settings: Settings) -> "Telemetry":
        if settings.metrics_port is None:
            return self
        try:
            server, _ = start_http_server(settings.metrics_port, settings.metrics_host, registry=self.registry)
            self._server = server
        except OSError as exc:
            log.warning("no Prometheus endpoint: %s:%s is not available (%s)", settings.metrics_host,
                        settings.metrics_port, exc)
            return self
        self.address = f"http://{settings.metrics_host}:{server.server_port}/metrics"
        log.info("Prometheus metrics on %s", self.address)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def serving(self, version: str) -> None:
        if self._served_version is not None:
            self.adapter.remove(self._served_version)
        self.adapter.labels(version).set(1)
        self._served_version = version

    def lag(self, lags: Mapping[tuple[str, int], int]) -> None:
        """Set the lag of every (topic, partition) this process holds now and drop the ones it no longer holds:
        after a rebalance their new owner reports them, and a stale value would count twice in a sum."""
        for topic, partition in self._lagging - lags.keys():
            self.consumer_lag.remove(topic, str(partition))
        for (topic, partition), lag in lags.items():
            self.consumer_lag.labels(topic, str(partition)).set(lag)
        self._lagging = set(lags)

    def drift(self, rows: Iterable) -> None:
        """The drift check's judgements (``DriftRow``: lang, measure, value, alarm). A (language, measure) that was
        not judged this time is dropped: a stale value would keep an alert on that no evidence supports."""
        judged = {(row.lang, row.measure): row for row in rows if row.value is not None}
        for lang, measure in self._judged - judged.keys():
            self.drift_value.remove(lang, measure)
            self.drift_alarm.remove(lang, measure)
        for (lang, measure), row in judged.items():
            self.drift_value.labels(lang, measure).set(row.value)
            self.drift_alarm.labels(lang, measure).set(1 if row.alarm else 0)
        self._judged = set(judged)


def consumer_lag(highwaters: Mapping[tuple[str, int], int | None],
                 committed: Mapping[tuple[str, int], int | None]) -> dict[tuple[str, int], int]:
    """Lag per (topic, partition): the highwater (the offset the next produced message gets, as the partition's last
    fetch response gave it) minus the next offset the group will process (its committed offset; none yet: 0).
    A partition not fetched yet has no highwater and no lag."""
    return {tp: max(0, highwater - (committed.get(tp) or 0))
            for tp, highwater in highwaters.items() if highwater is not None}


def partition_lag(consumer, topics: dict[str, str]) -> dict[tuple[str, int], int]:
    """The lag of each partition of ``topics`` (physical name -> name to report) assigned to this Faust
    ``consumer``, keyed by (reported name, partition); Faust's own topics (its leader topic) are left out.

    Both numbers are ones the consumer already holds, no broker request: the highwater that aiokafka keeps from
    each fetch response (the broker's ListOffsets is not used: the embedded Tansu answers it wrongly) and the
    offset Faust last committed for the group (it keeps ``None`` for 0 and for "nothing committed yet"). A
    partition not fetched yet has no highwater and is not reported."""
    highwaters: dict[tuple[str, int], int | None] = {}
    committed: dict[tuple[str, int], int | None] = {}
    for tp in consumer.assignment():
        if tp.topic not in topics:
            continue
        key = (topics[tp.topic], tp.partition)
        try:
            highwaters[key] = consumer.highwater(tp)
        except AssertionError:  # revoked since assignment() answered
            continue
        committed[key] = consumer._committed_offset.get(tp)
    return consumer_lag(highwaters, committed)
