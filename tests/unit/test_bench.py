"""The bench's arithmetic on the tiny model: the FLOP count, the baseline's answer parsing and its crash probe."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.mark.model
def test_flops_per_tweet_matches_torch_flop_counter(tiny_classifier):
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from services.bench.roofline import flops_per_tweet

    c = tiny_classifier
    sequences = c.encode(["refugees welcome here and everywhere", "close the border now"])
    counted = 0
    for seq in sequences:  # one at a time: no padding in the count
        ids, mask = c.collate([seq])
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            c.label_logits(ids, mask)
        counted += counter.get_total_flops()
    ours = flops_per_tweet(c.model.config, [len(s) for s in sequences]) * len(sequences)
    # torch counts attention over the full square (no causal saving) and the 4-row head: within 15%.
    assert abs(ours - counted) / counted < 0.15, (ours, counted)


@pytest.mark.model
def test_flops_per_tweet_of_packed_passes_count_the_final_layer_at_the_last_tokens(tiny_classifier):
    """Served, a packed pass's final layer computes only keys and values for all but each tweet's last token: the
    roofline counts that, and the counts differ enough here (the final layer is half the tiny model) to tell."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from services.bench.roofline import flops_per_tweet
    from shared.classifier.final_layer import runs_final_layer_at_last_tokens
    from shared.classifier.scoring import packed_passes

    c = tiny_classifier
    assert runs_final_layer_at_last_tokens(c.model)
    sequences = c.encode(["refugees welcome here and everywhere", "close the border now"])
    counted = 0
    for seq in sequences:
        (packed,) = packed_passes([seq], c.pass_tokens)
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            c.packed_logits(packed)
        counted += counter.get_total_flops()
    lengths = [len(s) for s in sequences]
    served = flops_per_tweet(c.model.config, lengths, last_tokens_final_layer=True) * len(sequences)
    every_token = flops_per_tweet(c.model.config, lengths) * len(sequences)
    assert abs(served - counted) / counted < 0.15, (served, counted)
    assert abs(every_token - counted) / counted > 0.3, (every_token, counted)


def test_baseline_parses_the_category_number():
    from services.bench.baseline import _parse

    assert _parse(" 2") == "anti-immigration"
    assert _parse("4.") == "unrelated"
    assert _parse(" none") is None


class _Stack:
    """A stack that sustains every rate up to ``limit``: the search's view of it, and the rates it was offered."""

    def __init__(self, limit: float):
        self.limit, self.offered = limit, []

    async def sustained(self, rate: float) -> bool:
        self.offered.append(rate)
        return rate <= self.limit


@pytest.mark.parametrize("limit, start, ceiling, expected", [
    (9.8, 10.0, 12.0, 10.0 * 0.95 ** 0.5),  # down one step, then the midpoint to the failed step above
    (8.7, 10.0, 12.0, 10.0 * 0.95 ** 3),  # down three steps (8.57); the midpoint (8.80) fails
    (11.0, 10.0, 12.0, 10.0 / 0.95 ** 1.5),  # up one step; the next (11.08) fails, the midpoint (10.80) does not
    (50.0, 10.0, 11.0, 10.0 / 0.95),  # up, stopped by the ceiling: nothing failed, no midpoint
    (0.01, 10.0, 12.0, 0.0),  # nothing sustained
])
def test_capacity_search_refines_between_a_sustained_rate_and_the_failed_step_above(limit, start, ceiling, expected):
    import asyncio

    from services.bench.e2e import search_capacity

    stack = _Stack(limit)
    capacity = asyncio.run(search_capacity(stack.sustained, start, ceiling))
    assert capacity == pytest.approx(expected, rel=1e-9)
    assert capacity <= limit and capacity <= ceiling
    assert all(rate <= ceiling for rate in stack.offered[1:])


