"""Label-word scoring, shared by training and inference so that what is trained is exactly what is served.

Each tweet is wrapped in a short instruction and the model's next-token scores for the four label words
(" pro", " anti", " neutral", " unrelated") are read at the last position. Only the four rows of the output
embedding are multiplied, never the 262k-word vocabulary; an adapter may bring its own 4-way linear head instead
(``new_label_head``; saved and loaded by ``shared.classifier.adapters``, see ``train --head``). Serving packs
tweets end to end into forward passes (``packed_passes``), and so does training (``packed_batch``); training only
the top layers can start from a cached residual stream (``hidden_before_layer``, ``label_logits_from_layer``).

The ``prompt`` scoring mode (``STANCESTREAM_SCORING=prompt``) serves the paper's own models instead: each tweet
goes into the paper-style instruction prompt (``PAPER_STYLE_PROMPT``, also the llama.cpp baseline's), and the
four rows read are the tokens of the category numbers 1-4 as the model writes them after ``Answer =``
(``answer_token_ids``): the same single forward pass, no generation.
"""

from __future__ import annotations

import bisect
import heapq
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from shared.classifier.attention import segments_of
from shared.classifier.errors import ClassifierError
from shared.messages import Category

if TYPE_CHECKING:
    import torch

#: The words around each tweet, (before, after), by name; an adapter records the one it was trained with
#: (``train --prompt-wording``) and is served with it. Every prompt token is paid on every tweet (the tweet itself
#: averages ~58 Gemma tokens): "instruction" adds 17 with BOS, "short" 6 (≈ 15% fewer tokens per tweet).
PROMPT_WORDINGS: dict[str, tuple[str, str]] = {
    "instruction": ("Tweet: ", "\nImmigration stance (pro, anti, neutral or unrelated):"),
    "short": ("", "\nImmigration stance:"),
}
#: The bare base model, and adapters that record no wording (every one before the option), use this one.
UNRECORDED_WORDING = "instruction"
#: What ``train`` uses unless told otherwise. "short" is ≈ 1.2× faster to serve and passed five-fold CV (cv05), but
#: its refit of the shipped recipe lost 0.034 dev macro-F1, so it is opt-in (docs/experiments.md, cv05 and exp16).
TRAIN_WORDING = "instruction"
VERBALIZERS: dict[Category, str] = {
    Category.pro: " pro",
    Category.anti: " anti",
    Category.neutral: " neutral",
    Category.unrelated: " unrelated",
}
#: Our wording of the paper's instruction prompt (its structure and its four numbered categories, in
#: ``CATEGORIES`` order; about 140 tokens with a tweet). Used as raw text, never inside a chat template: the
#: paper's llama.cpp script ran it as a plain completion. The llama.cpp baseline of ``stancestream bench`` and the
#: ``prompt`` scoring mode both use this text.
PAPER_STYLE_PROMPT = (
    "The next text is a tweet probably about migration. Classify the tweet into one of the following categories "
    "according to the stance it expresses towards immigration and immigrants. Category numbers: "
    "1 = 'pro-immigration'; 2 = 'anti-immigration'; 3 = 'neutral'; 4 = 'unrelated'. Answer only with the "
    "category number.\nTweet: {tweet}\nAnswer ="
)
#: The answers the prompt asks for, in ``CATEGORIES`` order.
CATEGORY_NUMBERS = ("1", "2", "3", "4")
_LINK = re.compile(r"https?://\S+|www\.\S+")
_MENTION = re.compile(r"(?<!\w)@\w+")
#: What an adapter trained with ``train --normalize-text`` records; the classifier then normalizes every tweet.
LINKS_AND_MENTIONS = "links-and-mentions"


def normalize_tweet(text: str) -> str:
    """Links become ``http`` and @mentions ``@user`` (TweetEval's preprocessing): a t.co link is ~15 tokens of
    random characters and reply chains stack handles, noise the model would otherwise pay for and memorize."""
    return _MENTION.sub("@user", _LINK.sub("http", text))


def label_token_ids(tokenizer) -> list[int]:
    ids = []
    for label, word in VERBALIZERS.items():
        pieces = tokenizer(word, add_special_tokens=False)["input_ids"]
        if not pieces:
            raise ClassifierError(f"the tokenizer maps the label word {word!r} to nothing")
        ids.append(pieces[0])
    if len(set(ids)) != len(ids):
        raise ClassifierError(f"label words share a first token ({ids}): pick distinct verbalizers")
    return ids


