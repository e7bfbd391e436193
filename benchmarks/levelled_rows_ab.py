"""A/B of how packed passes fill their rows, one process, alternating rounds: levelled rows (``packed_passes`` since
2026-12-02: the fewest rows of at most 256 tokens, filled evenly) against rows filled first (best fit, longest
first: 8 tweets of ≈ 66 tokens became rows of 256 + 256 + 18, and the pass is as wide as its fullest row), on
test.csv tweets arriving ``--micro`` at a time, as the worker sees them.

    .venv/bin/python benchmarks/levelled_rows_ab.py --n 128 --rounds 2 [--micro 4,8,16,32]

Prints tweets/s per side and batch size (median of the rounds), the ratio, and max |Δp| between the sides.
"""

from __future__ import annotations


from ab import ab_arguments, alternate, print_comparison, served_classifier_and_tweets


def main() -> None:
    import shared.classifier.model as model_module
    import shared.classifier.scoring as scoring

    args, micro = ab_arguments(__doc__, n=128, rounds=2, micro="4,8,16,32")
    classifier, texts = served_classifier_and_tweets(args.n)
    levelled, level_rows = scoring.packed_passes, scoring._level_rows

    def filled_first(sequences, pass_tokens, **kwargs):  # levelling off: every candidate is the first-fit rows
        scoring._level_rows = lambda lengths, count: scoring._fewest_rows(lengths, max([256, *lengths]))
        try:
            return levelled(sequences, pass_tokens, **kwargs)
        finally:
            scoring._level_rows = level_rows

    def use(packing):
        return lambda: setattr(model_module, "packed_passes", packing)

    classifier.predict_proba(texts[:32])
    rates, probs = alternate(classifier, texts, {"filled first": use(filled_first), "levelled": use(levelled)},
                             micro, args.rounds)
    model_module.packed_passes = levelled
    print_comparison(rates, probs, "filled first", "levelled", micro)


if __name__ == "__main__":
    main()
