"""An ensemble of K adapters that adapt the same top layers (all trained with ``train --train-layers N``): the
frozen lower layers are the base model's for every member, so they run once per tweet and only the top N layers
run K times. K adapters cost (L − N + K·N) / L of K separate models' compute for an L-layer model (measured in
docs/benchmarks.md, ``benchmarks/ensemble_speed.py``). The ensemble's probabilities are the members' mean.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shared.classifier.adapters import check_adapter, load_label_head, read_adapter_metadata
from shared.classifier.errors import ClassifierError
from shared.classifier.model import StanceClassifier
from shared.classifier.scoring import hidden_before_layer, label_logits_from_layer, length_buckets, unwrap
from shared.messages import CATEGORIES


def top_layers(adapter_dir: Path) -> int | None:
    """How many top decoder layers the adapter adapts (None: all of them)."""
    return read_adapter_metadata(adapter_dir).get("hyperparameters", {}).get("train_layers")


class AdapterEnsemble:
    """Scores tweets with the mean of K adapters' probabilities, sharing the frozen layers' forward pass.
    ``classifier``: the base model alone (``StanceClassifier.load(settings, adapter=None)``); it is taken over."""

    def __init__(self, classifier: StanceClassifier, adapter_dirs: list[Path]):
        from peft import PeftModel

        if len(adapter_dirs) < 2:
            raise ClassifierError("an ensemble needs at least two adapters")
        layers = {top_layers(d) for d in adapter_dirs}
        if len(layers) != 1 or None in layers:
            raise ClassifierError("ensemble members must all adapt the same top layers (train --train-layers N); "
                                  f"got {', '.join(str(top_layers(d)) for d in adapter_dirs)}")
        normalizations = {read_adapter_metadata(d).get("text_normalization") for d in adapter_dirs}
        if len(normalizations) != 1:
            raise ClassifierError("ensemble members must read tweets alike (the same --normalize-text)")
        self.classifier = classifier
        self.start = classifier.model.config.num_hidden_layers - layers.pop()
        self.versions = [check_adapter(d, classifier.model_id, classifier.scoring) for d in adapter_dirs]
        self.names = [f"member{i}" for i in range(len(adapter_dirs))]
        hidden_size = unwrap(classifier.model)[0].config.hidden_size
        self.heads = [load_label_head(d, hidden_size, classifier.runtime.device) for d in adapter_dirs]
        model = PeftModel.from_pretrained(classifier.model, adapter_dirs[0], adapter_name=self.names[0])
        for name, directory in zip(self.names[1:], adapter_dirs[1:]):
            model.load_adapter(directory, adapter_name=name)
        classifier.model = model.eval()
        classifier.text_normalization = normalizations.pop()
        classifier.adapter_version = "+".join(self.versions)
        self.adapter_version = classifier.adapter_version
        self.model_id = classifier.model_id

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        import torch

        c = self.classifier
        if not texts:
            return np.zeros((0, len(CATEGORIES)), dtype=np.float32)
        sequences = c.encode(texts)
        probs = np.zeros((len(texts), len(CATEGORIES)), dtype=np.float32)
        with torch.inference_mode():
            for idx in length_buckets([len(s) for s in sequences], c.batch_size):
                ids, mask = c.collate([sequences[i] for i in idx])
                hidden = hidden_before_layer(c.model, ids, mask, self.start)
                total = 0
                for name, head in zip(self.names, self.heads):
                    c.model.set_adapter(name)
                    logits = label_logits_from_layer(c.model, hidden, mask, self.start, c.label_token_ids, head)
                    total = total + torch.softmax(logits.float(), dim=-1)
                probs[idx] = (total / len(self.names)).cpu().numpy()
        return probs
