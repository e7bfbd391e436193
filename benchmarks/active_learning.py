"""What the label queue's uncertainty ranking is worth: a simulated labeling campaign on train.csv, uncertainty
versus random selection at equal label budgets.

    .venv/bin/python benchmarks/active_learning.py [--rounds 6] [--per-round 100] [--seeds 5]

The recipe, cheap enough for 2 cores: the base model (no adapter, so nothing it learned from train.csv leaks in)
reads every tweet once in the serving prompt, and its final hidden state at the last token — what the label head
reads — is kept (cached under out/). A campaign then costs seconds: a stratified seed of ``--per-round`` labeled
tweets, then ``--rounds`` rounds; each round fits a multinomial logistic regression (L2, LBFGS) on the labeled
features, scores the unlabeled pool and labels the next ``--per-round`` tweets, chosen

- **random**: uniformly from the pool;
- **uncertainty**: the label queue itself (``shared.labeling.queue.build_queue``, ``--by margin``): lowest margin
  between the top two probabilities, never a copy of a labeled or queued text.

Both strategies label the same number of tweets per language each round (the round's budget split by the
languages' shares of the pool), as `label-queue --n` does per language.

Dev macro-F1 (a stratified 15% of train.csv, never labeled) is measured after each round; ``--seeds`` campaigns
per strategy give a mean and sd. test.csv is not touched.

Rule, written before the run: uncertainty is worth recommending if its mean dev macro-F1 over the rounds after the
seed is above random's by more than the larger of the two strategies' mean sd across seeds.
Output: docs/active-learning.json and docs/active-learning.png.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np

from shared.labeling.queue import PoolTweet, build_queue
from shared.messages import CATEGORIES
from shared.settings import Settings
from shared.training.data import read_labeled, stratified_split
from shared.training.metrics import to_indices

TRAIN = Path("../shared/datasets/immigration-tweets/train.csv")


def features(texts: list[str], settings: Settings) -> np.ndarray:
    """The base model's final hidden state at each prompt's last token (cached by model and texts)."""
    import hashlib

    import torch
    from tqdm import tqdm

    from shared.classifier.model import StanceClassifier
    from shared.classifier.scoring import length_buckets, unwrap

    classifier = StanceClassifier.load(settings, adapter=None)
    key = hashlib.sha256((classifier.model_id + "\n".join(texts)).encode()).hexdigest()[:16]
    cache = Path("out") / f"al-features-{key}.npy"
    if cache.exists():
        return np.load(cache)
    _, backbone = unwrap(classifier.model)
    sequences = classifier.encode(texts)
    out = None
    with torch.inference_mode(), tqdm(total=len(texts), desc="features", unit="tweet") as bar:
        for idx in length_buckets([len(s) for s in sequences], classifier.batch_size):
            ids, mask = classifier.collate([sequences[i] for i in idx])
            hidden = backbone(input_ids=ids, attention_mask=mask).last_hidden_state
            last = hidden[torch.arange(len(idx)), mask.sum(dim=1) - 1].float().cpu().numpy()
            if out is None:
                out = np.zeros((len(texts), last.shape[1]), dtype=np.float32)
            out[idx] = last
            bar.update(len(idx))
    cache.parent.mkdir(exist_ok=True)
    np.save(cache, out)
    return out


def fit(x: np.ndarray, y: np.ndarray, k: int, l2: float = 1e-2):
    import torch

    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    w = torch.zeros(x.shape[1], k, requires_grad=True)
    b = torch.zeros(k, requires_grad=True)
    optimizer = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(xt @ w + b, yt) + l2 * (w ** 2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return lambda z: torch.softmax(torch.from_numpy(z) @ w + b, dim=1).detach().numpy()


def macro_f1(y: np.ndarray, predicted: np.ndarray, k: int) -> float:
    scores = []
    for c in range(k):
        tp = np.sum((predicted == c) & (y == c))
        denominator = np.sum(predicted == c) + np.sum(y == c)
        scores.append(2 * tp / denominator if denominator else 0.0)
    return float(np.mean(scores))


def quotas(langs: list[str], pool: np.ndarray, budget: int) -> dict[str, int]:
    """The round's budget split by each language's share of the pool (largest remainder)."""
    counts = Counter(langs[i] for i in pool)
    exact = {lang: budget * n / len(pool) for lang, n in counts.items()}
    out = {lang: int(v) for lang, v in exact.items()}
    for lang in sorted(exact, key=lambda code: exact[code] - out[code], reverse=True)[: budget - sum(out.values())]:
        out[lang] += 1
    return out


def campaign(strategy: str, x: np.ndarray, y: np.ndarray, examples: list, pool: np.ndarray, dev: np.ndarray,
             seed_idx: np.ndarray, rounds: int, per_round: int, rng: np.random.Generator) -> list[float]:
    k = len(CATEGORIES)
    langs = [ex.lang for ex in examples]
    labeled = [int(i) for i in seed_idx]
    curve = []
    for round_ in range(rounds + 1):
        predict = fit(x[labeled], y[labeled], k)
        curve.append(macro_f1(y[dev], predict(x[dev]).argmax(axis=1), k))
        if round_ == rounds:
            break
        taken = set(labeled)
        remaining = np.array([i for i in pool if i not in taken])
        probs = predict(x[remaining])
        chosen: list[int] = []
        for lang, quota in quotas(langs, remaining, per_round).items():
            in_lang = [j for j, i in enumerate(remaining) if langs[i] == lang]
            if strategy == "random":
                chosen += [int(remaining[j]) for j in rng.choice(in_lang, min(quota, len(in_lang)), replace=False)]
                continue
            tweets = [PoolTweet(examples[i].id, lang, examples[i].text, tuple(probs[j].tolist()))
                      for j, i in ((j, remaining[j]) for j in in_lang)]
            tweets += [PoolTweet(examples[i].id, lang, examples[i].text, (0.25,) * 4, labeled=True)
                       for i in labeled if langs[i] == lang]
            queue = build_queue(lang, tweets, quota, by="margin")
            index_of = {examples[i].id: int(i) for i in remaining}
            chosen += [index_of[q.tweet.tweet_id] for q in queue.queued]
        labeled.extend(chosen)
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--per-round", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    started = time.perf_counter()
    examples = read_labeled([TRAIN])
    x = features([ex.text for ex in examples], Settings())
    feature_s = time.perf_counter() - started
    x = (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-6)
    y = to_indices([ex.label for ex in examples])
    # train.csv's ids are not unique (spreadsheet-rounded): tweets are known by their position here
    examples = [replace(ex, id=str(i)) for i, ex in enumerate(examples)]
    index_of = {ex.id: i for i, ex in enumerate(examples)}
    train, dev_examples = stratified_split(examples, 0.15, seed=0)
    dev = np.array([index_of[ex.id] for ex in dev_examples])
    results: dict = {"rounds": args.rounds, "per_round": args.per_round, "seeds": args.seeds,
                     "dev": len(dev), "pool": len(train)}
    for strategy in ("random", "uncertainty"):
        curves = []
        for seed in range(args.seeds):
            _, seed_examples = stratified_split(train, args.per_round / len(train), seed=100 + seed)
            seed_idx = np.array([index_of[ex.id] for ex in seed_examples])
            pool = np.array([index_of[ex.id] for ex in train])
            curves.append(campaign(strategy, x, y, examples, pool, dev, seed_idx, args.rounds, args.per_round,
                                   np.random.default_rng(seed)))
        curves = np.array(curves)
        results[strategy] = {"labels": [len(seed_idx) + r * args.per_round for r in range(args.rounds + 1)],
                             "per_seed": curves.round(4).tolist(),
                             "mean": curves.mean(axis=0).round(4).tolist(),
                             "sd": curves.std(axis=0).round(4).tolist()}
        print(strategy, results[strategy])
    after_seed = {s: float(np.mean(results[s]["mean"][1:])) for s in ("random", "uncertainty")}
    noise = max(float(np.mean(results[s]["sd"][1:])) for s in ("random", "uncertainty"))
    results["decision"] = {"mean_after_seed": after_seed, "noise": round(noise, 4),
                           "uncertainty_recommended": after_seed["uncertainty"] - after_seed["random"] > noise}
    results["cost_s"] = {"features": round(feature_s, 1), "campaigns": round(time.perf_counter() - started -
                                                                           feature_s, 1)}
    print(json.dumps(results["decision"]), results["cost_s"])
    Path("docs/active-learning.json").write_text(json.dumps(results, indent=1) + "\n")
    plot(results, Path("docs/active-learning.png"))


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for strategy, colour in (("random", "tab:grey"), ("uncertainty", "tab:blue")):
        r = results[strategy]
        mean, sd = np.array(r["mean"]), np.array(r["sd"])
        ax.plot(r["labels"], mean, marker="o", color=colour, label=strategy)
        ax.fill_between(r["labels"], mean - sd, mean + sd, color=colour, alpha=0.2)
    ax.set_xlabel("labeled tweets")
    ax.set_ylabel("dev macro-F1")
    ax.set_title(f"Label queue: uncertainty vs random ({results['seeds']} campaigns each)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
