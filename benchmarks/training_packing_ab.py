"""A/B of training steps, one process, alternating rounds: each batch padded to its longest tweet (how ``train``
ran until 2026-12-05) against packed end to end into one pass (``shared.training.loop._packed_logits``), on the
shipped recipe's shape — LoRA r16 on all linear layers of the top 6 decoder layers, from the frozen layers' cached
output — with random batches of 16 train.csv tweets, forward and backward (no optimizer step, so both sides see
the same weights).

    .venv/bin/python benchmarks/training_packing_ab.py --n 320 --rounds 3

Prints tweets/s per side (median of the rounds), the ratio, and the largest logit difference between the sides.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TRAIN = Path("../shared/datasets/immigration-tweets/train.csv")


def padded_logits_from_layer(model, streams: list, start: int, token_ids: list[int]):
    """The old side: the streams right-padded into one batch and run through layers ``start``… with a padding
    mask, read at each tweet's last real token."""
    import torch

    from shared.classifier.scoring import _logits_at_last_token, layers_from

    width = max(s.shape[0] for s in streams)
    hidden = torch.zeros((len(streams), width, streams[0].shape[1]), dtype=streams[0].dtype)
    mask = torch.zeros((len(streams), width), dtype=torch.long)
    for i, s in enumerate(streams):
        hidden[i, : s.shape[0]] = s
        mask[i, : s.shape[0]] = 1
    final = layers_from(model, hidden, start, torch.arange(width).unsqueeze(0), attention_mask=mask)
    return _logits_at_last_token(model, final, mask, token_ids)


def main() -> None:
    import torch
    from peft import LoraConfig, get_peft_model

    from shared.classifier.model import StanceClassifier
    from shared.settings import Settings
    from shared.training.loop import _hidden_cache, _packed_logits

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=320, help="train.csv tweets (a multiple of 16)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--layers", type=int, default=6, help="top decoder layers adapted (the shipped recipe: 6)")
    args = parser.parse_args()

    classifier = StanceClassifier.load(Settings())
    n_layers = classifier.model.config.num_hidden_layers
    start = n_layers - args.layers
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, bias="none",
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                      layers_to_transform=list(range(start, n_layers)), layers_pattern="layers")
    model = classifier.model = get_peft_model(classifier.model, lora)
    model.train()
    with TRAIN.open(newline="", encoding="utf-8") as handle:
        texts = [row["text"] for row in csv.DictReader(handle)][: args.n]
    streams = _hidden_cache(classifier, classifier.encode(texts), start, True, {})
    batches = [list(b) for b in np.random.default_rng(0).permutation(len(texts)).reshape(-1, 16)]
    padding = sum(max(streams[i].shape[0] for i in b) * len(b) for b in batches)
    print(f"{len(texts)} tweets, {sum(s.shape[0] for s in streams) / padding:.2f} of the padded side's tokens real",
          flush=True)
    labels = torch.zeros(16, dtype=torch.long)
    sides = {
        "padded": lambda b: padded_logits_from_layer(model, [streams[i] for i in b], start,
                                                     classifier.label_token_ids),
        "packed": lambda b: _packed_logits(classifier, [streams[i] for i in b], start, model, None),
    }
    with torch.no_grad():
        difference = max(float((sides["packed"](b) - sides["padded"](b)).abs().max()) for b in batches[:4])
    rates: dict[str, list[float]] = {side: [] for side in sides}
    for round_no in range(args.rounds):
        for side in (list(sides) if round_no % 2 == 0 else list(sides)[::-1]):
            started = time.perf_counter()
            for b in batches:
                model.zero_grad(set_to_none=True)
                torch.nn.functional.cross_entropy(sides[side](b), labels).backward()
            rates[side].append(len(texts) / (time.perf_counter() - started))
        print(f"round {round_no + 1}: " + ", ".join(f"{s} {v[-1]:.2f}" for s, v in rates.items()), flush=True)
    padded, packed = statistics.median(rates["padded"]), statistics.median(rates["packed"])
    print(f"max |Δ logit| {difference:.1e}; training tweets/s (forward + backward, medians of {args.rounds}): "
          f"padded {padded:.2f}, packed {packed:.2f} = {packed / padded:.3f}x")


if __name__ == "__main__":
    main()
