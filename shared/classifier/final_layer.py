"""The final decoder layer of a packed pass, run only where its output is read.

A tweet's label is read at its last token, after the final layer. That layer still needs keys and values of every
token (the last token attends to them all), but its queries, attention output, output projection and MLP matter at
the last token only: on Gemma-3-270M that is ≈ 94 % of the layer's arithmetic spent on ≈ 65 of every 66 tokens, or
≈ 5 % of a pass (docs/benchmarks.md). Here, when a call carries ``packed_segments`` (a packed pass with segment
attention, ``shared.classifier.attention``), the final layer computes keys and values for all tokens and the rest
for each tweet's last token; the other positions of its output are left zero, and nothing reads them
(``packed_label_logits``, ``label_logits_from_layer``). Every other call runs the layer as transformers does.

It follows Gemma-3's decoder layer in transformers 5.17 (post-attention and pre/post-feed-forward norms, query
and key norms); a model of another family keeps its layer unchanged. A test checks it against the plain forward.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def run_final_layer_at_last_tokens(model) -> bool:
    """Make ``model``'s final decoder layer compute only each tweet's last token in packed passes. Returns whether
    it does (only Gemma-3 layers are changed)."""
    final = _final_gemma3_layer(model)
    if final is None:
        return False
    if not getattr(final.forward, "last_tokens_only", False):
        forward = functools.partial(_last_tokens_forward, final, final.forward)
        forward.last_tokens_only = True
        final.forward = forward
    return True


def runs_final_layer_at_last_tokens(model) -> bool:
    """Whether ``model``'s packed passes run its final layer at the last tokens only (what the roofline counts)."""
    final = _final_gemma3_layer(model)
    return final is not None and getattr(final.forward, "last_tokens_only", False)


def _final_gemma3_layer(model):
    from transformers.models.gemma3.modeling_gemma3 import Gemma3DecoderLayer

    layers = [m for m in model.modules() if isinstance(m, Gemma3DecoderLayer)]
    return layers[-1] if layers else None


def _last_tokens_forward(layer, plain_forward, hidden_states: "torch.Tensor", position_embeddings=None,
                         attention_mask=None, position_ids=None, past_key_values=None,
                         packed_segments: list[tuple[int, int, int]] | None = None, **kwargs) -> "torch.Tensor":
    if packed_segments is None or past_key_values is not None:
        return plain_forward(hidden_states, position_embeddings=position_embeddings, attention_mask=attention_mask,
                             position_ids=position_ids, past_key_values=past_key_values,
                             packed_segments=packed_segments, **kwargs)
    import torch
    import torch.nn.functional as F
    from transformers.models.gemma3.modeling_gemma3 import apply_rotary_pos_emb

    attn = layer.self_attn
    rows = torch.tensor([row for row, _, _ in packed_segments], device=hidden_states.device)
    lasts = torch.tensor([end - 1 for _, _, end in packed_segments], device=hidden_states.device)
    width = hidden_states.shape[1]
    normed = layer.input_layernorm(hidden_states)
    # Keys and values of every token, as the plain layer computes them: (rows, kv heads, width, head_dim).
    keys = attn.k_norm(attn.k_proj(normed).view(*normed.shape[:2], -1, attn.head_dim)).transpose(1, 2)
    values = attn.v_proj(normed).view(*normed.shape[:2], -1, attn.head_dim).transpose(1, 2)
    cos, sin = position_embeddings
    keys, _ = apply_rotary_pos_emb(keys, keys, cos, sin)
    # Queries at the last tokens only: (tweets, heads, 1, head_dim).
    queries = attn.q_norm(attn.q_proj(normed[rows, lasts]).view(len(packed_segments), -1, 1, attn.head_dim))
    queries, _ = apply_rotary_pos_emb(queries, queries, cos[rows, lasts][:, None], sin[rows, lasts][:, None])
    window = attn.sliding_window  # a sliding-window layer: the last token sees the last `window` tokens only
    grouped = keys.shape[1] != queries.shape[1]
    attended = torch.cat([
        F.scaled_dot_product_attention(
            queries[k: k + 1], keys[row: row + 1, :, first:end], values[row: row + 1, :, first:end],
            scale=attn.scaling, enable_gqa=grouped)
        for k, (row, start, end) in enumerate(packed_segments)
        for first in [max(start, end - window) if window else start]])
    residual = hidden_states[rows, lasts]
    hidden = residual + layer.post_attention_layernorm(attn.o_proj(attended.reshape(len(packed_segments), -1)))
    hidden = hidden + layer.post_feedforward_layernorm(layer.mlp(layer.pre_feedforward_layernorm(hidden)))
    out = hidden_states.new_zeros(hidden_states.shape[0], width, hidden_states.shape[2])
    out[rows, lasts] = hidden.to(out.dtype)
    return out
