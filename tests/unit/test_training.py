"""`stancestream train` on the tiny model: data checks, the stratified dev split, adapter output, resume."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from labeled import CATEGORIES, TEXTS, write_labeled_csv as _write_csv
from shared.classifier.model import StanceClassifier
from shared.training.config import TrainConfig
from shared.training.data import read_labeled, stratified_split
from shared.training.loop import train

pytestmark = pytest.mark.model


def _variant(adapter_dir, dest, **metadata):
    """A copy of an adapter whose stancestream.json says something else (a version, a future field); a field
    given as None is left out, as adapters from before it leave it out."""
    shutil.copytree(adapter_dir, dest)
    meta = json.loads((dest / "stancestream.json").read_text()) | metadata
    meta = {key: value for key, value in meta.items() if value is not None}
    (dest / "stancestream.json").write_text(json.dumps(meta))
    return dest


def test_read_labeled_normalises_languages_and_rejects_bad_rows(tmp_path):
    examples = read_labeled([_write_csv(tmp_path / "ok.csv")])
    assert {ex.lang for ex in examples} == {"en", "es", "id"}  # Twitter's `in` is ISO `id`
    bad = tmp_path / "bad.csv"
    bad.write_text("id,lang,label,text\n1,en,maybe,hello\n")
    with pytest.raises(ValueError, match="unknown label 'maybe'"):
        read_labeled([bad])
    missing = tmp_path / "missing.csv"
    missing.write_text("id,text\n1,hello\n")
    with pytest.raises(ValueError, match="missing column"):
        read_labeled([missing])


def test_dev_split_is_stratified_disjoint_and_reproducible(tmp_path):
    examples = read_labeled([_write_csv(tmp_path / "d.csv", n_per_cell=10)])
    train_a, dev_a = stratified_split(examples, 0.2, seed=1)
    train_b, dev_b = stratified_split(examples, 0.2, seed=1)
    assert [e.id for e in dev_a] == [e.id for e in dev_b]
    assert not {e.id for e in train_a} & {e.id for e in dev_a}
    assert len(train_a) + len(dev_a) == len(examples)
    strata = {(e.lang, e.label) for e in examples}
    assert {(e.lang, e.label) for e in dev_a} == strata  # every language × label is in dev
    assert all(sum((e.lang, e.label) == s for e in dev_a) == 2 for s in strata)  # 20% of 10


def test_train_writes_a_loadable_self_describing_adapter_and_resumes(tmp_path, tiny_settings):
    data = _write_csv(tmp_path / "train.csv", n_per_cell=5)
    config = TrainConfig(epochs=1, batch_size=8, eval_every=3, learning_rate=5e-3, dev_fraction=0.2,
                         max_tokens=32)
    first = train(tiny_settings, read_labeled([data]), tmp_path / "run", config, version="v-test", progress=False)
    meta = json.loads((first.adapter_dir / "stancestream.json").read_text())
    assert meta["version"] == "v-test" and meta["labels"] == CATEGORIES
    assert meta["data"]["examples"] == 60 and meta["data"]["train"] + meta["data"]["dev"] == 60
    assert set(meta["dev_metrics"]) >= {"accuracy", "macro_f1", "per_language"}
    assert meta["hyperparameters"]["lora_rank"] == config.lora_rank
    assert (first.adapter_dir / "adapter_model.safetensors").exists()

    tuned = StanceClassifier.load(tiny_settings, adapter=first.adapter_dir)
    base = StanceClassifier.load(tiny_settings)
    texts = list(TEXTS.values())
    assert tuned.adapter_version == "v-test"
    assert not np.allclose(tuned.predict_proba(texts), base.predict_proba(texts), atol=1e-4)

    steps_one_epoch = first.steps
    resumed = train(tiny_settings, read_labeled([data]), tmp_path / "run", TrainConfig(**{**vars(config), "epochs": 2}),
                    version="v-test", resume=True, progress=False)
    assert resumed.steps == 2 * steps_one_epoch
    assert [h["step"] for h in resumed.history][: len(first.history)] == [h["step"] for h in first.history]

    reseeded = train(tiny_settings, read_labeled([data]), tmp_path / "seed5", TrainConfig(**{**vars(config), "seed": 5}),
                     progress=False)
    reseeded_meta = json.loads((reseeded.adapter_dir / "stancestream.json").read_text())
    assert reseeded_meta["hyperparameters"]["seed"] == 5
    assert reseeded_meta["data"]["dev_sha256_16"] == meta["data"]["dev_sha256_16"]  # same dev tweets, other seed


def test_top_layer_split_of_a_packed_pass_equals_the_plain_forward_and_trains(tiny_classifier):
    """Packed, the final layer runs at each tweet's last token only (shared.classifier.final_layer): the logits
    are still the plain forward's, and the loss still backpropagates through it."""
    import torch

    from shared.classifier.attention import segments_of
    from shared.classifier.scoring import hidden_before_layer, label_logits_from_layer, packed_passes, unwrap

    c = tiny_classifier
    texts = ["refugees welcome here", "great football match tonight team won again", "border policy " * 30]
    ids, mask = c.collate(c.encode(texts))
    (packed,) = packed_passes(c.encode(texts), c.pass_tokens)
    with torch.no_grad():
        full = c.label_logits(ids, mask)[torch.as_tensor(packed.index)]
    for start in range(c.model.config.num_hidden_layers):
        hidden = hidden_before_layer(c.model, packed.ids, None, start, position_ids=packed.positions,
                                     packed_segments=segments_of(packed))
        logits = label_logits_from_layer(c.model, hidden, packed, start, c.label_token_ids)
        assert torch.allclose(logits, full, atol=1e-5)
        c.model.zero_grad()
        logits.logsumexp(-1).sum().backward()
        assert unwrap(c.model)[1].layers[-1].mlp.down_proj.weight.grad.abs().sum() > 0
    c.model.zero_grad(set_to_none=True)


