"""(a) Classifier-only throughput: the same tweets through each precision and pass size."""

from __future__ import annotations

import gc
import time

from shared.classifier.model import StanceClassifier
from shared.settings import Device, Dtype, Quantization, Settings

PRECISIONS = {  # name -> settings overrides (model_copy does not validate: enums, not strings)
    "fp32": {"dtype": Dtype.fp32, "quantization": Quantization.none},
    "bf16": {"dtype": Dtype.bf16, "quantization": Quantization.none},
    "nf4": {"dtype": Dtype.fp32, "quantization": Quantization.nf4},  # bitsandbytes 4-bit weights, fp32 compute
}


def measure(classifier: StanceClassifier, texts: list[str], pass_tokens: int) -> dict:
    """Tweets/s and tokens/s of ``predict_proba`` over ``texts`` in packed passes of ``pass_tokens`` (after a
    warm-up pass)."""
    classifier.pass_tokens = pass_tokens
    tokens = sum(len(s) for s in classifier.encode(texts))
    classifier.predict_proba(texts[:16])
    started = time.perf_counter()
    classifier.predict_proba(texts)
    seconds = time.perf_counter() - started
    return {"pass_tokens": pass_tokens, "n": len(texts), "seconds": round(seconds, 3),
            "tweets_per_s": round(len(texts) / seconds, 3), "tokens_per_s": round(tokens / seconds, 1),
            "tokens_per_tweet": round(tokens / len(texts), 1)}


def measure_micro_batches(classifier: StanceClassifier, texts: list[str], micro_batch: int) -> dict:
    """Tweets/s when texts arrive as the worker sees them: ``micro_batch`` at a time, in arrival order."""
    classifier.predict_proba(texts[:micro_batch])
    started = time.perf_counter()
    for at in range(0, len(texts), micro_batch):
        classifier.predict_proba(texts[at: at + micro_batch])
    seconds = time.perf_counter() - started
    return {"micro_batch": micro_batch, "n": len(texts), "tweets_per_s": round(len(texts) / seconds, 3)}


def precision_table(settings: Settings, texts: list[str], precisions: list[str], pass_sizes: list[int],
                    slow_n: int, log) -> list[dict]:
    """One row per (precision, tokens per pass). A precision that a probe shows slower than 3 tweets/s is
    measured on the first ``slow_n`` tweets only (bf16 without native bf16 units takes minutes otherwise)."""
    rows = []
    for name in precisions:
        classifier = StanceClassifier.load(settings.model_copy(update=PRECISIONS[name] | {"device": Device.cpu}),
                                           adapter=settings.adapter)
        probe = measure(classifier, texts[:16], pass_sizes[0])
        sample = texts[:slow_n] if probe["tweets_per_s"] < 3 else texts
        for pass_tokens in pass_sizes:
            row = {"precision": name, "device": classifier.runtime.device} | measure(classifier, sample, pass_tokens)
            rows.append(row)
            log(f"  {name:>5} pass {pass_tokens:>5} tokens: {row['tweets_per_s']:6.2f} tweets/s "
                f"{row['tokens_per_s']:7.0f} tokens/s (n={row['n']})")
        del classifier
        gc.collect()
    return rows
