"""Staged onboarding of a language (the Persian PEFT paper's paradigm): before the task LoRA, a causal-LM LoRA
stage on unlabeled tweets of the language (next-token loss on their text), merged into the base weights so the
task stage trains on top of it. The served adapter is still one LoRA: ``combine`` writes the two stages as a
single adapter whose rank per module is the sum of the stages' ranks (A stacked, B side by side, each stage's
scale folded into B), which equals the base with stage 1 merged plus the task LoRA exactly — so the worker, the
registry and hot-swap serve it like any other adapter.
"""

from __future__ import annotations

import csv
import json
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.training.config import TrainConfig

#: Where ``train`` keeps the first stage's own LoRA in its run directory (the served adapter has it folded in).
PRETRAIN_DIR = "pretrain"


def read_texts(path: Path) -> list[str]:
    """Unlabeled tweets: a CSV with a ``text`` column, or a plain text file with one tweet per line."""
    if path.suffix.lower() == ".csv":
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            if "text" not in (reader.fieldnames or []):
                raise ValueError(f"{path}: no 'text' column (found {', '.join(reader.fieldnames or [])})")
            texts = [row["text"].strip() for row in reader]
    else:
        texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    texts = [t for t in texts if t]
    if not texts:
        raise ValueError(f"{path}: no texts to pretrain on")
    return texts


@dataclass
class PretrainStage:
    model: object  # the base model with the stage merged into its weights
    lora: dict  # the stage's LoRA tensors (peft state-dict keys), float32 numpy
    scaling: float  # lora_alpha / r of the stage
    info: dict  # what the adapter's metadata records


def pretrain(model, tokenizer, texts: list[str], config: TrainConfig, save_to: Path | None = None,
             progress: bool = True) -> PretrainStage:
    """Train a LoRA on every decoder linear layer with the causal-LM loss on ``texts``, save it to ``save_to``
    (for reading: the served adapter holds it folded in), then merge it."""
    import torch
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict
    from tqdm.auto import tqdm

    started = time.time()
    linear = sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                     if isinstance(module, torch.nn.Linear) and ".layers." in name})
    rank = config.pretrain_rank
    lora = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=linear, bias="none")
    model = get_peft_model(model, lora)
    encoded = [ids for ids in tokenizer(texts, add_special_tokens=False, truncation=True,
                                        max_length=config.max_tokens)["input_ids"] if len(ids) > 1]
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    encoded = [bos + ids for ids in encoded]
    batch = max(1, config.batch_size // 2)
    steps = max(1, math.ceil(len(encoded) / batch * config.pretrain_epochs))
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.pretrain_learning_rate, weight_decay=0.0)
    device = next(model.parameters()).device
    rng = np.random.default_rng(config.seed)
    order = np.concatenate([rng.permutation(len(encoded)) for _ in range(math.ceil(config.pretrain_epochs) + 1)])

    def loss_of(rows: list[list[int]]):
        width = max(len(r) for r in rows)
        pad = tokenizer.pad_token_id or 0
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)], mask[i, : len(r)] = torch.tensor(r), 1
        labels = ids.masked_fill(mask == 0, -100)
        return model(input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device)).loss

    def mean_loss() -> float:
        with torch.no_grad():
            return float(np.mean([loss_of(encoded[i : i + batch]).item() for i in range(0, len(encoded), batch)]))

    model.eval()
    before = mean_loss()
    model.train()
    with tqdm(total=steps, desc="pretraining (causal LM)", unit="step", disable=not progress) as bar:
        for step in range(steps):
            rows = [encoded[i] for i in order[step * batch : (step + 1) * batch]]
            loss = loss_of(rows)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            bar.set_postfix(loss=f"{loss.item():.3f}")
            bar.update(1)
    model.eval()
    after = mean_loss()
    if save_to is not None:
        model.save_pretrained(save_to)
    state = {k: v.detach().float().cpu().numpy() for k, v in get_peft_model_state_dict(model).items()}
    info = {"texts": len(texts), "sequences": len(encoded), "epochs": config.pretrain_epochs, "rank": rank,
            "steps": steps, "lm_loss_before": round(before, 4), "lm_loss_after": round(after, 4),
            "seconds": round(time.time() - started)}
    return PretrainStage(model.merge_and_unload(), state, 2.0, info)


_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<part>[AB])\.weight$")


def _by_module(tensors: dict) -> dict[str, dict[str, np.ndarray]]:
    out: dict[str, dict[str, np.ndarray]] = {}
    for key, value in tensors.items():
        match = _KEY.match(key)
        if match is None:
            raise ValueError(f"not a LoRA weight: {key}")
        out.setdefault(match["module"], {})[match["part"]] = value
    return out


def combine(adapter_dir: Path, stage: PretrainStage) -> None:
    """Rewrite the task adapter in ``adapter_dir`` as one LoRA holding both stages (module docstring)."""
    from safetensors.numpy import load_file, save_file

    weights = adapter_dir / "adapter_model.safetensors"
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    task = _by_module(load_file(str(weights)))
    first = _by_module(stage.lora)
    task_scaling = config["lora_alpha"] / config["r"]
    combined, ranks = {}, {}
    for module in sorted(set(task) | set(first)):
        parts_a, parts_b = [], []
        for source, scaling in ((first, stage.scaling), (task, task_scaling)):
            if module in source:
                dtype = source[module]["A"].dtype
                parts_a.append(source[module]["A"].astype(np.float32))
                parts_b.append(source[module]["B"].astype(np.float32) * scaling)
        combined[f"{module}.lora_A.weight"] = np.concatenate(parts_a, axis=0).astype(dtype)
        combined[f"{module}.lora_B.weight"] = np.concatenate(parts_b, axis=1).astype(dtype)
        ranks[module.removeprefix("base_model.model.")] = combined[f"{module}.lora_A.weight"].shape[0]
    # Every module named with its own rank and alpha = rank (scale 1: the stages' scales are in B).
    config |= {"target_modules": sorted(ranks), "layers_to_transform": None, "layers_pattern": None,
               "rank_pattern": {re.escape(name): r for name, r in ranks.items()},
               "alpha_pattern": {re.escape(name): r for name, r in ranks.items()},
               "r": max(ranks.values()), "lora_alpha": max(ranks.values()), "lora_dropout": 0.0}
    save_file(combined, str(weights))
    (adapter_dir / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