@pytest.mark.parametrize("start", [0, 1])
def test_a_packed_training_batch_has_the_loss_and_gradients_of_its_tweets_one_at_a_time(tiny_classifier, start):
    """What a training step computes (its batch packed into one pass; with ``start``, from the frozen layers'
    cached output) against the plain forward of each tweet alone: the same logits, in the batch's order, and the
    same gradient in every weight above ``start``."""
    import torch

    from shared.classifier.scoring import unwrap
    from shared.training.loop import _hidden_cache, _packed_logits

    c = tiny_classifier
    texts = ["border policy " * 20, "refugees welcome here", "great football match tonight team won again",
             "we need more nurses from abroad", "la frontera está cerrada", "stop the boats now " * 3]
    sequences = c.encode(texts)
    labels = torch.tensor([0, 1, 2, 3, 1, 0])
    layers = unwrap(c.model)[1].layers
    watched = [layers[-1].mlp.down_proj.weight, layers[start].self_attn.q_proj.weight,
               layers[start].self_attn.k_proj.weight]

    def gradients(loss: "torch.Tensor") -> list:
        c.model.zero_grad(set_to_none=True)
        loss.backward()
        return [w.grad.clone() for w in watched]

    inputs = _hidden_cache(c, sequences, start, False, {}) if start else sequences
    packed = _packed_logits(c, inputs, start, c.model, None)
    alone = torch.cat([c.label_logits(*c.collate([s])) for s in sequences])
    assert torch.allclose(packed, alone, atol=1e-5)
    for got, expected in zip(gradients(torch.nn.functional.cross_entropy(packed, labels)),
                             gradients(torch.nn.functional.cross_entropy(alone, labels)), strict=True):
        assert got.abs().sum() > 0
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    c.model.zero_grad(set_to_none=True)