def answer_token_ids(tokenizer, prompt: str = PAPER_STYLE_PROMPT) -> tuple[list[int], list[int]]:
    """``(lead_in, numbers)``: the tokens a model writes after ``prompt`` before the category number, and the
    token of each number 1-4, as the tokenizer splits ``"… Answer = 1"``.

    Gemma's and LLaMA-3's tokenizers write the space before a digit as a token of its own ("▁", "Ġ") and the digit
    as another, so a greedy decode of the prompt produces the space first and the number second: the lead-in is
    appended to every prompt and the numbers are scored right after it. A tokenizer with a " 1" token has no
    lead-in. The prompt's end is tokenized alone and followed by " 1" … " 4"; ClassifierError unless the four
    share the prompt's tokens and one lead-in and end in four distinct tokens that read 1, 2, 3, 4.
    """
    def encode(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    end = prompt.rsplit("{tweet}", 1)[-1]
    base = encode(end)
    leads, numbers = [], []
    for number in CATEGORY_NUMBERS:
        ids = encode(f"{end} {number}")
        if len(ids) <= len(base) or ids[: len(base)] != base:
            raise ClassifierError(f"the tokenizer merges the answer {number!r} into the prompt's last tokens "
                                  f"({end!r}): the prompt scoring mode cannot read the category numbers")
        leads.append(ids[len(base):-1])
        numbers.append(ids[-1])
    if any(lead != leads[0] for lead in leads) or len(set(numbers)) != len(numbers):
        raise ClassifierError(f"the tokenizer does not write the category numbers as one distinct token after the "
                              f"same lead-in ({leads}, {numbers})")
    for number, token in zip(CATEGORY_NUMBERS, numbers):
        if tokenizer.decode([token]).strip() != number:
            raise ClassifierError(f"the answer {number!r} ends in token {token} ({tokenizer.decode([token])!r}), "
                                  "not the number itself")
    return leads[0], numbers


def unwrap(model):
    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    return causal_lm, getattr(causal_lm, causal_lm.base_model_prefix)


def label_logits(model, input_ids, attention_mask, token_ids: list[int], head=None):
    """Hidden state at the last real position times the four label rows of the output embedding (or through
    ``head``, an adapter's own 4-way linear head)."""
    _, backbone = unwrap(model)
    hidden = backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    return _logits_at_last_token(model, hidden, attention_mask, token_ids, head)


def packed_label_logits(model, batch: "PackedPass", token_ids: list[int], head=None):
    """``label_logits`` of a packed pass: one forward over its rows, read at each tweet's last token."""
    _, backbone = unwrap(model)
    # No attention mask and no cache: transformers then builds the block-diagonal causal mask from the restarting
    # position ids (masking_utils.find_packed_sequence_indices), so no tweet attends to its neighbours; with
    # segment attention (shared.classifier.attention) each tweet's slice is computed on its own instead.
    hidden = backbone(input_ids=batch.ids, position_ids=batch.positions, use_cache=False,
                      packed_segments=segments_of(batch)).last_hidden_state
    return label_projection(model, hidden[batch.rows, batch.cols], token_ids, head)


def _logits_at_last_token(model, hidden, attention_mask, token_ids: list[int], head=None):
    import torch

    last = attention_mask.sum(dim=1) - 1
    return label_projection(model, hidden[torch.arange(hidden.shape[0], device=hidden.device), last], token_ids, head)


def label_projection(model, final, token_ids: list[int], head=None):
    """(n, 4) label logits of last-token hidden states ``final`` (n, hidden), after the final norm."""
    import torch

    causal_lm, _ = unwrap(model)
    if head is not None:
        logits = head(final.to(head.weight.dtype))
    else:
        weight = causal_lm.get_output_embeddings().weight[token_ids]
        logits = final.to(weight.dtype) @ weight.T
    cap = getattr(causal_lm.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


# --- training only the top layers -----------------------------------------------------------------------------
# When LoRA adapts only decoder layers start..N-1, everything below ``start`` is frozen and deterministic: its
# output can be computed once per tweet and reused every epoch, so an epoch costs only the top layers' forward
# and backward. These two functions split the backbone's forward at ``start``; a test checks that together they
# equal the plain forward (they follow Gemma-3's decoder loop in transformers 5.17).

class _StopForward(Exception):
    pass


def hidden_before_layer(model, input_ids, attention_mask, start: int, position_ids=None, packed_segments=None):
    """The residual stream entering decoder layer ``start`` (the layers below are not run twice). A packed pass
    gives ``position_ids`` and its ``packed_segments`` (``segments_of``), and no ``attention_mask``."""
    _, backbone = unwrap(model)
    captured = {}

    def capture(module, args, kwargs):
        captured["hidden"] = args[0] if args else kwargs["hidden_states"]
        raise _StopForward

    handle = backbone.layers[start].register_forward_pre_hook(capture, with_kwargs=True)
    try:
        backbone(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False,
                 packed_segments=packed_segments)
    except _StopForward:
        pass
    finally:
        handle.remove()
    return captured["hidden"]


def label_logits_from_layer(model, hidden, packed: "PackedPass", start: int, token_ids: list[int], head=None):
    """``packed_label_logits`` for a packed pass whose residual stream entering layer ``start`` is ``hidden``."""
    final = layers_from(model, hidden, start, packed.positions, packed_segments=segments_of(packed))
    return label_projection(model, final[packed.rows, packed.cols], token_ids, head)


def layers_from(model, hidden, start: int, position_ids, attention_mask=None, packed_segments=None):
    """The decoder layers from ``start`` up and the final norm over ``hidden``, the residual stream entering layer
    ``start``: a packed pass (``position_ids`` restarting at each tweet, its ``packed_segments``) or a padded batch
    (its ``attention_mask``)."""
    from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask

    _, backbone = unwrap(model)
    config = backbone.config
    mask_args = {"config": config, "inputs_embeds": hidden, "attention_mask": attention_mask,
                 "past_key_values": None, "position_ids": position_ids}
    masks = {"full_attention": create_causal_mask(**mask_args),
             "sliding_attention": create_sliding_window_causal_mask(**mask_args)}
    rotary = {kind: backbone.rotary_emb(hidden, position_ids, kind) for kind in set(config.layer_types)}
    for index in range(start, config.num_hidden_layers):
        kind = config.layer_types[index]
        hidden = backbone.layers[index](hidden, attention_mask=masks[kind], position_embeddings=rotary[kind],
                                        position_ids=position_ids, packed_segments=packed_segments)
    return backbone.norm(hidden)


# --- an adapter's own label head ------------------------------------------------------------------------------

def new_label_head(model, token_ids: list[int], from_label_words: bool):
    """A float32 4-way linear head, started from the label words' output rows (so step 0 scores exactly as
    label-word scoring does) or from torch's default random init."""
    import torch

    causal_lm, _ = unwrap(model)
    rows = causal_lm.get_output_embeddings().weight[token_ids].detach().float()
    head = torch.nn.Linear(rows.shape[1], len(token_ids)).to(rows.device)
    if from_label_words:
        with torch.no_grad():
            head.weight.copy_(rows)
            head.bias.zero_()
    return head


#: A bucket closes when padding it to its longest sequence would cost more than this share of extra tokens.
MAX_PADDING = 0.15


def length_buckets(lengths: list[int], max_rows: int, max_padding: float = MAX_PADDING) -> list[np.ndarray]:
    """Indices grouped into forward passes of similar length: at most ``max_rows`` sequences each, and padded
    tokens at most ``max_padding`` of the real ones. A micro-batch of tweets of 20 to 120 tokens in fixed
    groups of 16 would otherwise compute mostly padding."""
    order = np.argsort(lengths, kind="stable")
    buckets, current, real = [], [], 0
    for i in order:
        n = lengths[i]
        if current and (len(current) == max_rows or n * (len(current) + 1) > (1 + max_padding) * (real + n)):
            buckets.append(np.array(current))
            current, real = [], 0
        current.append(i)
        real += n
    if current:
        buckets.append(np.array(current))
    return buckets


# --- packing tweets into forward passes -----------------------------------------------------------------------

#: Tokens per packed row: several tweets (≈ 66 tokens each with the prompt) end to end. Attention is computed over
#: the whole row and masked, so longer rows waste attention FLOPs (≈ 1 % of a tweet's at 66 tokens, ≈ 9 % at 256).
ROW_TOKENS = 256


@dataclass
class PackedPass:
    """One forward pass of packed tweets: ``ids`` and ``positions`` (rows, width), each tweet's positions counting
    from 0; ``index[k]`` is the input sequence whose last token sits at (``rows[k]``, ``cols[k]``)."""

    ids: "torch.Tensor"
    positions: "torch.Tensor"
    rows: "torch.Tensor"
    cols: "torch.Tensor"
    index: np.ndarray


def packed_passes(sequences: list[list[int]], pass_tokens: int, *, row_tokens: int = ROW_TOKENS, pad_id: int = 0,
                  device="cpu") -> list[PackedPass]:
    """Token sequences packed end to end into rows of at most ``row_tokens`` (or the longest sequence's length)
    and the rows into passes of about ``pass_tokens`` tokens. A pass costs its real tokens plus what is left at
    the rows' ends, however the lengths mix, where padded batches of mixed lengths computed padding or split into
    many small, slow passes (1.06-1.12× the tweets/s, docs/benchmarks.md)."""
    import torch

    if not sequences:
        return []
    lengths = [len(s) for s in sequences]
    width = max([row_tokens, *lengths])
    # A pass is as wide as its fullest row, so rows are levelled: 8 tweets of ≈ 66 tokens packed first-fit make
    # rows of 256 + 256 + 18 tokens, 24 % of the pass unused ends; levelled they are three rows of ≈ 180.
    first_fit = _fewest_rows(lengths, width)
    candidates = [first_fit] + [_level_rows(lengths, count)
                                for count in range(-(-sum(lengths) // width), len(first_fit) + 1)]
    _, _, rows = min((len(r) * widest, k, r) for k, r in enumerate(candidates)
                         if (widest := _widest(r, lengths)) <= width)
    # Rows shared out evenly: 9 rows at 8 a pass run as 5 + 4, not as 8 and a lone row at a fraction of the speed.
    count = -(-len(rows) // max(1, pass_tokens // width))
    bounds = [round(k * len(rows) / count) for k in range(count + 1)]
    passes = []
    for group in (rows[bounds[k]: bounds[k + 1]] for k in range(count)):
        used = max(sum(lengths[i] for i in row) for row in group)
        ids = torch.full((len(group), used), pad_id, dtype=torch.long)
        positions = torch.zeros((len(group), used), dtype=torch.long)
        index, last_row, last_col = [], [], []
        for r, row in enumerate(group):
            col = 0
            for i in row:
                n = lengths[i]
                ids[r, col: col + n] = torch.tensor(sequences[i])
                positions[r, col: col + n] = torch.arange(n)
                index.append(i)
                last_row.append(r)
                last_col.append(col + n - 1)
                col += n
            # The row's unused end counts as one more sequence of its own: the tweets before it never see it.
            positions[r, col:] = torch.arange(used - col)
        passes.append(PackedPass(ids.to(device), positions.to(device), torch.tensor(last_row, device=device),
                                 torch.tensor(last_col, device=device), np.array(index)))
    return passes


def packed_batch(sequences: list[list[int]], *, pad_id: int = 0, device="cpu") -> PackedPass:
    """All ``sequences`` in one packed pass: a training batch, whose tweets in random order padded to the longest
    would be ≈ 40 % padding (train.csv in batches of 16)."""
    width = max([ROW_TOKENS, *(len(s) for s in sequences)])
    (batch,) = packed_passes(sequences, width * len(sequences), pad_id=pad_id, device=device)
    return batch


def _fewest_rows(lengths: list[int], width: int) -> list[list[int]]:
    """Best fit, longest first: near the fewest rows of ``width`` tokens that hold every sequence."""
    rows: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (room left, row number), sorted: best fit is the first room that fits
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        at = bisect.bisect_left(free, (lengths[i], -1))
        if at == len(free):
            rows.append([i])
            room, row = width - lengths[i], len(rows) - 1
        else:
            room, row = free.pop(at)
            rows[row].append(i)
            room -= lengths[i]
        bisect.insort(free, (room, row))
    return rows


def _level_rows(lengths: list[int], count: int) -> list[list[int]]:
    """``count`` rows of nearly equal fill: longest first, each into the emptiest row."""
    heap = [(0, r) for r in range(count)]
    rows: list[list[int]] = [[] for _ in range(count)]
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        fill, r = heapq.heappop(heap)
        rows[r].append(i)
        heapq.heappush(heap, (fill + lengths[i], r))
    return rows


def _widest(rows: list[list[int]], lengths: list[int]) -> int:
    return max(sum(lengths[i] for i in row) for row in rows)
