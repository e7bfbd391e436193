"""The worker's Prometheus metrics: the consumer-lag gauge (from what the consumer already knows) and the labelled
series that exist at 0 from the start, so that an alert on increase() sees their first increment."""

from __future__ import annotations

from collections import defaultdict

from aiokafka import TopicPartition

from shared.streaming.telemetry import Telemetry, consumer_lag, partition_lag


def _lag(telemetry: Telemetry, topic: str, partition: int) -> float | None:
    return telemetry.registry.get_sample_value("stancestream_consumer_lag",
                                               {"topic": topic, "partition": str(partition)})


def test_lag_is_the_fetch_highwater_minus_the_committed_offset():
    highwaters = {("tweets.raw", 0): 120, ("tweets.raw", 1): 40, ("tweets.raw", 2): None, ("tweets.labels", 0): 7}
    committed = {("tweets.raw", 0): 100, ("tweets.raw", 1): None, ("tweets.raw", 2): 5, ("tweets.labels", 0): 7}
    # 1: nothing committed yet, so all 40 are behind; 2: never fetched, so no highwater and no lag to report
    assert consumer_lag(highwaters, committed) == {("tweets.raw", 0): 20, ("tweets.raw", 1): 40,
                                                   ("tweets.labels", 0): 0}
    # a commit the fetched highwater has not caught up with yet is no negative lag
    assert consumer_lag({("t", 0): 10}, {("t", 0): 12}) == {("t", 0): 0}


class _FaustConsumer:
    """What partition_lag reads of Faust's consumer: the assignment, aiokafka's highwaters, Faust's commits."""

    def __init__(self, highwaters: dict[TopicPartition, int | None], committed: dict[TopicPartition, int | None],
                 revoked: set[TopicPartition] = frozenset()):
        self.highwaters, self.revoked = highwaters, revoked
        self._committed_offset = defaultdict(lambda: None, committed)

    def assignment(self) -> set[TopicPartition]:
        return set(self.highwaters)

    def highwater(self, tp: TopicPartition) -> int | None:
        assert tp not in self.revoked, "Partition is not assigned"  # what aiokafka does
        return self.highwaters[tp]


def test_partition_lag_reads_the_consumer_and_names_logical_topics():
    raw0, raw1, labels0 = (TopicPartition("prod.tweets.raw", 0), TopicPartition("prod.tweets.raw", 1),
                           TopicPartition("prod.tweets.labels", 0))
    leader = TopicPartition("stancestream-worker-__assignor-__leader", 0)  # Faust's own: not ours to report
    consumer = _FaustConsumer({raw0: 50, raw1: 9, labels0: None, leader: 3}, {raw0: 30}, revoked={raw1})
    topics = {"prod.tweets.raw": "tweets.raw", "prod.tweets.labels": "tweets.labels"}
    assert partition_lag(consumer, topics) == {("tweets.raw", 0): 20}
    assert dict(consumer._committed_offset) == {raw0: 30}  # reading did not add entries to Faust's defaultdict


def test_lag_gauge_follows_the_assignment():
    telemetry = Telemetry()
    telemetry.lag({("tweets.raw", 0): 20, ("tweets.raw", 1): 3})
    assert _lag(telemetry, "tweets.raw", 0) == 20 and _lag(telemetry, "tweets.raw", 1) == 3
    # after a rebalance partition 1 belongs to another worker: reporting it here too would count it twice
    telemetry.lag({("tweets.raw", 0): 0, ("tweets.labels", 0): 4})
    assert _lag(telemetry, "tweets.raw", 0) == 0 and _lag(telemetry, "tweets.labels", 0) == 4
    assert _lag(telemetry, "tweets.raw", 1) is None
    telemetry.lag({})
    assert _lag(telemetry, "tweets.raw", 0) is None and _lag(telemetry, "tweets.labels", 0) is None


def test_labelled_counters_that_alerts_watch_exist_at_zero_from_the_start():
    registry = Telemetry().registry
    for decision in ("promoted", "rejected", "skipped", "failed"):
        assert registry.get_sample_value("stancestream_training_runs_total", {"decision": decision}) == 0
    for topic in ("tweets.raw", "tweets.labels"):
        assert registry.get_sample_value("stancestream_dead_letters_total", {"topic": topic}) == 0
    for outcome in ("switched", "refused"):
        assert registry.get_sample_value("stancestream_adapter_switches_total", {"outcome": outcome}) == 0