def test_training_only_the_top_layer_adapts_only_that_layer(tmp_path, tiny_settings):
    from safetensors.torch import load_file

    data = _write_csv(tmp_path / "train.csv", n_per_cell=3)
    config = TrainConfig(epochs=1, batch_size=8, eval_every=2, learning_rate=5e-3, dev_fraction=0.34,
                         max_tokens=32, train_layers=1)
    result = train(tiny_settings, read_labeled([data]), tmp_path / "top", config, progress=False)
    keys = load_file(result.adapter_dir / "adapter_model.safetensors").keys()
    assert keys and all(".layers.1." in k for k in keys)
    # The dev score computed on cached activations is the score of the served adapter.
    from shared.training.data import stratified_split
    from shared.training.evaluation import evaluate

    tuned = StanceClassifier.load(tiny_settings, adapter=result.adapter_dir)
    _, dev = stratified_split(read_labeled([data]), config.dev_fraction, config.seed)
    assert evaluate(tuned, dev)[0]["macro_f1"] == pytest.approx(result.dev_metrics["macro_f1"])


def test_weight_average_is_what_evaluation_sees_and_training_continues_from_the_raw_weights():
    import torch

    from shared.training.checkpoint import WeightAverage

    weight = torch.nn.Parameter(torch.zeros(3))
    average = WeightAverage([weight], decay=0.5)
    with torch.no_grad():
        weight.fill_(1.0)
    average.update(step=100)  # past the warm-up: shadow = 0.5 * 0 + 0.5 * 1
    average.swap()
    assert torch.allclose(weight, torch.full((3,), 0.5))
    average.swap()
    assert torch.allclose(weight, torch.ones(3)) and torch.allclose(average.shadow[0], torch.full((3,), 0.5))


def test_a_run_stopped_and_resumed_ends_where_an_uninterrupted_one_does(tmp_path, tiny_settings):
    from safetensors.numpy import load_file

    from shared.training.loop import TrainingCancelled

    examples = read_labeled([_write_csv(tmp_path / "train.csv", n_per_cell=5)])
    # A refit keeps its last weights (not the best dev step's, which may come before the stop); with dropout the
    # random state matters.
    config = TrainConfig(epochs=2, batch_size=8, eval_every=3, learning_rate=5e-3, dev_fraction=0.0,
                         max_tokens=32, lora_dropout=0.3, ema_decay=0.9)
    whole = train(tiny_settings, examples, tmp_path / "whole", config, progress=False)
    polls = iter(range(100))
    with pytest.raises(TrainingCancelled):  # stopped at step 7, after the checkpoint of step 6
        train(tiny_settings, examples, tmp_path / "split", config, progress=False,
              should_stop=lambda: next(polls) == 7)
    split = train(tiny_settings, examples, tmp_path / "split", config, progress=False, resume=True)
    assert split.steps == whole.steps
    a, b = (load_file(str(r.adapter_dir / "adapter_model.safetensors")) for r in (whole, split))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_training_with_a_weight_average_keeps_it_across_a_resume(tmp_path, tiny_settings):
    data = _write_csv(tmp_path / "train.csv", n_per_cell=5)
    config = TrainConfig(epochs=1, batch_size=8, eval_every=3, learning_rate=5e-3, dev_fraction=0.2,
                         max_tokens=32, ema_decay=0.9)
    first = train(tiny_settings, read_labeled([data]), tmp_path / "run", config, progress=False)
    assert (tmp_path / "run" / "checkpoint" / "average.pt").exists()
    resumed = train(tiny_settings, read_labeled([data]), tmp_path / "run", TrainConfig(**{**vars(config), "epochs": 2}),
                    resume=True, progress=False)
    assert resumed.steps == 2 * first.steps
    meta = json.loads((resumed.adapter_dir / "stancestream.json").read_text())
    assert meta["hyperparameters"]["ema_decay"] == 0.9


