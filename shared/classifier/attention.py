"""Attention confined to each packed tweet.

A packed pass (``shared.classifier.scoring.packed_passes``) puts several tweets end to end in a row of up to 256
tokens. With a block-diagonal mask, SDPA still computes every query against the whole row — ≈ 256 keys — where a
tweet's token needs at most its own ≈ 66. Here each tweet's slice of the row goes through causal SDPA on its own:
the same result (it is exactly the masked computation, without the masked-out blocks) for a fraction of the
attention arithmetic, which was ≈ 9 % of a pass on CPU (docs/benchmarks.md).

Training steps are packed passes too (``packed_batch``). The model keeps its usual SDPA for everything else
(padded batches, such as training's cache of the frozen layers, and generation):
the attention function only takes the per-tweet route when the call carries ``packed_segments``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

#: The name under which transformers finds this attention (``config._attn_implementation``).
SEGMENT_ATTENTION = "stancestream-segments"


def use_segment_attention(model) -> bool:
    """Serve ``model``'s packed passes with per-tweet attention; only a model configured for SDPA is switched
    (its non-packed calls still run SDPA). Returns whether the model now uses it."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(SEGMENT_ATTENTION, _segment_attention)
    # Without a mask function of the same name transformers builds no mask at all, and a padded (non-packed) call
    # would attend to its padding.
    ALL_MASK_ATTENTION_FUNCTIONS.register(SEGMENT_ATTENTION, sdpa_mask)
    configs = {id(m.config): m.config for m in model.modules() if getattr(m, "config", None) is not None}
    if not configs or any(c._attn_implementation not in ("sdpa", SEGMENT_ATTENTION) for c in configs.values()):
        return False
    for config in configs.values():
        config._attn_implementation = SEGMENT_ATTENTION
    return True


def segments_of(batch) -> list[tuple[int, int, int]]:
    """(row, first column, end column) of each tweet in a packed pass (``scoring.PackedPass``); a tweet's positions
    count from 0 at its start."""
    rows, cols = batch.rows.tolist(), batch.cols.tolist()
    starts = (batch.positions[batch.rows, batch.cols]).tolist()
    return [(r, c - p, c + 1) for r, c, p in zip(rows, cols, starts)]


def _segment_attention(module, query: "torch.Tensor", key: "torch.Tensor", value: "torch.Tensor",
                       attention_mask, dropout: float = 0.0, scaling: float | None = None,
                       packed_segments: list[tuple[int, int, int]] | None = None, **kwargs):
    import torch
    import torch.nn.functional as F
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if packed_segments is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    # query (rows, heads, width, head_dim); key and value may have fewer heads (grouped-query attention).
    # A row's unused end belongs to no tweet and is never read: it stays zero.
    out = torch.zeros_like(query)
    grouped = key.shape[1] != query.shape[1]
    window = kwargs.get("sliding_window")  # a sliding-window layer: a token sees the last `window` tokens only
    for row, start, end in packed_segments:
        mask = None
        if window and end - start > window:
            at = torch.arange(end - start, device=query.device)
            mask = (at[None, :] <= at[:, None]) & (at[:, None] - at[None, :] < window)
        out[row: row + 1, :, start:end] = F.scaled_dot_product_attention(
            query[row: row + 1, :, start:end], key[row: row + 1, :, start:end], value[row: row + 1, :, start:end],
            attn_mask=mask, is_causal=mask is None, scale=scaling, enable_gqa=grouped)
    return out.transpose(1, 2).contiguous(), None