def test_lag_slope_tells_a_backlog_that_grows_from_one_caught_between_calls():
    from services.bench.e2e import lag_slope

    def sawtooth(growth: float) -> list[tuple[float, int]]:
        # arrivals at 6/s, a call of 32 delivered every 32/6 s, plus a backlog growing by ``growth`` tweets/s
        return [(t / 2, int((t / 2 * 6) % 32 + growth * t / 2)) for t in range(121)]

    assert abs(lag_slope(sawtooth(0.0), 0, 60)) < 0.15
    assert lag_slope(sawtooth(0.6), 0, 60) == pytest.approx(0.6, abs=0.15)
    assert lag_slope(sawtooth(0.6), 30, 60) == pytest.approx(0.6, abs=0.3)  # only the samples inside the window
    assert lag_slope([(0.0, 5), (1.0, 9)], 0, 60) is None


def _served_window(service_rate: float, phase: float, rate: float = 6.0, call: int = 32, span: float = 60.0):
    """A worker that takes up to ``call`` queued tweets at a time, each call lasting call / service_rate seconds, the
    first starting at ``phase``; tweets offered at ``rate`` for ``span`` seconds. Returns the bench's verdict."""
    from services.bench.e2e import _steadiness

    produced_at = np.arange(0, span, 1 / rate)
    queue: list[int] = []
    taking: list[int] = []
    lag: list[tuple[float, int]] = []
    arrivals: list[float] = []
    busy_until, offered, done = phase, 0, 0
    for step in range(int((span + 60) * 100)):
        t = step / 100
        while offered < len(produced_at) and produced_at[offered] <= t:
            queue.append(offered)
            offered += 1
        if t >= busy_until:
            arrivals += [t] * len(taking)
            done += len(taking)
            taking, queue = queue[:call], queue[call:]
            busy_until = t + call / service_rate if taking else busy_until
        if step % 50 == 0:
            lag.append((t, offered - done))
    return _steadiness(rate, 0.0, span, lag, arrivals, call)


def test_sustained_is_judged_on_the_lag_growth_not_on_whole_calls_counted_in_a_half():
    """Results leave in calls of 32: counting them in a half window misses a stack that keeps up, depending only on
    where the calls fall; the lag's fitted growth tells keeping up (within 5 %) from falling behind at every phase."""
    phases = np.linspace(0, 5, 11)
    keeping_up = [_served_window(6.0, p) for p in phases]
    assert all(w["sustained"] for w in keeping_up)
    assert not all(w["second_half_sustained"] for w in keeping_up)  # the step the lag's fit removes
    assert all(w["sustained"] for w in (_served_window(6.0 * 0.97, p) for p in phases))
    assert not any(w["sustained"] for w in (_served_window(6.0 * 0.9, p) for p in phases))


def test_a_crashing_llama_build_skips_the_baseline_with_its_reason(monkeypatch, tmp_path):
    """A native crash in the probe's child (a real SIGSEGV) becomes BaselineUnavailable, not a dead bench."""
    from services.bench import baseline

    monkeypatch.setattr(baseline, "PROBE", "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n")
    with pytest.raises(baseline.BaselineUnavailable, match=r"crashed \(signal 11\).*AMX"):
        baseline._probe(tmp_path / "model.gguf", 1)

    monkeypatch.setattr(baseline, "PROBE", "import sys\nsys.exit('cannot open the model file')\n")
    with pytest.raises(baseline.BaselineUnavailable, match="exit 1.*cannot open the model file"):
        baseline._probe(tmp_path / "model.gguf", 1)


def test_a_llama_cpp_that_does_not_import_says_why(monkeypatch, tmp_path):
    """Installed but broken (a real package whose own import fails) is told apart from not installed."""
    import sys

    from services.bench import baseline

    package = tmp_path / "llama_cpp"
    package.mkdir()
    (package / "__init__.py").write_text("import stancestream_missing_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "llama_cpp", raising=False)
    with pytest.raises(baseline.BaselineUnavailable,
                       match="installed but does not import: No module named 'stancestream_missing_dependency_xyz'"):
        baseline.run_baseline(["a tweet"], 1, print)

    (package / "__init__.py").unlink()
    package.rmdir()
    monkeypatch.delitem(sys.modules, "llama_cpp", raising=False)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if "site-packages" not in p and p != str(tmp_path)])
    with pytest.raises(baseline.BaselineUnavailable, match="llama-cpp-python is not installed"):
        baseline.run_baseline(["a tweet"], 1, print)