def test_label_smoothing_reaches_the_loss_and_out_of_range_values_are_refused(tmp_path, tiny_settings, capsys):
    from safetensors.torch import load_file

    from services.cli import main

    data = _write_csv(tmp_path / "train.csv", n_per_cell=5)
    config = TrainConfig(epochs=1, batch_size=8, eval_every=3, learning_rate=5e-3, dev_fraction=0.2, max_tokens=32)
    plain = train(tiny_settings, read_labeled([data]), tmp_path / "plain", config, progress=False)
    smooth = train(tiny_settings, read_labeled([data]), tmp_path / "smooth",
                   TrainConfig(**{**vars(config), "label_smoothing": 0.2}), progress=False)
    weights = [load_file(r.adapter_dir / "adapter_model.safetensors") for r in (plain, smooth)]
    assert weights[0].keys() == weights[1].keys()
    assert any(not weights[0][k].equal(weights[1][k]) for k in weights[0])
    meta = json.loads((smooth.adapter_dir / "stancestream.json").read_text())
    assert meta["hyperparameters"]["label_smoothing"] == 0.2

    assert main(["train", "--data", str(data), "--out", str(tmp_path / "bad"), "--label-smoothing", "1.5"]) == 2
    assert "--label-smoothing must be in [0, 1), got 1.5" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_refit_without_dev_split_trains_on_everything_and_keeps_the_final_averaged_weights(tmp_path, tiny_settings,
                                                                                          capsys):
    import torch
    from safetensors.torch import load_file

    from services.cli import main

    data = _write_csv(tmp_path / "train.csv", n_per_cell=5)
    config = TrainConfig(epochs=1, batch_size=8, eval_every=3, learning_rate=5e-3, dev_fraction=0.0, max_tokens=32,
                         ema_decay=0.5)
    result = train(tiny_settings, read_labeled([data]), tmp_path / "refit", config, progress=False)
    meta = json.loads((result.adapter_dir / "stancestream.json").read_text())
    assert (meta["data"]["train"], meta["data"]["dev"]) == (60, 0)
    assert result.dev_metrics == {} and meta["history"] == [] and result.steps == 8  # ceil(60 / 8), no early stop
    # The last checkpoint holds the raw weights and their average; the adapter must be the average.
    kept = load_file(result.adapter_dir / "adapter_model.safetensors")
    raw = load_file(tmp_path / "refit" / "checkpoint" / "adapter.safetensors")
    averaged = torch.load(tmp_path / "refit" / "checkpoint" / "average.pt", weights_only=True)
    assert sorted(kept) == sorted(raw)
    assert all(any(t.shape == a.shape and t.equal(a) for t in kept.values()) for a in averaged)
    assert any(not kept[k].equal(raw[k]) for k in kept)

    assert main(["train", "--data", str(data), "--out", str(tmp_path / "bad"), "--dev-fraction", "1"]) == 2
    assert "--dev-fraction must be in [0, 1), got 1.0" in capsys.readouterr().err


def test_a_label_head_started_from_the_label_words_scores_exactly_as_they_do(tiny_classifier):
    import torch

    from shared.classifier.scoring import label_logits, new_label_head

    c = tiny_classifier
    ids, mask = c.collate(c.encode(list(TEXTS.values())))
    head = new_label_head(c.model, c.label_token_ids, from_label_words=True)
    fresh = new_label_head(c.model, c.label_token_ids, from_label_words=False)
    with torch.no_grad():
        words = c.label_logits(ids, mask)
        torch.testing.assert_close(label_logits(c.model, ids, mask, c.label_token_ids, head), words)
        assert not torch.allclose(label_logits(c.model, ids, mask, c.label_token_ids, fresh), words)


