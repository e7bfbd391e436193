"""A/B of the final decoder layer in packed passes, one process, alternating rounds: every token through it (as
transformers runs it) against keys and values for every token and the rest at each tweet's last token only
(``shared.classifier.final_layer``, served since 2026-12-05), on test.csv tweets arriving ``--micro`` at a time.

    .venv/bin/python benchmarks/final_layer_ab.py --n 160 --rounds 3 [--micro 8,32,160]

Prints tweets/s per side and batch size (median of the rounds), the ratio, and max |Δp| between the sides.
"""

from __future__ import annotations

import sys

from ab import ab_arguments, alternate, print_comparison, served_classifier_and_tweets


def main() -> None:
    from shared.classifier.final_layer import run_final_layer_at_last_tokens, runs_final_layer_at_last_tokens
    from shared.classifier.scoring import unwrap

    args, micro = ab_arguments(__doc__, n=160, rounds=3, micro="8,32,160")
    classifier, texts = served_classifier_and_tweets(args.n)
    final = unwrap(classifier.model)[1].layers[-1]
    if not runs_final_layer_at_last_tokens(classifier.model):
        sys.exit("this model does not serve its final layer at the last tokens (not a Gemma-3 model)")

    def every_token() -> None:
        final.__dict__.pop("forward", None)  # the class's forward again

    def last_tokens() -> None:
        run_final_layer_at_last_tokens(classifier.model)

    classifier.predict_proba(texts[:32])
    rates, probs = alternate(classifier, texts, {"every token": every_token, "last tokens": last_tokens},
                             micro, args.rounds)
    last_tokens()
    print_comparison(rates, probs, "every token", "last tokens", micro)


if __name__ == "__main__":
    main()
