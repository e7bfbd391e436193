"""The worker's pipeline parts: events queued in arrival order under backlog, bounded by count and by model time,
filled near capacity only and where fuller calls are cheaper; in-flight texts tracked."""

from __future__ import annotations

import asyncio

import pytest

from shared.messages import Tweet
from shared.streaming.worker import BatchLimit, _Backlog, _UnwrittenTexts


def test_backlog_hands_over_queued_events_in_order_up_to_the_most():
    async def scenario():
        backlog = _Backlog(limit=100)
        for event in range(1, 9):
            await backlog.put(event)
        return await backlog.next_batch(most=6), await backlog.next_batch(most=6)

    assert asyncio.run(scenario()) == ([1, 2, 3, 4, 5, 6], [7, 8])


def test_backlog_hands_over_a_lone_event_at_once():
    async def scenario():
        backlog = _Backlog(limit=100)
        waiting = asyncio.create_task(backlog.next_batch(most=4))
        await asyncio.sleep(0.05)
        assert not waiting.done()  # nothing queued yet
        await backlog.put("e")
        return await asyncio.wait_for(waiting, timeout=1)

    assert asyncio.run(scenario()) == ["e"]


def test_backlog_put_waits_while_the_model_is_behind():
    async def scenario():
        backlog = _Backlog(limit=4)
        for event in (1, 2, 3, 4):
            await backlog.put(event)
        blocked = asyncio.create_task(backlog.put(5))
        await asyncio.sleep(0.05)
        assert not blocked.done()
        assert await backlog.next_batch(most=10) == [1, 2, 3, 4]
        await asyncio.wait_for(blocked, timeout=1)
        return await backlog.next_batch(most=10)

    assert asyncio.run(scenario()) == [5]


def test_unwritten_texts_answer_until_the_last_batch_holding_an_id_is_written():
    def tweet(i, text):
        return Tweet.model_validate({"id": i, "text": text, "created_at": "2026-11-01T00:00:00Z"})

    unwritten = _UnwrittenTexts()
    first, second = [tweet("a", "x"), tweet("b", "y")], [tweet("a", "x")]
    unwritten.add(first)
    unwritten.add(second)
    assert set(unwritten.lookup(["a", "b", "c"])) == {"a", "b"}
    unwritten.written(first)
    assert set(unwritten.lookup(["a", "b"])) == {"a"}
    unwritten.written(second)
    assert unwritten.lookup(["a"]) == {}


def test_batch_limit_follows_the_models_measured_rate_between_the_smallest_cap_and_the_most():
    limit = BatchLimit(smallest=32, largest=128, target_s=3.0)
    assert limit.most() == 32  # nothing measured yet: the smallest cap
    limit.observe(60, 10.0)  # 6 tweets/s: 18 tweets in 3 s, but never less than the smallest cap
    assert limit.most() == 32
    for _ in range(20):
        limit.observe(120, 10.0)  # 12 tweets/s: 36 in 3 s
    assert limit.most() == 36
    for _ in range(20):
        limit.observe(100, 0.5)  # 200 tweets/s (copies, a GPU): capped
    assert limit.most() == 128
    limit.observe(0, 0.0)  # an empty or instant batch says nothing about the rate
    assert limit.most() == 128


def test_batch_limit_fills_calls_only_while_tweets_arrive_near_the_models_rate():
    now = [0.0]
    limit = BatchLimit(smallest=32, largest=128, target_s=3.0, fill_size=64, fill_s=0.5, clock=lambda: now[0])

    def arrive(per_s: float, seconds: int = 6) -> None:
        for _ in range(seconds):
            now[0] += 1.0
            limit.arrived(round(per_s))

    arrive(45)
    assert limit.fill(queued=0) is None  # the model's rate not measured yet
    limit.observe(10, 0.5)  # 20 tweets/s, but on a small call: not the model's rate when full
    assert limit.fill(queued=0) is None
    limit.observe(100, 2.0)  # 50 tweets/s on a full call
    assert limit.fill(queued=10) == (64, 0.5)  # 45/s ≥ 0.6 × 50/s: wait for 64, at most 0.5 s
    assert limit.fill(queued=64) is None  # already there
    arrive(20)  # 20/s < 0.6 × 50/s: a light load never waits
    assert limit.fill(queued=0) is None
    arrive(35, seconds=3)  # the last 5 s: 2 s at 20/s and 3 s at 35/s = 29/s, just under 30
    assert limit.fill(queued=0) is None
    arrive(35, seconds=1)
    assert limit.fill(queued=0) == (64, 0.5)
    arrive(15)
    for _ in range(20):
        limit.observe(2, 0.1)  # a light load's calls of 2 run at 20/s: 15/s is still light against 50
    assert limit.fill(queued=0) is None
    arrive(35)
    for _ in range(20):
        limit.observe(30, 2.0)  # the model slows to 15 tweets/s: `most` 45 bounds the fill below 64
    assert limit.fill(queued=0) == (45, 0.5)
    later = BatchLimit(smallest=32, largest=128, target_s=3.0, fill_size=64, fill_s=0.5, fill_load=0.8,
                       clock=lambda: now[0])
    later.observe(100, 2.0)
    arrive(35)  # 35/s ≥ 0.6 × 50/s but < 0.8 × 50/s: the default fills, a later threshold does not yet
    later.arrived(35 * 5)
    assert limit.fill(queued=0) is not None and later.fill(queued=0) is None
    later.arrived(6 * 5)  # 41/s over the last 5 s ≥ 40
    assert later.fill(queued=0) == (64, 0.5)
    off = BatchLimit(smallest=32, largest=128, target_s=3.0, fill_size=64, fill_s=0.0, clock=lambda: now[0])
    off.observe(100, 2.0)
    off.arrived(10_000)
    assert off.fill(queued=0) is None


