"""(c) The roofline: this machine's measured matmul peak, the FLOPs the model spends per tweet, the fraction achieved.

FLOPs are counted for the tokens the classifier really computes (prompt + tweet, no padding): per token and
decoder layer, 2 × (the layer's linear weights) for the projections, plus 2 × 2 × context × heads × head_dim for
attention scores and values, except that the final layer computes only keys and values for all but a tweet's last
token; the final step multiplies 4 label rows, not the vocabulary. Peak is the best of
large and model-shaped fp32/bf16 matrix products timed with torch on the same threads.
"""

from __future__ import annotations

import time


def matmul_peak(dtype_name: str, seconds: float = 2.0) -> dict:
    """Best sustained GFLOP/s of torch.mm in ``dtype_name`` over a few shapes (square and model-shaped)."""
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    shapes = [(2048, 2048, 2048), (1024, 640, 2048), (1024, 2048, 640)]
    best = {}
    for m, k, n in shapes:
        a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
        torch.mm(a, b)
        calls, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds / len(shapes):
            torch.mm(a, b)
            calls += 1
        gflops = 2 * m * k * n * calls / (time.perf_counter() - started) / 1e9
        best[f"{m}x{k}x{n}"] = round(gflops, 1)
    return {"dtype": dtype_name, "gflops": max(best.values()), "by_shape": best, "threads": torch.get_num_threads()}


def flops_per_token(config, context: int, keys_values_only: bool = False) -> float:
    """Forward FLOPs of one token at position ``context`` through the decoder (linear layers + attention). With
    ``keys_values_only`` the final layer computes only the token's key and value, as it does for every token but a
    tweet's last in a packed pass (``shared.classifier.final_layer``)."""
    hidden, inter = config.hidden_size, config.intermediate_size
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    head_dim = getattr(config, "head_dim", hidden // heads)
    keys_values = 2 * hidden * kv_heads * head_dim
    linear = hidden * heads * head_dim + keys_values + heads * head_dim * hidden + 3 * hidden * inter
    attention = 2 * heads * head_dim * context  # QK^T and attention × V, per token
    if keys_values_only:
        return (config.num_hidden_layers - 1) * 2 * (linear + attention) + 2 * keys_values
    return config.num_hidden_layers * 2 * (linear + attention)


def flops_per_tweet(config, sequence_lengths: list[int], last_tokens_final_layer: bool = False) -> float:
    """Mean forward FLOPs per tweet over the given prompt lengths (position p attends to p + 1 tokens); with
    ``last_tokens_final_layer``, as packed passes compute the final layer."""
    total = sum(flops_per_token(config, p + 1, keys_values_only=last_tokens_final_layer and p < length - 1)
                for length in sequence_lengths for p in range(length))
    return total / len(sequence_lengths)
