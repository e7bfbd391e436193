"""LoRA fine-tuning of the base model on labeled tweets, with a dev split and early stopping on dev macro-F1.

Training optimises exactly what inference serves: cross-entropy over the four label-word logits at the last
prompt position (``shared.classifier.scoring.packed_label_logits``, each batch packed into one pass as served), or
over an own 4-way head's logits with ``--head``.
The output is a self-describing adapter directory: peft's weights and config (plus the head, if any) and
``stancestream.json`` (base model and hash, labels, text normalization, data hash and size, hyperparameters,
library versions, dev metrics, command line).
"""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np

from shared.classifier.adapters import ADAPTER_METADATA, save_label_head
from shared.classifier.langid import normalize_lang
from shared.classifier.model import StanceClassifier
from shared.classifier.scoring import (
    LINKS_AND_MENTIONS, PackedPass, hidden_before_layer, label_logits_from_layer, length_buckets, new_label_head,
    packed_batch, packed_label_logits,
)
from shared.messages import CATEGORIES
from shared.settings import Quantization, Scoring, Settings
from shared.training.checkpoint import WeightAverage, load_checkpoint, save_checkpoint
from shared.training.calibration import save_calibration
from shared.training.config import TrainConfig, TrainResult
from shared.training.data import Example, balanced_sampling_weights, class_weights, data_digest, stratified_split
from shared.training.evaluation import evaluate
from shared.training.pretrain import PRETRAIN_DIR, combine, pretrain
from shared.training.metrics import to_indices
from shared.versions import library_versions

log = logging.getLogger(__name__)


class TrainingCancelled(RuntimeError):
    pass


