"""A/B of attention in packed passes, one process, alternating rounds: each tweet's slice of a row through causal
SDPA on its own (``shared.classifier.attention``, served since 2026-12-02) against SDPA over the whole row with the
block-diagonal mask transformers builds from the restarting position ids, on test.csv tweets arriving ``--micro``
at a time.

    .venv/bin/python benchmarks/segment_attention_ab.py --n 160 --rounds 3 [--micro 8,32,160]

Prints tweets/s per side and batch size (median of the rounds), the ratio, and max |Δp| between the sides.
"""

from __future__ import annotations

import sys

from ab import ab_arguments, alternate, print_comparison, served_classifier_and_tweets


def main() -> None:
    from shared.classifier.attention import SEGMENT_ATTENTION

    args, micro = ab_arguments(__doc__, n=160, rounds=3, micro="8,32,160")
    classifier, texts = served_classifier_and_tweets(args.n)
    configs = {id(m.config): m.config for m in classifier.model.modules() if getattr(m, "config", None) is not None}
    if any(c._attn_implementation != SEGMENT_ATTENTION for c in configs.values()):
        sys.exit("this model does not serve segment attention (it is not an SDPA model)")

    def use(implementation: str):  # SDPA ignores the segments it is given
        def switch() -> None:
            for config in configs.values():
                config._attn_implementation = implementation
        return switch

    classifier.predict_proba(texts[:32])
    rates, probs = alternate(classifier, texts, {"masked row": use("sdpa"), "per tweet": use(SEGMENT_ATTENTION)},
                             micro, args.rounds)
    use(SEGMENT_ATTENTION)()
    print_comparison(rates, probs, "masked row", "per tweet", micro)


if __name__ == "__main__":
    main()
