"""An adapter directory: peft's weights and config, ``stancestream.json`` (what it was trained on and how), and
optionally its own label head. ``check_adapter`` is the one check before anything serves or registers one."""

from __future__ import annotations

import json
from pathlib import Path

from shared.classifier.errors import ClassifierError
from shared.classifier.scoring import LINKS_AND_MENTIONS, PROMPT_WORDINGS, UNRECORDED_WORDING
from shared.messages import CATEGORIES
from shared.settings import Scoring

ADAPTER_METADATA = "stancestream.json"
LABEL_HEAD_FILE = "label_head.safetensors"
BASE_VERSION = "base"  # the version of the base model served without an adapter


def read_adapter_metadata(adapter_dir: Path) -> dict:
    path = adapter_dir / ADAPTER_METADATA
    return json.loads(path.read_text()) if path.exists() else {}


def adapter_scoring(metadata: dict) -> str:
    """The scoring mode an adapter was trained in; adapters from before the ``prompt`` mode say nothing and were all
    trained on the label words."""
    return metadata.get("scoring") or Scoring.label_words.value


def adapter_wording(metadata: dict) -> str:
    """The prompt wording an adapter was trained with; adapters from before ``--prompt-wording`` say nothing."""
    return metadata.get("prompt_wording") or UNRECORDED_WORDING


def check_adapter(adapter_dir: Path, model_id: str | None = None, scoring: Scoring | None = None) -> str:
    """The adapter's version, after checking it is complete, readable, made for this base model and (given
    ``scoring``) trained in that scoring mode."""
    if not (adapter_dir / "adapter_config.json").exists():
        raise ClassifierError(f"{adapter_dir} is not a LoRA adapter directory (no adapter_config.json)")
    try:
        metadata = read_adapter_metadata(adapter_dir)
        json.loads((adapter_dir / "adapter_config.json").read_text())
        weights = adapter_dir / "adapter_model.safetensors"
        from safetensors import safe_open

        with safe_open(weights, framework="pt") as handle:
            if not list(handle.keys()):
                raise ValueError("no tensors")
    except Exception as exc:
        raise ClassifierError(f"adapter {adapter_dir} is unreadable: {exc}") from exc
    if (adapter_dir / LABEL_HEAD_FILE).exists():
        _label_head_tensors(adapter_dir / LABEL_HEAD_FILE)
    trained_on = metadata.get("base_model_id")
    # Compare weight fingerprints: the same base may be named differently (packaged name, local path).
    if model_id and trained_on and trained_on.rsplit("@", 1)[-1] != model_id.rsplit("@", 1)[-1]:
        raise ClassifierError(f"adapter {adapter_dir} was trained on {trained_on}, but the base model is {model_id}")
    labels = metadata.get("labels")
    if labels and labels != [c.value for c in CATEGORIES]:
        raise ClassifierError(f"adapter {adapter_dir} predicts {labels}, not the four categories")
    normalization = metadata.get("text_normalization")
    if normalization not in (None, LINKS_AND_MENTIONS):
        raise ClassifierError(f"adapter {adapter_dir} wants text normalization {normalization!r}, "
                              f"which this version does not know")
    wording = metadata.get("prompt_wording")
    if wording not in (None, *PROMPT_WORDINGS):
        raise ClassifierError(f"adapter {adapter_dir} wants the prompt wording {wording!r}, "
                              f"which this version does not know")
    trained_for = adapter_scoring(metadata)
    if trained_for not in {mode.value for mode in Scoring}:
        raise ClassifierError(f"adapter {adapter_dir} was trained in scoring mode {trained_for!r}, "
                              f"which this version does not know")
    if scoring is not None and trained_for != Scoring(scoring).value:
        raise ClassifierError(f"adapter {adapter_dir} was trained in the {trained_for!r} scoring mode and cannot be "
                              f"served in the {Scoring(scoring).value!r} mode: set STANCESTREAM_SCORING={trained_for} "
                              f"or serve another adapter (or none)")
    return str(metadata.get("version") or adapter_dir.name)


def save_label_head(head, directory: Path) -> None:
    from safetensors.torch import save_file

    save_file({"weight": head.weight.detach().contiguous(), "bias": head.bias.detach().contiguous()},
              directory / LABEL_HEAD_FILE)


def _label_head_tensors(path: Path):
    """(weight, bias) of a saved head with one row per category; ClassifierError if unreadable or misshapen."""
    try:
        from safetensors.torch import load_file

        tensors = load_file(path)
        weight, bias = tensors["weight"], tensors["bias"]
    except Exception as exc:
        raise ClassifierError(f"label head {path} is unreadable: {exc}") from exc
    if weight.dim() != 2 or weight.shape[0] != len(CATEGORIES) or tuple(bias.shape) != (len(CATEGORIES),):
        raise ClassifierError(f"label head {path} has shape {tuple(weight.shape)} / {tuple(bias.shape)}, "
                              f"not one row per category ({len(CATEGORIES)})")
    return weight, bias


def load_label_head(adapter_dir: Path, hidden_size: int, device: str = "cpu"):
    """The adapter's head, or None when it scores through the label words; ClassifierError if it does not fit."""
    import torch

    path = adapter_dir / LABEL_HEAD_FILE
    if not path.exists():
        return None
    weight, bias = _label_head_tensors(path)
    if weight.shape[1] != hidden_size:
        raise ClassifierError(f"label head {path} reads {weight.shape[1]} hidden units, the model has {hidden_size}")
    head = torch.nn.Linear(hidden_size, len(CATEGORIES))
    with torch.no_grad():
        head.weight.copy_(weight)
        head.bias.copy_(bias)
    return head.to(device).eval()
