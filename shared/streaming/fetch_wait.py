"""How long a consumer's fetch may wait at the broker: short while caught up, longer while a backlog trickles in.

Tansu answers a fetch only when its wait is over if no data has arrived, so the worker waits briefly (100 ms by
default) to keep light-load latency low. But Tansu's on-disk engine lists every batch of a partition on each fetch
and then reads batches only until the wait is over (docs/reliability.md): with a short fixed wait, a backlog of
thousands of single-tweet batches came a few records per fetch, or not at all. So while the broker holds more than
the consumer has read and a poll brings fewer than ``PLENTY`` records, the wait doubles, up to ``CAP_MS``; it holds
while the backlog drains (a fetch that finds data returns as soon as it has read it, however long it may wait) and
drops back once the consumer has caught up. In memory a fetch reads everything there is at once, so a poll leaves
the consumer behind only when it brought a fetch's whole size: the wait stays short (traced, docs/benchmarks.md).
"""

from __future__ import annotations

PLENTY = 100  # records: fewer, from a partition that holds more, means the fetch spent its wait listing
CAP_MS = 4_000  # under half of the worker's 10 s session timeout; a 10,000-batch backlog drained reaching it


class FetchWait:
    def __init__(self, base_ms: int, cap_ms: int = CAP_MS):
        self.base_ms = base_ms
        self.cap_ms = max(cap_ms, base_ms)
        self.ms = base_ms

    def observe(self, received: int, behind: bool) -> int:
        """After a poll: how many records it returned, and whether the broker holds more than has been read.
        The wait for the next fetches."""
        if not behind:
            self.ms = self.base_ms
        elif received < PLENTY:
            self.ms = min(self.cap_ms, self.ms * 2)
        return self.ms


def behind(consumer, partitions) -> bool:
    """Whether the broker's last answer showed more in any of ``partitions`` than an aiokafka ``consumer`` has
    read."""
    subscription = consumer._subscription.subscription
    assignment = subscription.assignment if subscription is not None else None
    if assignment is None:
        return False
    for tp in partitions:
        state = assignment.state_value(tp)
        if state is not None and state.has_valid_position and state.highwater is not None \
                and state.highwater > state.position:
            return True
    return False