def train(settings: Settings, examples: list[Example], out: Path, config: TrainConfig, *,
          sources: list[str] | None = None, version: str | None = None, resume: bool = False,
          progress: bool = True, should_stop: Callable[[], bool] | None = None,
          frozen_memo: dict | None = None, pretrain_texts: list[str] | None = None) -> TrainResult:
    """Train an adapter on ``examples`` (``sources`` names where they came from, for the metadata).

    ``frozen_memo``: with ``train_layers``, the frozen layers' output per tweet is kept in (and reused from) this
    dict, so runs on overlapping data in one process (the folds of ``cv``) compute it once.
    ``pretrain_texts``: unlabeled tweets for a causal-LM LoRA stage before the task (shared.training.pretrain).

    ``should_stop`` is polled every step; when it turns true, ``TrainingCancelled`` is raised (the last
    checkpoint stays, so ``resume`` can continue)."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(config.seed)
    random.seed(config.seed)
    np.random.seed(config.seed)
    train_set, dev_set = stratified_split(examples, config.dev_fraction, config.dev_seed)
    refit = config.dev_fraction == 0
    if config.train_languages:
        keep = {normalize_lang(code) for code in config.train_languages.split(",") if code.strip()}
        train_set = [ex for ex in train_set if ex.lang in keep]
        if not train_set:
            raise ValueError(f"no training examples in {', '.join(sorted(keep))} "
                             f"(the data has {', '.join(sorted({ex.lang for ex in examples}))})")
    if config.limit:
        train_set = train_set[: config.limit]
        dev_set = dev_set[: max(8, config.limit // 4)]
    if not train_set or (not dev_set and not refit):
        raise ValueError(f"{len(examples)} examples are too few for a dev split stratified by language and label "
                         "(each language × label needs at least 3)")
    if config.translate_train:
        train_set = train_set + [Example(ex.id + ":en", "en", ex.label, ex.translation_en)
                                 for ex in train_set if ex.translation_en and ex.lang != "en"]
    # Consistency pairs: a non-English training tweet and its English translation (the translation is not a
    # training row of its own unless --translate-train adds it).
    paired = [i for i, ex in enumerate(train_set) if config.consistency and ex.translation_en and ex.lang != "en"
              and not ex.id.endswith(":en")]
    if config.consistency and not paired:
        raise ValueError("--consistency needs non-English training tweets with a translation_en column")

    # QLoRA on CUDA; on CPU bitsandbytes' 4-bit path is slower than plain weights, so train unquantized.
    classifier = StanceClassifier.load(settings.model_copy(update={"max_tokens": config.max_tokens}))
    stage = None
    if pretrain_texts:  # the language first, then the task, on top of it
        stage = pretrain(classifier.model, classifier.tokenizer, pretrain_texts, config, out / PRETRAIN_DIR, progress)
        classifier.model = stage.model
        frozen_memo = None  # the frozen layers are no longer the base model's
    model = classifier.model
    if classifier.runtime.quantization is Quantization.nf4:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    # The decoder layers' linear modules by name (peft's "all-linear" string cannot be combined with a layer range).
    linear = sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                     if isinstance(module, torch.nn.Linear) and ".layers." in name})
    targets = linear if config.target_modules == "all-linear" else [m for m in linear if m.endswith(
        ("q_proj", "k_proj", "v_proj", "o_proj"))]
    n_layers = model.config.num_hidden_layers
    start = max(0, n_layers - config.train_layers) if config.train_layers else 0
    lora = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=targets, bias="none",
                      layers_to_transform=list(range(start, n_layers)) if start else None,
                      layers_pattern="layers" if start else None)
    model = get_peft_model(model, lora)
    classifier.model = model
    head = None
    if config.head != "label-words":
        head = new_label_head(model, classifier.label_token_ids, from_label_words=config.head == "trained")
        classifier.label_head = head
    classifier.text_normalization = LINKS_AND_MENTIONS if config.normalize_text else None
    if classifier.scoring is Scoring.label_words:  # the prompt mode reads its own prompt (PAPER_STYLE_PROMPT)
        classifier.use_wording(config.prompt_wording)
    trainable = [p for p in model.parameters() if p.requires_grad] + (list(head.parameters()) if head else [])
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
    average = WeightAverage(trainable, config.ema_decay) if config.ema_decay else None
    steps_per_epoch = math.ceil(len(train_set) / config.batch_size)
    total_steps = max(1, math.ceil(steps_per_epoch * config.epochs))
    warmup = max(1, int(total_steps * config.warmup_fraction))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total_steps - s) / max(1, total_steps - warmup)))
    )
    weights = torch.tensor(class_weights(train_set, config.class_weighting), dtype=torch.float32,
                           device=classifier.runtime.device)
    encoded = classifier.encode([ex.text for ex in train_set])
    dev_encoded = classifier.encode([ex.text for ex in dev_set]) if dev_set else []
    translated = classifier.encode([train_set[i].translation_en for i in paired]) if paired else []
    translation_of = {i: row for row, i in enumerate(paired)}  # training row -> its translation's row
    if start:  # the frozen layers' output, once per example (see shared/classifier/scoring.py)
        memo = frozen_memo.setdefault((classifier.model_id, start), {}) if frozen_memo is not None else {}
        train_inputs = _hidden_cache(classifier, encoded, start, progress, memo)
        dev_inputs = _hidden_cache(classifier, dev_encoded, start, progress, memo) if dev_set else []
        translation_inputs = _hidden_cache(classifier, translated, start, progress, memo) if paired else []
    else:
        train_inputs, dev_inputs, translation_inputs = encoded, dev_encoded, translated

    def batch_logits(inputs: list, idx) -> "torch.Tensor":
        """Logits of examples ``idx``, in that order, from one packed pass, as the served model computes them."""
        return _packed_logits(classifier, [inputs[i] for i in idx], start, model, head)

    def dev_probs() -> np.ndarray:
        probs = np.zeros((len(dev_set), len(CATEGORIES)), dtype=np.float32)
        with torch.no_grad():
            for idx in length_buckets([len(s) for s in dev_encoded], classifier.batch_size):
                probs[idx] = torch.softmax(batch_logits(dev_inputs, idx).float(), dim=-1).cpu().numpy()
        return probs
    targets_idx = to_indices([ex.label for ex in train_set])

    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / "checkpoint"
    state = {"step": 0, "best_f1": -1.0, "bad_evals": 0, "history": []}
    if resume and (checkpoint / "state.json").exists():
        state = load_checkpoint(checkpoint, model, optimizer, scheduler, average, head)
        log.warning("resuming from step %d", state["step"])

    order_rng = np.random.default_rng(config.seed)
    if config.sampling != "shuffle":
        draw = balanced_sampling_weights(train_set, stance_only=config.sampling == "stance-balanced")
        orders = [order_rng.choice(len(train_set), len(train_set), p=draw) for _ in range(math.ceil(config.epochs) + 1)]
    else:
        orders = [order_rng.permutation(len(train_set)) for _ in range(math.ceil(config.epochs) + 1)]
    started = time.time()
    bar = _progress(total_steps, state["step"], progress)
    best_dir = out / "best"

    def save_adapter(directory: Path) -> None:
        model.save_pretrained(directory)
        if head is not None:
            save_label_head(head, directory)

    def run_eval(step: int) -> bool:
        model.eval()
        if average is not None:
            average.swap()  # score (and keep, if best) the averaged weights
        metrics, probs = evaluate(classifier, dev_set, dev_probs())
        entry = {"step": step, "epoch": round(step / steps_per_epoch, 2), "dev_accuracy": metrics["accuracy"],
                 "dev_macro_f1": metrics["macro_f1"], "elapsed_s": round(time.time() - started)}
        state["history"].append(entry)
        improved = metrics["macro_f1"] > state["best_f1"]
        if improved:
            state["best_f1"], state["bad_evals"], state["best_metrics"] = metrics["macro_f1"], 0, metrics
            save_adapter(best_dir)
            # The kept weights' behaviour on tweets they never trained on: what corrects their label shares.
            save_calibration(probs, dev_set, best_dir, "dev split")
        else:
            state["bad_evals"] += 1
        if average is not None:
            average.swap()
        model.train()
        save_checkpoint(checkpoint, model, optimizer, scheduler, state, average, head)
        line = (f"step {step}: dev accuracy {metrics['accuracy']:.3f} macro-F1 {metrics['macro_f1']:.3f}"
                + (" (best)" if improved else ""))
        if progress:
            bar.write(line, file=sys.stderr)
        else:
            log.info(line)
        return state["bad_evals"] >= config.patience

    model.train()
    stop = False
    while state["step"] < total_steps and not stop:
        if should_stop is not None and should_stop():
            bar.close()
            raise TrainingCancelled(f"training stopped at step {state['step']} of {total_steps}")
        step = state["step"]
        epoch, batch_no = divmod(step, steps_per_epoch)
        idx = orders[epoch][batch_no * config.batch_size : (batch_no + 1) * config.batch_size]
        logits = batch_logits(train_inputs, idx).float()
        labels = torch.as_tensor(targets_idx[idx], device=logits.device)
        loss = torch.nn.functional.cross_entropy(logits, labels, weight=weights,
                                               label_smoothing=config.label_smoothing)
        rows = [k for k, i in enumerate(idx) if i in translation_of]
        if rows:
            translation_logits = batch_logits(translation_inputs, [translation_of[idx[k]] for k in rows]).float()
            loss = loss + config.consistency * consistency_loss(logits[rows], translation_logits)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if average is not None:
            average.update(step)
        state["step"] = step + 1
        bar.set_postfix(loss=f"{loss.item():.3f}", epoch=f"{state['step'] / steps_per_epoch:.2f}")
        bar.update(1)
        if state["step"] % config.eval_every == 0 or state["step"] == total_steps:
            if refit:
                save_checkpoint(checkpoint, model, optimizer, scheduler, state, average, head)
            else:
                stop = run_eval(state["step"])
    bar.close()
    if refit:  # nothing to select on: keep the last (averaged) weights
        if average is not None:
            average.swap()
        save_adapter(best_dir)
    elif not best_dir.exists():
        run_eval(state["step"])

    adapter_dir = out / "adapter"
    if adapter_dir.exists():
        shutil.rmtree(adapter_dir)
    shutil.copytree(best_dir, adapter_dir)
    (adapter_dir / "README.md").unlink(missing_ok=True)  # peft's empty model-card template
    config_path = adapter_dir / "adapter_config.json"  # name the base as configured, not a local cache path
    peft_config = json.loads(config_path.read_text()) | {"base_model_name_or_path": settings.base_model}
    config_path.write_text(json.dumps(peft_config, indent=2) + "\n")
    if stage is not None:
        combine(adapter_dir, stage)
    # Worded as in every adapter since v1 (adapters/default), so the field compares across versions.
    prompt = "label-word scoring (shared/classifier.py)" if head is None else f"{config.head} label head"
    if classifier.scoring is Scoring.prompt:
        prompt = "paper-style prompt, " + ("category-number scoring" if head is None else f"{config.head} label head")
    metadata = {
        "version": version or out.name,
        "base_model": settings.base_model,
        "base_model_id": classifier.model_id,
        "labels": [label.value for label in CATEGORIES],
        "text_normalization": classifier.text_normalization,
        "prompt_wording": classifier.wording,
        # The classifier serves the adapter only in this mode (check_adapter).
        "scoring": classifier.scoring.value,
        "prompt": prompt,
        "data": {"sources": list(sources or []), "sha256_16": data_digest(examples), "examples": len(examples),
                 "train": len(train_set), "dev": len(dev_set), "dev_sha256_16": data_digest(dev_set),
                 "consistency_pairs": len(paired)},
        "hyperparameters": asdict(config),
        "pretrain": stage.info if stage is not None else None,
        "dev_metrics": state.get("best_metrics", {}),
        "history": state["history"],
        "steps": state["step"],
        "train_seconds": round(time.time() - started),
        "versions": library_versions(),
        "command": " ".join(sys.argv),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (adapter_dir / ADAPTER_METADATA).write_text(json.dumps(metadata, indent=2, ensure_ascii=False) + "\n")
    return TrainResult(adapter_dir, metadata["dev_metrics"], state["step"], time.time() - started, state["history"])


def predict_with_frozen_memo(classifier: StanceClassifier, texts: list[str], start: int, memo: dict) -> np.ndarray:
    """``classifier.predict_proba`` for an adapter of the layers from ``start`` up, taking the frozen layers'
    output from ``memo`` (``train``'s ``frozen_memo`` entry) and adding what is missing: ``cv`` scores a held-out
    fold whose tweets the other folds' trainings already ran through the frozen layers."""
    import torch

    sequences = classifier.encode(texts)
    inputs = _hidden_cache(classifier, sequences, start, False, memo)
    probs = np.zeros((len(texts), len(CATEGORIES)), dtype=np.float32)
    with torch.inference_mode():
        for idx in length_buckets([len(s) for s in sequences], classifier.batch_size):
            logits = _packed_logits(classifier, [inputs[i] for i in idx], start, classifier.model,
                                    classifier.label_head)
            probs[idx] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
    return probs


def _packed_logits(classifier: StanceClassifier, inputs: list, start: int, model, head) -> "torch.Tensor":
    """(len(inputs), 4) logits, in the order of ``inputs``: token sequences, or with ``start`` each one's residual
    stream entering that layer (``_hidden_cache``), packed end to end into one pass."""
    import torch

    device = classifier.runtime.device
    if start:
        hidden, batch = _packed_hidden(inputs, device)
        logits = label_logits_from_layer(model, hidden, batch, start, classifier.label_token_ids, head)
    else:
        batch = packed_batch(inputs, pad_id=classifier.tokenizer.pad_token_id or 0, device=device)
        logits = packed_label_logits(model, batch, classifier.label_token_ids, head)
    return logits[torch.as_tensor(np.argsort(batch.index), device=logits.device)]


def consistency_loss(logits_a: "torch.Tensor", logits_b: "torch.Tensor") -> "torch.Tensor":
    """Mean symmetric KL divergence between the label distributions of paired rows (a tweet and its translation):
    zero when both read the same, and its gradient pulls both sides toward each other."""
    import torch.nn.functional as F

    log_a, log_b = F.log_softmax(logits_a, dim=-1), F.log_softmax(logits_b, dim=-1)
    return 0.5 * (F.kl_div(log_b, log_a, log_target=True, reduction="batchmean")
                  + F.kl_div(log_a, log_b, log_target=True, reduction="batchmean"))


def _hidden_cache(classifier: StanceClassifier, sequences: list[list[int]], start: int, progress: bool,
                  memo: dict) -> list:
    """Each sequence's residual stream entering layer ``start``, trimmed to its real length; ``memo`` (token ids
    -> stream) is consulted first and filled."""
    import torch
    from tqdm.auto import tqdm

    out: list = [memo.get(tuple(s)) for s in sequences]
    todo = [i for i, row in enumerate(out) if row is None]
    with torch.no_grad(), tqdm(total=len(todo), desc=f"caching layers <{start}", unit="tweet",
                               disable=not progress or not todo, mininterval=2.0) as bar:
        for bucket in length_buckets([len(sequences[i]) for i in todo], classifier.batch_size):
            idx = [todo[j] for j in bucket]
            ids, mask = classifier.collate([sequences[i] for i in idx])
            hidden = hidden_before_layer(classifier.model, ids, mask, start)
            for row, i in enumerate(idx):
                out[i] = memo[tuple(sequences[i])] = hidden[row, : len(sequences[i])].detach().clone()
            bar.update(len(idx))
    return out


def _packed_hidden(streams: list, device: str) -> tuple["torch.Tensor", PackedPass]:
    """Residual streams, one (tokens, hidden) tensor per tweet, laid out as one packed pass (rows' unused ends
    zero) and the pass that describes them."""
    import torch

    batch = packed_batch([[0] * stream.shape[0] for stream in streams], device=device)
    hidden = torch.zeros((*batch.ids.shape, streams[0].shape[1]), dtype=streams[0].dtype, device=device)
    for row, last, i in zip(batch.rows.tolist(), batch.cols.tolist(), batch.index):
        hidden[row, last + 1 - streams[i].shape[0]: last + 1] = streams[i]
    return hidden, batch


def _progress(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="training", unit="step", disable=not enabled,
                dynamic_ncols=True, mininterval=2.0)
