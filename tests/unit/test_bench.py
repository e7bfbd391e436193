"""The bench's arithmetic on the tiny model: the FLOP count and the baseline's answer parsing."""

from __future__ import annotations

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


def test_baseline_parses_the_category_number():
    from services.bench.baseline import _parse

    assert _parse(" 2") == "anti-immigration"
    assert _parse("4.") == "unrelated"
    assert _parse(" none") is None
