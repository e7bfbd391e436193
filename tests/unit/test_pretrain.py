"""Staged onboarding: a causal-LM LoRA stage on unlabeled texts before the task, served as one adapter."""

from __future__ import annotations

import json

import numpy as np
import pytest

from labeled import write_labeled_csv
from shared.classifier.model import StanceClassifier
from shared.training.config import TrainConfig
from shared.training.data import read_labeled
from shared.training.loop import train
from shared.training.pretrain import PRETRAIN_DIR, read_texts

pytestmark = pytest.mark.model

UNLABELED = ["sınır kapısı bugün kapalı göçmenler bekliyor", "mülteciler için yardım kampanyası başladı",
             "göç politikası meclis gündeminde", "maç bu akşam saat sekizde"] * 4


def test_pretrain_stage_lowers_the_lm_loss_and_the_served_adapter_is_both_stages_exactly(tmp_path, tiny_settings):
    from peft import PeftModel

    texts_file = tmp_path / "tr.txt"
    texts_file.write_text("\n".join(UNLABELED) + "\n\n")
    texts = read_texts(texts_file)
    assert len(texts) == 16
    examples = read_labeled([write_labeled_csv(tmp_path / "d.csv", n_per_cell=4)])
    config = TrainConfig(epochs=1, batch_size=8, eval_every=3, learning_rate=5e-3, dev_fraction=0.2, max_tokens=32,
                         train_layers=1, pretrain_epochs=3, pretrain_learning_rate=5e-3)
    result = train(tiny_settings, examples, tmp_path / "run", config, progress=False, pretrain_texts=texts)
    meta = json.loads((result.adapter_dir / "stancestream.json").read_text())
    stage = meta["pretrain"]
    assert stage["texts"] == 16 and stage["lm_loss_after"] < stage["lm_loss_before"]
    peft_config = json.loads((result.adapter_dir / "adapter_config.json").read_text())
    ranks = set(peft_config["rank_pattern"].values())
    assert ranks == {8, 8 + config.lora_rank}  # lower layers: stage 1 only; the top layer: both stages

    # Served as one adapter, it scores exactly like the base with stage 1 merged plus the task LoRA.
    served = StanceClassifier.load(tiny_settings, adapter=result.adapter_dir)
    probe = ["close the border now", "refugees welcome", "göç politikası", "football tonight"]
    combined = served.predict_proba(probe)
    plain = StanceClassifier.load(tiny_settings, adapter=None)
    assert not np.allclose(combined, plain.predict_proba(probe), atol=1e-4)
    reference = StanceClassifier.load(tiny_settings, adapter=None)
    reference.use_wording(config.prompt_wording)  # as the adapter was trained (its metadata tells the served one)
    reference.model = PeftModel.from_pretrained(reference.model, tmp_path / "run" / PRETRAIN_DIR).merge_and_unload()
    reference.model = PeftModel.from_pretrained(reference.model, tmp_path / "run" / "best").eval()
    assert np.allclose(combined, reference.predict_proba(probe), atol=1e-5)


def test_pretrain_texts_read_from_csv_or_lines_and_refuse_empty_files(tmp_path):
    csv_file = tmp_path / "t.csv"
    csv_file.write_text("id,text\n1,hola mundo\n2,\n3,adiós\n")
    assert read_texts(csv_file) == ["hola mundo", "adiós"]
    bad = tmp_path / "bad.csv"
    bad.write_text("id,body\n1,x\n")
    with pytest.raises(ValueError, match="no 'text' column"):
        read_texts(bad)
    empty = tmp_path / "e.txt"
    empty.write_text("\n\n")
    with pytest.raises(ValueError, match="no texts to pretrain on"):
        read_texts(empty)
