"""StanceClassifier on a tiny random Gemma-3: encoding, batching and the four-row label head."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from shared.classifier.errors import ClassifierError
from shared.classifier.model import StanceClassifier
from shared.classifier.scoring import PROMPT_WORDINGS, UNRECORDED_WORDING, label_token_ids

PROMPT_PREFIX, PROMPT_SUFFIX = PROMPT_WORDINGS[UNRECORDED_WORDING]
from shared.messages import CATEGORIES
from shared.streaming.processing import InboundMessage, TweetBatchProcessor
from shared.classifier.model_source import ModelSourceError, resolve_base_model

pytestmark = pytest.mark.model

WORDS = ("immigration refugees welcome border policy jobs economy football match coffee rain love hate "
         "government vote asylum citizens music friends home").split()


def text_of(n: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    return " ".join(rng.choice(WORDS, size=n))


# Lengths chosen so that sorted sub-batches of 4 mix sequences more than a sliding window (32) apart.
TEXTS = [text_of(n, seed) for seed, n in enumerate([1, 2, 3, 45, 5, 60, 50, 100])]
TEXTS.append("Unknownword zzz qqq, with PUNCTUATION!!")  # [UNK] tokens and upper case


def reference_proba(clf: StanceClassifier, text: str) -> np.ndarray:
    """The plain Hugging Face forward pass over one unpadded sequence: full-vocabulary logits, last position."""
    (seq,) = clf.encode([text])
    with torch.inference_mode():
        logits = clf.model(input_ids=torch.tensor([seq])).logits[0, -1, clf.label_token_ids]
    return torch.softmax(logits.float(), dim=-1).numpy()


def test_label_words_are_distinct_single_tokens(tiny_classifier):
    ids = label_token_ids(tiny_classifier.tokenizer)
    assert len(set(ids)) == 4
    for token_id, word in zip(ids, ("pro", "anti", "neutral", "unrelated")):
        assert tiny_classifier.tokenizer.convert_ids_to_tokens(token_id) == word


def test_predict_proba_shape_and_normalisation(tiny_classifier):
    probs = tiny_classifier.predict_proba(TEXTS)
    assert probs.shape == (len(TEXTS), len(CATEGORIES))
    assert np.isfinite(probs).all() and (probs >= 0).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    # A random model still separates texts: otherwise the equality tests below could not fail.
    assert np.ptp(probs, axis=0).max() > 1e-2


def test_predict_proba_empty_and_the_label_served_is_the_most_probable(tiny_classifier):
    assert tiny_classifier.predict_proba([]).shape == (0, 4)
    probs = tiny_classifier.predict_proba(TEXTS[:5])
    messages = [InboundMessage(json.dumps({"id": f"t{i}", "text": text, "created_at": "2026-11-01T10:00:00Z"}).encode(),
                               "tweets.raw", 0, i) for i, text in enumerate(TEXTS[:5])]
    served = TweetBatchProcessor(tiny_classifier).classify(messages).classifications
    assert [c.label for c in served] == [CATEGORIES[i] for i in probs.argmax(axis=1)]


def test_batching_does_not_change_probabilities(tiny_classifier):
    from shared.classifier.scoring import packed_passes

    clf = tiny_classifier
    (packed,) = packed_passes(clf.encode(TEXTS), clf.pass_tokens)
    assert packed.ids.shape[0] == 2, "the texts should fill two packed rows of one pass"
    starts = packed.cols - packed.positions[packed.rows, packed.cols]
    assert (starts > 32).any(), "some tweet should start beyond the sliding window (32) into its row"
    from shared.classifier.attention import SEGMENT_ATTENTION, segments_of
    from shared.classifier.scoring import unwrap

    # each tweet's attention runs on its own slice of the row (and within the sliding window in sliding layers)
    backbone = unwrap(clf.model)[1]
    assert backbone.config._attn_implementation == SEGMENT_ATTENTION
    # and the final layer runs at each tweet's last token only (the positions read), zero everywhere else
    with torch.inference_mode():
        hidden = backbone(input_ids=packed.ids, position_ids=packed.positions, use_cache=False,
                          packed_segments=segments_of(packed)).last_hidden_state
    read = torch.zeros(packed.ids.shape, dtype=torch.bool)
    read[packed.rows, packed.cols] = True
    assert (hidden[~read] == 0).all() and (hidden[read].abs().sum(-1) > 0).all()

    batched = clf.predict_proba(TEXTS)
    one_by_one = np.stack([clf.predict_proba([t])[0] for t in TEXTS])
    reversed_ = clf.predict_proba(TEXTS[::-1])[::-1]
    reference = np.stack([reference_proba(clf, t) for t in TEXTS])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    np.testing.assert_allclose(batched, reversed_, atol=1e-5)
    np.testing.assert_allclose(batched, reference, atol=1e-5)


def test_label_logits_equal_the_full_lm_logits(tiny_classifier):
    clf = tiny_classifier
    ids, mask = clf.collate(clf.encode(TEXTS))
    assert (mask == 0).any(), "the batch should contain padding"
    with torch.inference_mode():
        fast = clf.label_logits(ids, mask)
        full = clf.model(input_ids=ids, attention_mask=mask).logits
    last = mask.sum(dim=1) - 1
    expected = full[torch.arange(len(TEXTS)), last][:, clf.label_token_ids]
    assert fast.shape == (len(TEXTS), 4)
    torch.testing.assert_close(fast, expected, atol=1e-5, rtol=1e-5)


def test_encode_wraps_the_tweet_in_the_prompt(tiny_classifier):
    clf = tiny_classifier
    tok = clf.tokenizer
    prefix = tok(PROMPT_PREFIX, add_special_tokens=False)["input_ids"]
    suffix = tok(PROMPT_SUFFIX, add_special_tokens=False)["input_ids"]
    body = tok("refugees welcome", add_special_tokens=False)["input_ids"]
    assert clf.encode(["refugees welcome"]) == [[tok.bos_token_id] + prefix + body + suffix]


def test_encode_truncates_only_the_tweet(tiny_classifier):
    clf = tiny_classifier
    tok = clf.tokenizer
    long_text = text_of(clf.max_tokens * 5, seed=99)
    full_body = tok(long_text, add_special_tokens=False)["input_ids"]
    assert len(full_body) > clf.max_tokens
    suffix = tok(PROMPT_SUFFIX, add_special_tokens=False)["input_ids"]
    prefix = tok(PROMPT_PREFIX, add_special_tokens=False)["input_ids"]

    (seq,) = clf.encode([long_text])
    assert len(seq) == 1 + len(prefix) + clf.max_tokens + len(suffix)
    assert seq[-len(suffix):] == suffix
    assert seq[: 1 + len(prefix)] == [tok.bos_token_id] + prefix
    assert seq[1 + len(prefix): -len(suffix)] == full_body[: clf.max_tokens]
    # The answer position is still the prompt's end, so scoring a long tweet works.
    assert np.isfinite(clf.predict_proba([long_text])).all()


def test_missing_adapter_dir_raises(tiny_settings, tmp_path):
    with pytest.raises(ClassifierError, match="adapter"):
        StanceClassifier.load(tiny_settings, adapter=tmp_path / "no-such-adapter")


def test_lora_adapter_is_attached_and_changes_scores(tiny_settings, tiny_classifier, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_settings.base_model, dtype=torch.float32)
    torch.manual_seed(1)
    lora = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    lora.save_pretrained(tmp_path)
    (tmp_path / "stancestream.json").write_text(json.dumps({"version": "lora-test-1"}))

    clf = StanceClassifier.load(tiny_settings, adapter=tmp_path)
    assert clf.adapter_version == "lora-test-1" and clf.model_id == tiny_classifier.model_id
    adapted = clf.predict_proba(TEXTS)
    np.testing.assert_allclose(adapted.sum(axis=1), 1.0, atol=1e-5)
    assert np.abs(adapted - tiny_classifier.predict_proba(TEXTS)).max() > 1e-4
    # Through the PEFT wrapper, the label head still matches the full LM's logits.
    ids, mask = clf.collate(clf.encode(TEXTS[:4]))
    with torch.inference_mode():
        full = clf.model(input_ids=ids, attention_mask=mask).logits
        expected = full[torch.arange(4), mask.sum(dim=1) - 1][:, clf.label_token_ids]
        torch.testing.assert_close(clf.label_logits(ids, mask), expected, atol=1e-5, rtol=1e-5)


def test_unknown_base_model_raises(tmp_path):
    with pytest.raises(ModelSourceError):
        resolve_base_model("no-such-org/no-such-model-xyz", tmp_path)


def test_directory_without_config_raises(tmp_path):
    with pytest.raises(ModelSourceError, match="config.json"):
        resolve_base_model(str(tmp_path), tmp_path / "cache")


def test_missing_gguf_file_raises(tmp_path):
    with pytest.raises(ModelSourceError, match="GGUF"):
        resolve_base_model(str(tmp_path / "absent.gguf"), tmp_path / "cache")


def test_local_model_dir_resolves_to_itself(tiny_model_dir, tmp_path):
    assert resolve_base_model(str(tiny_model_dir), tmp_path) == Path(tiny_model_dir)


def test_merged_adapter_serves_the_same_probabilities_and_unmerges_cleanly(tiny_settings, tiny_adapter, tmp_path):
    import shutil

    texts = ["refugees welcome here", "close the border now", "great match tonight", "the minister spoke"]
    merged = StanceClassifier.load(tiny_settings, adapter=tiny_adapter)
    plain = StanceClassifier.load(tiny_settings.model_copy(update={"merge_adapter": False}), adapter=tiny_adapter)
    assert merged.model.base_model.model.model.layers[0].self_attn.q_proj.merged
    np.testing.assert_allclose(merged.predict_proba(texts), plain.predict_proba(texts), atol=1e-5)
    # Swapping unmerges first: after v1 → v2 → v1 the weights, and the outputs, are what they were.
    other = tmp_path / "v2"
    shutil.copytree(tiny_adapter, other)
    (other / "stancestream.json").write_text((tiny_adapter / "stancestream.json").read_text().replace('"v1"', '"v2"'))
    before = merged.predict_proba(texts)
    merged.switch_adapter(other)
    merged.switch_adapter(tiny_adapter)
    np.testing.assert_allclose(merged.predict_proba(texts), before, atol=1e-5)


def test_length_buckets_bound_padding_and_rows_and_cover_every_sequence_once():
    from shared.classifier.scoring import length_buckets

    rng = np.random.default_rng(3)
    lengths = list(rng.integers(15, 140, size=200))
    buckets = length_buckets(lengths, max_rows=16, max_padding=0.15)
    assert sorted(int(i) for b in buckets for i in b) == list(range(200))
    for bucket in buckets:
        real = sum(lengths[i] for i in bucket)
        assert len(bucket) <= 16 and max(lengths[i] for i in bucket) * len(bucket) <= 1.15 * real
    # fixed groups of 16 over the same micro-batch would pad far more
    fixed = [sorted(lengths[:32])[:16], sorted(lengths[:32])[16:]]
    assert sum(max(g) * len(g) for g in fixed) > 1.15 * sum(lengths[:32])


def test_normalize_tweet_replaces_links_and_mentions_only():
    from shared.classifier.scoring import normalize_tweet

    tweet = "@a_b @Cd2 Read https://t.co/Xy12AbC and www.example.org/x?y=1 — mail me at me@example.org #refugees"
    assert normalize_tweet(tweet) == "@user @user Read http and http — mail me at me@example.org #refugees"
    assert normalize_tweet("no links, no handles") == "no links, no handles"


def test_packed_passes_hold_every_sequence_once_within_their_bounds():
    from shared.classifier.scoring import packed_passes

    rng = np.random.default_rng(3)
    sequences = [list(rng.integers(1, 1000, size=n)) for n in rng.integers(15, 140, size=200)]
    passes = packed_passes(sequences, pass_tokens=1024, row_tokens=256, pad_id=0)
    assert sorted(i for p in passes for i in p.index) == list(range(200))
    real = sum(len(s) for s in sequences)
    computed = sum(p.ids.numel() for p in passes)
    assert computed <= 1.1 * real, "best-fit packing should leave little unused"
    for p in passes:
        assert p.ids.shape[1] <= 256 and p.ids.numel() <= 1024
        for k, i in enumerate(p.index):
            row, last, n = int(p.rows[k]), int(p.cols[k]), len(sequences[i])
            # the tweet's tokens end at its last column and its positions count from 0
            assert p.ids[row, last - n + 1: last + 1].tolist() == sequences[i]
            assert p.positions[row, last - n + 1: last + 1].tolist() == list(range(n))
    # Rows are shared out evenly: 9 full rows at 4 a pass run as 3 + 3 + 3, not 4 + 4 + 1.
    assert [p.ids.shape[0] for p in packed_passes([[1] * 256] * 9, pass_tokens=1024)] == [3, 3, 3]
    assert packed_passes([], pass_tokens=1024) == []
    # A few tweets fill levelled rows (3 × 194 tokens), not two full rows and a stub (3 × 256): a pass is as wide
    # as its fullest row.
    few = [[1] * n for n in (70, 66, 64, 62, 60, 58, 80, 70)]
    (small,) = packed_passes(few, pass_tokens=2048, row_tokens=256)
    assert small.ids.numel() <= 1.1 * sum(map(len, few)) and sorted(small.index) == list(range(8))
    # A sequence longer than a row widens the rows to its length.
    (wide,) = packed_passes([[5] * 300, [6] * 10], pass_tokens=1000, row_tokens=256)
    assert wide.ids.shape == (2, 300)
