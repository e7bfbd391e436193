"""LoRA fine-tuning of the base model on labeled tweets, with a dev split and early stopping on dev macro-F1.

Training optimises exactly what inference serves: cross-entropy over the four label-word logits at the last
prompt position (``shared.classifier.label_logits``), or over an own 4-way head's logits with ``--head``. The
output is a self-describing adapter directory: peft's weights and config (plus the head, if any) and
``stancestream.json`` (base model and hash, labels, text normalization, data hash and size, hyperparameters,
library versions, dev metrics, command line).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from shared.classifier.adapters import ADAPTER_METADATA, LABEL_HEAD_FILE, save_label_head
from shared.classifier.model import StanceClassifier
from shared.classifier.scoring import (
    LINKS_AND_MENTIONS, hidden_before_layer, label_logits_from_layer, length_buckets, new_label_head,
)
from shared.classifier.langid import normalize_lang
from shared.messages import CATEGORIES, Category
from shared.training.metrics import per_language, scores, to_indices
from shared.settings import Quantization, Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Example:
    id: str
    lang: str
    label: Category
    text: str
    translation_en: str = ""


class TrainingCancelled(RuntimeError):
    pass


def _option(default, help: str):
    return field(default=default, metadata={"help": help})


HEADS = ("label-words", "trained", "fresh")


@dataclass
class TrainConfig:
    """A training recipe; each field is a `stancestream train` option, its help the explanation below."""

    epochs: float = _option(2.0, "passes over the training split")
    learning_rate: float = _option(2e-4, "AdamW peak learning rate")
    batch_size: int = _option(16, "tweets per optimizer step")
    lora_rank: int = _option(16, "LoRA rank r")
    lora_alpha: int = _option(32, "LoRA alpha (the update is scaled by alpha / r)")
    lora_dropout: float = _option(0.05, "dropout on the LoRA input")
    target_modules: str = _option("all-linear", "all-linear, or attention (q, k, v, o projections only)")
    class_weighting: str = _option("sqrt", "loss weight per class: none, sqrt (1/sqrt(frequency)) or balanced "
                                           "(1/frequency)")
    label_smoothing: float = _option(0.0, "share of each target's probability spread evenly over all four labels "
                                          "(0 = off): softens the noisy human labels")
    head: str = _option("label-words", "how the last hidden state becomes four scores: label-words (the label words' "
                        "rows of the output embedding, not trained), trained (a 4-way linear head started from "
                        "those rows and trained with the adapter) or fresh (a randomly initialised 4-way head)")
    train_languages: str = _option("", "train only on these languages, comma-separated (e.g. en or en,es); the dev "
                                   "split still covers every language, so it measures transfer to the others "
                                   "(default: all)")
    normalize_text: bool = _option(False, "replace links with 'http' and @mentions with '@user' (TweetEval's "
                                   "preprocessing); recorded in the adapter, so serving does the same")
    translate_train: bool = _option(False, "add the English translations (translation_en) as extra examples")
    dev_fraction: float = _option(0.12, "share of the data held out as dev split (stratified by language x label); "
                                        "0 = refit on all of it: no dev scores or early stopping, the final "
                                        "(averaged) weights are kept")
    dev_seed: int = _option(13, "seed of the dev split; apart from --seed so runs with other seeds are scored on "
                                "the same dev tweets")
    eval_every: int = _option(40, "optimizer steps between dev evaluations")
    patience: int = _option(4, "dev evaluations without a macro-F1 gain before stopping early")
    warmup_fraction: float = _option(0.06, "share of the steps with a linear learning-rate warm-up")
    seed: int = _option(13, "seed of LoRA initialisation and batch order")
    ema_decay: float = _option(0.0, "evaluate and keep an exponential moving average of the LoRA weights with this "
                                    "decay (e.g. 0.95; 0 = off): smooths the step-to-step swings of the dev score")
    max_tokens: int = _option(128, "tweets are truncated to this many tokens")
    train_layers: int | None = _option(None, "LoRA on the top N decoder layers only; the layers below are run "
                                             "once per tweet and cached (much faster on CPU)")
    limit: int | None = _option(None, "train on the first N examples only (smoke tests)")

    def __post_init__(self):
        if self.head not in HEADS:
            raise ValueError(f"--head must be one of {', '.join(HEADS)}, got {self.head!r}")
        for name in ("label_smoothing", "ema_decay", "dev_fraction"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be in [0, 1), got {getattr(self, name)}")


@dataclass
class TrainResult:
    adapter_dir: Path
    dev_metrics: dict
    steps: int
    seconds: float
    history: list[dict] = field(default_factory=list)


def read_labeled(paths: list[Path]) -> list[Example]:
    """Rows with columns id, lang, label, text (translation_en optional, extra columns ignored)."""
    examples = []
    for path in paths:
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            missing = {"id", "lang", "label", "text"} - set(reader.fieldnames or [])
            if missing:
                raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
            for line, row in enumerate(reader, start=2):
                try:
                    label = Category(row["label"].strip())
                except ValueError:
                    raise ValueError(f"{path}:{line}: unknown label {row['label']!r}") from None
                if row["text"].strip():
                    examples.append(Example(row["id"], normalize_lang(row["lang"]) or "und", label,
                                            row["text"], (row.get("translation_en") or "").strip()))
    if not examples:
        raise ValueError("no labeled examples found")
    return examples


def stratified_split(examples: list[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Dev split stratified by (language, label): every stratum keeps its share, at least one example if >= 3."""
    if fraction <= 0:
        return list(examples), []
    rng = random.Random(seed)
    strata: dict[tuple[str, Category], list[Example]] = {}
    for ex in examples:
        strata.setdefault((ex.lang, ex.label), []).append(ex)
    train, dev = [], []
    for key in sorted(strata, key=lambda k: (k[0], k[1].value)):
        group = strata[key][:]
        rng.shuffle(group)
        n_dev = round(len(group) * fraction) if len(group) >= 3 else 0
        n_dev = max(n_dev, 1) if len(group) >= 3 else 0
        dev.extend(group[:n_dev])
        train.extend(group[n_dev:])
    return train, dev