def test_batch_limit_fills_a_feed_that_never_came_in_a_burst_once_small_calls_keep_the_model_busy():
    now = [0.0]
    limit = BatchLimit(smallest=32, largest=128, target_s=3.0, fill_size=64, fill_s=0.5, clock=lambda: now[0])

    def calls(tweets: int, seconds: float, idle_s: float, n: int = 20) -> None:
        for _ in range(n):
            now[0] += seconds
            limit.arrived(tweets)
            limit.observe(tweets, seconds)
            now[0] += idle_s

    calls(1, 0.2, idle_s=0.8)  # a light load: one tweet a second, the model busy a fifth of the time
    assert limit.full_rate is None and limit.fill(queued=0) is None
    calls(3, 0.5, idle_s=0.0)  # 6 tweets/s in calls of 3, back to back: saturated, yet never a full call
    assert limit.full_rate == pytest.approx(6.0, rel=0.01)  # their rate stands in
    assert limit.fill(queued=3) == (32, 0.5)  # wait for fuller calls (most() is 32 at 6/s over 3 s: 18 → 32)
    limit.observe(64, 4.0)  # a full call, timed: its rate takes over from the stand-in
    assert limit.full_rate == pytest.approx(0.3 * 16 + 0.7 * 6.0, rel=0.01)
    off = BatchLimit(smallest=32, largest=128, target_s=3.0, fill_size=64, fill_s=0.0, clock=lambda: now[0])
    for _ in range(20):
        now[0] += 0.5
        off.observe(3, 0.5)
    assert off.full_rate is None  # no fill, nothing to stand in for


def test_batch_limit_with_a_gain_fills_only_where_fuller_calls_are_cheaper_per_tweet():
    now = [0.0]

    def near_capacity(per_call_s: float, gain: float = 1.1) -> BatchLimit:
        limit = BatchLimit(smallest=8, largest=128, target_s=3.0, fill_size=64, fill_s=0.5, fill_gain=gain,
                           clock=lambda: now[0])
        limit.observe(100, 2.0)  # full calls: 50 tweets/s
        now[0] += 1.0
        limit.arrived(45 * 5)  # 45/s over the last 5 s: near capacity
        assert limit.fill(queued=0) == (64, 0.5)  # nothing known yet of the smaller calls: fill
        for _ in range(10):
            limit.observe(16, 16 * per_call_s)  # the calls a saturated worker makes without the fill
        return limit

    assert near_capacity(1 / 40).fill(queued=0) == (64, 0.5)  # 16 at 40/s, full at 50/s: 1.25x, worth the wait
    flat = near_capacity(1 / 48)  # 16 at 48/s: 1.04x, no model time saved by waiting
    assert flat.fill(queued=0) is None
    assert flat.short_rate == pytest.approx(48)
    assert near_capacity(1 / 48, gain=0.0).fill(queued=0) == (64, 0.5)  # the default: fill wherever near capacity
    light = BatchLimit(smallest=8, largest=128, target_s=3.0, fill_size=64, fill_s=0.5, fill_gain=1.1,
                       clock=lambda: now[0])
    light.observe(100, 2.0)
    light.arrived(5)  # 1/s: a light load's slow small calls are not the calls the fill would replace
    for _ in range(10):
        light.observe(2, 0.2)  # 10 tweets/s
    assert light.short_rate is None
    light.arrived(45 * 5)
    assert light.fill(queued=0) == (light.most(), 0.5)  # near capacity now, and nothing says the fill won't pay


def test_backlog_fill_returns_once_enough_queued_or_when_the_wait_is_over():
    async def scenario():
        backlog = _Backlog(limit=100)
        filling = asyncio.create_task(backlog.fill(5, timeout=5.0))
        for event in (1, 2, 3):
            await backlog.put(event)
        await asyncio.sleep(0.05)
        assert not filling.done()
        for event in (4, 5):
            await backlog.put(event)
        await asyncio.wait_for(filling, timeout=1)  # well before its 5 s
        started = asyncio.get_running_loop().time()
        await backlog.fill(50, timeout=0.2)  # never comes: returns at the timeout, without raising
        waited = asyncio.get_running_loop().time() - started
        return waited, backlog.size, await backlog.next_batch(most=10)

    waited, size, batch = asyncio.run(scenario())
    assert 0.15 < waited < 1.0
    assert size == 5 and batch == [1, 2, 3, 4, 5]
