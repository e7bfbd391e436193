"""A/B of torch.compile (inductor, dynamic shapes) on the decoder's MLPs and RMS norms against eager, one process,
alternating rounds, on test.csv tweets arriving ``--micro`` at a time. Tried for issue 15 (the elementwise work
between the matrix products is ≈ 15 % of a pass on CPU); not adopted (docs/benchmarks.md).

    .venv/bin/python benchmarks/compile_ab.py --n 160 --rounds 2 [--micro 8,16,32,64,160]
"""

from __future__ import annotations

import time

from ab import ab_arguments, alternate, print_comparison, served_classifier_and_tweets

NORMS = ("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm", "post_feedforward_layernorm")


def main() -> None:
    import torch

    from shared.classifier.scoring import unwrap

    args, micro = ab_arguments(__doc__, n=160, rounds=2, micro="8,16,32,64,160")
    classifier, texts = served_classifier_and_tweets(args.n)
    _, backbone = unwrap(classifier.model)
    modules = [layer.mlp for layer in backbone.layers] + [getattr(layer, n) for layer in backbone.layers for n in NORMS]
    tables = {"eager": {id(m): m.forward for m in modules},
              "compiled": {id(m): torch.compile(m.forward, dynamic=True) for m in modules}}

    def use(side: str):
        def switch() -> None:
            for m in modules:
                m.forward = tables[side][id(m)]
        return switch

    use("compiled")()
    started = time.perf_counter()
    classifier.predict_proba(texts[:40])
    classifier.predict_proba(texts[:5])
    print(f"compile warm-up {time.perf_counter() - started:.1f} s", flush=True)
    rates, probs = alternate(classifier, texts, {"eager": use("eager"), "compiled": use("compiled")}, micro,
                             args.rounds)
    print_comparison(rates, probs, "eager", "compiled", micro)


if __name__ == "__main__":
    main()