@pytest.mark.parametrize("head", ["trained", "fresh"])
def test_a_trained_label_head_is_saved_served_and_swapped_out(tmp_path, tiny_settings, tiny_adapter, head):

    import torch
    from safetensors.torch import load_file, save_file

    from shared.classifier.adapters import LABEL_HEAD_FILE, check_adapter
    from shared.classifier.errors import ClassifierError
    from shared.training.data import stratified_split
    from shared.training.evaluation import evaluate

    data = _write_csv(tmp_path / "train.csv", n_per_cell=3)
    config = TrainConfig(epochs=1, batch_size=8, eval_every=2, learning_rate=5e-3, dev_fraction=0.34,
                         max_tokens=32, train_layers=1, ema_decay=0.5, head=head)
    result = train(tiny_settings, read_labeled([data]), tmp_path / "run", config, progress=False)
    saved = load_file(result.adapter_dir / LABEL_HEAD_FILE)
    served = StanceClassifier.load(tiny_settings, adapter=result.adapter_dir)
    rows = served.model.get_output_embeddings().weight[served.label_token_ids]
    assert saved["weight"].shape == rows.shape and not torch.allclose(saved["weight"], rows)
    assert torch.equal(served.label_head.weight.detach(), saved["weight"])
    # The dev score recorded in training (on cached activations, through the head) is the served score.
    _, dev = stratified_split(read_labeled([data]), config.dev_fraction, config.dev_seed)
    assert evaluate(served, dev)[0]["macro_f1"] == pytest.approx(result.dev_metrics["macro_f1"])
    texts = list(TEXTS.values())
    with_head = served.predict_proba(texts)

    # Switching to an adapter without a head scores through the label words again.
    served.switch_adapter(tiny_adapter)
    assert served.label_head is None
    np.testing.assert_allclose(served.predict_proba(texts),
                               StanceClassifier.load(tiny_settings, adapter=tiny_adapter).predict_proba(texts),
                               atol=1e-6)

    # A head that does not fit the model is refused before anything switches.
    broken = _variant(result.adapter_dir, tmp_path / "broken", version="broken")
    save_file({"weight": torch.zeros(4, 3), "bias": torch.zeros(4)}, broken / LABEL_HEAD_FILE)
    served.switch_adapter(result.adapter_dir)
    with pytest.raises(ClassifierError, match="label head"):
        served.switch_adapter(broken)
    assert served.adapter_version == result.adapter_dir.parent.name
    np.testing.assert_allclose(served.predict_proba(texts), with_head, atol=1e-6)
    # The registry's completeness check reads the head too: a truncated file never gets activated.
    (broken / LABEL_HEAD_FILE).write_bytes((result.adapter_dir / LABEL_HEAD_FILE).read_bytes()[:40])
    with pytest.raises(ClassifierError, match="label head .* is unreadable"):
        check_adapter(broken)


def test_an_unknown_head_is_refused(tmp_path, capsys):
    from services.cli import main

    data = _write_csv(tmp_path / "train.csv", n_per_cell=3)
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "bad"), "--head", "mlp"]) == 2
    assert "--head must be one of label-words, trained, fresh, got 'mlp'" in capsys.readouterr().err


def test_training_on_some_languages_keeps_every_language_in_dev(tmp_path, tiny_settings):
    data = _write_csv(tmp_path / "train.csv", n_per_cell=5)
    examples = read_labeled([data])
    config = TrainConfig(epochs=1, batch_size=8, eval_every=3, learning_rate=5e-3, dev_fraction=0.2, max_tokens=32,
                         train_languages="en, in")  # Twitter's `in` is Indonesian, as in the data
    result = train(tiny_settings, examples, tmp_path / "run", config, progress=False)
    meta = json.loads((result.adapter_dir / "stancestream.json").read_text())
    split_train, split_dev = stratified_split(examples, config.dev_fraction, config.dev_seed)
    assert meta["data"]["train"] == sum(ex.lang in {"en", "id"} for ex in split_train) < len(split_train)
    assert meta["data"]["dev"] == len(split_dev) and set(result.dev_metrics["per_language"]) == {"en", "es", "id"}

    with pytest.raises(ValueError, match="no training examples in fr \\(the data has en, es, id\\)"):
        train(tiny_settings, examples, tmp_path / "none", TrainConfig(**{**vars(config), "train_languages": "fr"}),
              progress=False)