def data_digest(examples: list[Example]) -> str:
    digest = hashlib.sha256()
    for ex in sorted(examples, key=lambda e: e.id):
        digest.update(f"{ex.id}\t{ex.lang}\t{ex.label.value}\t{ex.text}\n".encode())
    return digest.hexdigest()[:16]


def class_weights(examples: list[Example], mode: str) -> np.ndarray:
    counts = np.array([sum(ex.label is label for ex in examples) for label in CATEGORIES], dtype=float)
    counts = np.maximum(counts, 1)
    if mode == "none":
        return np.ones(len(CATEGORIES))
    weights = (counts.sum() / counts) if mode == "balanced" else np.sqrt(counts.sum() / counts)
    return weights / weights.mean()


def evaluate(classifier: StanceClassifier, examples: list[Example], probs: np.ndarray | None = None
             ) -> tuple[dict, np.ndarray]:
    if probs is None:
        probs = classifier.predict_proba([ex.text for ex in examples])
    y_true = to_indices([ex.label for ex in examples])
    y_pred = probs.argmax(axis=1)
    metrics = scores(y_true, y_pred) | {"per_language": per_language([ex.lang for ex in examples], y_true, y_pred)}
    return metrics, probs


def train(settings: Settings, examples: list[Example], out: Path, config: TrainConfig, *,
          sources: list[str] | None = None, version: str | None = None, resume: bool = False,
          progress: bool = True, should_stop: Callable[[], bool] | None = None) -> TrainResult:
    """Train an adapter on ``examples`` (``sources`` names where they came from, for the metadata).

    ``should_stop`` is polled every step; when it turns true, ``TrainingCancelled`` is raised (the last
    checkpoint stays, so ``resume`` can continue)."""
    import torch
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
    from peft.utils import get_peft_model_state_dict

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

    # QLoRA on CUDA; on CPU bitsandbytes' 4-bit path is slower than plain weights, so train unquantized.
    classifier = StanceClassifier.load(settings.model_copy(update={"max_tokens": config.max_tokens}))
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
    trainable = [p for p in model.parameters() if p.requires_grad] + (list(head.parameters()) if head else [])
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=0.0)
    average = _WeightAverage(trainable, config.ema_decay) if config.ema_decay else None
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
    if start:  # the frozen layers' output, once per example (see shared/classifier.py)
        train_inputs = _hidden_cache(classifier, encoded, start, progress)
        dev_inputs = _hidden_cache(classifier, dev_encoded, start, progress) if dev_set else []
    else:
        train_inputs, dev_inputs = encoded, dev_encoded

    def batch_logits(inputs: list, idx) -> "torch.Tensor":
        if start:
            hidden, mask = _pad_hidden([inputs[i] for i in idx], classifier.runtime.device)
            return label_logits_from_layer(model, hidden, mask, start, classifier.label_token_ids, head)
        ids, mask = classifier.collate([inputs[i] for i in idx])
        return classifier.label_logits(ids, mask)

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
        state = json.loads((checkpoint / "state.json").read_text())
        from safetensors.torch import load_file

        set_peft_model_state_dict(model, load_file(checkpoint / "adapter.safetensors"))
        if head is not None:
            head.load_state_dict(load_file(checkpoint / LABEL_HEAD_FILE))
        optimizer.load_state_dict(torch.load(checkpoint / "optimizer.pt", weights_only=True))
        scheduler.load_state_dict(torch.load(checkpoint / "scheduler.pt", weights_only=True))
        if average is not None:
            average.load(torch.load(checkpoint / "average.pt", weights_only=True))
        log.warning("resuming from step %d", state["step"])

    order_rng = np.random.default_rng(config.seed)
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
        metrics, _ = evaluate(classifier, dev_set, dev_probs())
        entry = {"step": step, "epoch": round(step / steps_per_epoch, 2), "dev_accuracy": metrics["accuracy"],
                 "dev_macro_f1": metrics["macro_f1"], "elapsed_s": round(time.time() - started)}
        state["history"].append(entry)
        improved = metrics["macro_f1"] > state["best_f1"]
        if improved:
            state["best_f1"], state["bad_evals"], state["best_metrics"] = metrics["macro_f1"], 0, metrics
            save_adapter(best_dir)
        else:
            state["bad_evals"] += 1
        if average is not None:
            average.swap()
        model.train()
        _save_checkpoint(checkpoint, model, optimizer, scheduler, state, get_peft_model_state_dict, average, head)
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
                _save_checkpoint(checkpoint, model, optimizer, scheduler, state, get_peft_model_state_dict, average,
                                 head)
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
    metadata = {
        "version": version or out.name,
        "base_model": settings.base_model,
        "base_model_id": classifier.model_id,
        "labels": [label.value for label in CATEGORIES],
        "text_normalization": classifier.text_normalization,
        "prompt": "label-word scoring (shared/classifier.py)" if head is None else f"{config.head} label head",
        "data": {"sources": list(sources or []), "sha256_16": data_digest(examples), "examples": len(examples),
                 "train": len(train_set), "dev": len(dev_set), "dev_sha256_16": data_digest(dev_set)},
        "hyperparameters": asdict(config),
        "dev_metrics": state.get("best_metrics", {}),
        "history": state["history"],
        "steps": state["step"],
        "train_seconds": round(time.time() - started),
        "versions": _library_versions(),
        "command": " ".join(sys.argv),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (adapter_dir / ADAPTER_METADATA).write_text(json.dumps(metadata, indent=2, ensure_ascii=False) + "\n")
    return TrainResult(adapter_dir, metadata["dev_metrics"], state["step"], time.time() - started, state["history"])


def _hidden_cache(classifier: StanceClassifier, sequences: list[list[int]], start: int, progress: bool) -> list:
    """Each sequence's residual stream entering layer ``start``, trimmed to its real length."""
    import torch
    from tqdm.auto import tqdm

    out: list = [None] * len(sequences)
    with torch.no_grad(), tqdm(total=len(sequences), desc=f"caching layers <{start}", unit="tweet",
                               disable=not progress, mininterval=2.0) as bar:
        for idx in length_buckets([len(s) for s in sequences], classifier.batch_size):
            ids, mask = classifier.collate([sequences[i] for i in idx])
            hidden = hidden_before_layer(classifier.model, ids, mask, start)
            for row, i in enumerate(idx):
                out[i] = hidden[row, : len(sequences[i])].detach().clone()
            bar.update(len(idx))
    return out


def _pad_hidden(rows: list, device: str):
    import torch

    width = max(r.shape[0] for r in rows)
    hidden = torch.zeros((len(rows), width, rows[0].shape[1]), dtype=rows[0].dtype, device=device)
    mask = torch.zeros((len(rows), width), dtype=torch.long, device=device)
    for i, r in enumerate(rows):
        hidden[i, : r.shape[0]] = r
        mask[i, : r.shape[0]] = 1
    return hidden, mask


class _WeightAverage:
    """Exponential moving average of the trainable weights (Polyak averaging), swapped in for evaluation."""

    def __init__(self, params: list, decay: float):
        self.params, self.decay = params, decay
        self.shadow = [p.detach().clone() for p in params]

    def update(self, step: int) -> None:
        import torch

        # Early on the average would be dominated by the untrained start: warm the decay up.
        decay = min(self.decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for shadow, p in zip(self.shadow, self.params):
                shadow.lerp_(p.detach(), 1 - decay)

    def swap(self) -> None:
        import torch

        with torch.no_grad():
            for shadow, p in zip(self.shadow, self.params):
                held = p.detach().clone()
                p.copy_(shadow)
                shadow.copy_(held)

    def load(self, tensors: list) -> None:
        for shadow, saved in zip(self.shadow, tensors):
            shadow.copy_(saved)


def _save_checkpoint(directory: Path, model, optimizer, scheduler, state: dict, state_dict_fn,
                     average: _WeightAverage | None = None, head=None) -> None:
    import torch
    from safetensors.torch import save_file

    tmp = directory.with_name(directory.name + ".partial")
    tmp.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state_dict_fn(model).items()}, tmp / "adapter.safetensors")
    if head is not None:
        save_label_head(head, tmp)
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    if average is not None:
        torch.save(average.shadow, tmp / "average.pt")
    (tmp / "state.json").write_text(json.dumps(state, default=str))
    if directory.exists():
        shutil.rmtree(directory)
    tmp.rename(directory)


def _progress(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="training", unit="step", disable=not enabled,
                dynamic_ncols=True, mininterval=2.0)


def _library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in ("torch", "transformers", "peft", "bitsandbytes"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            pass
    return out
