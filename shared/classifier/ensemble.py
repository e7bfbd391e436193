"""An ensemble of K adapters that adapt the same top layers (all trained with ``train --train-layers N``): the
frozen lower layers are the base model's for every member, so they run once per tweet and only the top N layers
run K times. K adapters cost (L − N + K·N) / L of K separate models' compute for an L-layer model (measured in
docs/benchmarks.md, ``benchmarks/ensemble_speed.py``). The ensemble's probabilities are the members' mean.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shared.classifier.adapters import adapter_wording, check_adapter, load_label_head, read_adapter_metadata
from shared.classifier.errors import ClassifierError
from shared.classifier.model import StanceClassifier
from shared.classifier.attention import segments_of
from shared.classifier.scoring import PackedPass, hidden_before_layer, label_logits_from_layer, unwrap


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
        metadata = [read_adapter_metadata(d) for d in adapter_dirs]
        readings = {(m.get("text_normalization"), adapter_wording(m)) for m in metadata}
        if len(readings) != 1:
            raise ClassifierError("ensemble members must read tweets alike (the same --normalize-text and "
                                  "--prompt-wording)")
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
        classifier.text_normalization, wording = readings.pop()
        classifier.use_wording(wording)
        classifier.adapter_version = "+".join(self.versions)
        self.adapter_version = classifier.adapter_version
        self.model_id = classifier.model_id

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return self.classifier.score(texts, self._member_logits)

    def _member_logits(self, batch: PackedPass) -> list:
        c = self.classifier
        hidden = hidden_before_layer(c.model, batch.ids, None, self.start, position_ids=batch.positions,
                                     packed_segments=segments_of(batch))
        logits = []
        for name, head in zip(self.names, self.heads):
            c.model.set_adapter(name)
            logits.append(label_logits_from_layer(c.model, hidden, batch, self.start, c.label_token_ids, head))
        return logits