def test_an_adapter_records_the_wording_it_was_trained_in_and_is_served_in_it(tmp_path, tiny_settings):
    from shared.classifier.adapters import check_adapter
    from shared.classifier.errors import ClassifierError
    from shared.classifier.scoring import PROMPT_WORDINGS
    from shared.training.evaluation import evaluate

    data = _write_csv(tmp_path / "train.csv", n_per_cell=5)
    config = TrainConfig(epochs=1, batch_size=8, eval_every=3, learning_rate=5e-3, dev_fraction=0.2, max_tokens=32,
                         prompt_wording="short")
    result = train(tiny_settings, read_labeled([data]), tmp_path / "run", config, progress=False)
    assert json.loads((result.adapter_dir / "stancestream.json").read_text())["prompt_wording"] == "short"
    served = StanceClassifier.load(tiny_settings, adapter=result.adapter_dir)
    tok = served.tokenizer

    def wrapped(wording: str, text: str) -> list[int]:
        prefix, suffix = PROMPT_WORDINGS[wording]
        return tok(prefix + text + suffix, add_special_tokens=False)["input_ids"]

    (short,) = served.encode(["refugees welcome"])
    assert short == [tok.bos_token_id] + wrapped("short", "refugees welcome")
    # Training scored its dev split in the same wording as the served adapter scores it now.
    _, dev = stratified_split(read_labeled([data]), config.dev_fraction, config.dev_seed)
    assert evaluate(served, dev)[0]["macro_f1"] == pytest.approx(result.dev_metrics["macro_f1"])

    # An adapter from before the option records no wording: it was trained, and is served, with the instruction one.
    served.switch_adapter(_variant(result.adapter_dir, tmp_path / "v1-like", version="v1-like", prompt_wording=None))
    assert TrainConfig().prompt_wording == "instruction"  # the README's `train` default, v1's wording
    (longer,) = served.encode(["refugees welcome"])
    assert longer == [tok.bos_token_id] + wrapped("instruction", "refugees welcome") and len(longer) > len(short)


    future = _variant(result.adapter_dir, tmp_path / "future", version="future", prompt_wording="haiku")
    for attempt in (lambda: check_adapter(future), lambda: served.switch_adapter(future)):
        with pytest.raises(ClassifierError, match="prompt wording 'haiku'"):
            attempt()
    assert served.encode(["refugees welcome"]) == [longer]  # the adapter that served still does
    with pytest.raises(ValueError, match="--prompt-wording must be one of instruction, short"):
        TrainConfig(prompt_wording="haiku")


def test_an_adapter_trained_on_normalized_tweets_is_served_normalized_tweets(tmp_path, tiny_settings, tiny_adapter):
    from shared.classifier.scoring import normalize_tweet
    from shared.training.evaluation import evaluate

    data = _write_csv(tmp_path / "train.csv", n_per_cell=5)
    config = TrainConfig(epochs=1, batch_size=8, eval_every=3, learning_rate=5e-3, dev_fraction=0.2, max_tokens=32,
                         normalize_text=True)
    result = train(tiny_settings, read_labeled([data]), tmp_path / "run", config, progress=False)
    assert json.loads((result.adapter_dir / "stancestream.json").read_text())["text_normalization"] == \
        "links-and-mentions"
    served = StanceClassifier.load(tiny_settings, adapter=result.adapter_dir)
    tweet = "@someone look https://t.co/abcdefghij"
    assert served.encode([tweet]) == served.encode([normalize_tweet(tweet)]) != served.encode([tweet + " more"])
    _, dev = stratified_split(read_labeled([data]), config.dev_fraction, config.dev_seed)
    assert evaluate(served, dev)[0]["macro_f1"] == pytest.approx(result.dev_metrics["macro_f1"])

    served.switch_adapter(tiny_adapter)  # trained on raw text: served raw text
    assert served.encode([tweet]) != served.encode([normalize_tweet(tweet)])

    # A normalization this version does not know is refused by the registry's check and by the swap alike.

    from shared.classifier.adapters import check_adapter
    from shared.classifier.errors import ClassifierError

    future = _variant(result.adapter_dir, tmp_path / "future", version="future", text_normalization="emoji")
    for attempt in (lambda: check_adapter(future), lambda: served.switch_adapter(future)):
        with pytest.raises(ClassifierError, match="text normalization 'emoji'"):
            attempt()
    assert served.encode([tweet]) != served.encode([normalize_tweet(tweet)])  # the raw-text adapter still serves
