"""The consumer's fetch wait: short while caught up, doubled while a backlog trickles in, held while it drains."""

from __future__ import annotations

from shared.streaming.fetch_wait import PLENTY, FetchWait


def test_the_wait_doubles_while_polls_bring_little_from_a_partition_that_holds_more():
    wait = FetchWait(100, cap_ms=1_000)
    assert [wait.observe(received=0, behind=True) for _ in range(3)] == [200, 400, 800]
    assert [wait.observe(received=PLENTY - 1, behind=True) for _ in range(2)] == [1_000, 1_000]


def test_a_raised_wait_holds_while_the_backlog_drains_and_drops_back_once_caught_up():
    wait = FetchWait(100, cap_ms=1_000)
    wait.observe(received=0, behind=True)
    wait.observe(received=3, behind=True)
    assert [wait.observe(received=PLENTY, behind=True) for _ in range(3)] == [400, 400, 400]
    assert wait.observe(received=PLENTY, behind=False) == 100


def test_an_idle_consumer_keeps_the_short_wait():
    wait = FetchWait(100)
    assert {wait.observe(received=0, behind=False) for _ in range(10)} == {100}
