"""The stance classifier: a causal LM (optionally 4-bit, optionally with a LoRA adapter) scoring four label words,
or in the ``prompt`` mode the paper's prompt and its four category numbers (``shared.classifier.scoring``), the
tweets packed end to end into forward passes of ``pass_tokens``. Adapters are swapped in and out beside the loaded
base model.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from shared.classifier.adapters import (
    BASE_VERSION, adapter_wording, check_adapter, load_label_head, read_adapter_metadata,
)
from shared.classifier.attention import use_segment_attention
from shared.classifier.errors import ClassifierError
from shared.classifier.final_layer import run_final_layer_at_last_tokens
from shared.classifier.model_source import gguf_adds_bos, model_fingerprint, resolve_base_model
from shared.classifier.runtime import Runtime, nf4_config
from shared.classifier.scoring import (
    LINKS_AND_MENTIONS, PAPER_STYLE_PROMPT, PROMPT_WORDINGS, UNRECORDED_WORDING, PackedPass, answer_token_ids,
    label_logits, label_token_ids, normalize_tweet, packed_label_logits, packed_passes, unwrap,
)
from shared.messages import CATEGORIES
from shared.settings import Quantization, Scoring, Settings

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


def _peft_name(version: str) -> str:
    """peft names an adapter's modules after it, and a module name may not contain '.': a version such as
    "exp-0.5" (``train --out runs/exp-0.5``) is loaded under a name of its own."""
    return version.replace(".", "_")


class StanceClassifier:
    """Scores tweets into the four labels. Not thread-safe: the worker calls it from one executor thread."""

    def __init__(self, model, tokenizer, runtime: Runtime, *, max_tokens: int, batch_size: int,
                 model_id: str, adapter_version: str, merge_adapters: bool = True,
                 scoring: Scoring = Scoring.label_words, add_bos: bool | None = None, pass_tokens: int = 2048):
        self.model = model
        self.tokenizer = tokenizer
        self.runtime = runtime
        self.max_tokens = max_tokens
        self.batch_size = batch_size  # tweets per pass where training scores dev or caches frozen layers
        self.pass_tokens = pass_tokens  # tokens of a served (packed) pass
        self.model_id = model_id
        self.adapter_version = adapter_version
        self.merge_adapters = merge_adapters
        self.scoring = Scoring(scoring)
        bos = tokenizer.bos_token_id
        self._bos = [bos] if bos is not None else []
        self.answer_lead_ids: list[int] = []  # prompt mode: appended to every prompt (answer_token_ids)
        if self.scoring is Scoring.prompt:
            if add_bos is False:  # a GGUF whose prompts llama.cpp starts without BOS (gguf_adds_bos)
                self._bos = []
            self._prompt_head, self._prompt_tail = PAPER_STYLE_PROMPT.split("{tweet}")
            # The category numbers as the model writes them after "Answer =", and what it writes before them.
            self.answer_lead_ids, self.label_token_ids = answer_token_ids(tokenizer)
        else:
            self.label_token_ids = label_token_ids(tokenizer)
        self.use_wording(UNRECORDED_WORDING)
        self.label_head: "torch.nn.Linear | None" = None  # the adapter's own head, if it has one
        self.text_normalization: str | None = None  # as the adapter was trained

    # -- loading -------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, settings: Settings, adapter: Path | None = None) -> "StanceClassifier":
        """The base model as the settings describe it (device, precision, …), serving ``adapter`` (None: the base
        model alone). The settings' own ``adapter`` is only the configured default: callers that want it pass it,
        so every caller says which adapter it serves in the same way."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if settings.torch_threads:
            torch.set_num_threads(settings.torch_threads)
        runtime = Runtime.resolve(settings)
        model_dir = resolve_base_model(settings.base_model, settings.cache_dir / "models")
        kwargs: dict = {"dtype": runtime.dtype}
        if runtime.quantization is Quantization.nf4:
            kwargs["quantization_config"] = nf4_config(runtime.dtype)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)
        if runtime.quantization is not Quantization.nf4:
            model.to(runtime.device)
        model.eval()
        use_segment_attention(model)
        run_final_layer_at_last_tokens(model)
        model_id = f"{Path(settings.base_model).name}@{model_fingerprint(model_dir)}"
        classifier = cls(model, tokenizer, runtime, max_tokens=settings.max_tokens,
                         batch_size=settings.infer_batch_size, model_id=model_id, adapter_version=BASE_VERSION,
                         merge_adapters=settings.merge_adapter, scoring=settings.scoring,
                         add_bos=gguf_adds_bos(model_dir), pass_tokens=settings.pass_tokens)
        if adapter is not None:
            classifier.switch_adapter(Path(adapter))
        log.info("classifier ready: %s adapter=%s scoring=%s on %s/%s/%s", model_id, classifier.adapter_version,
                 classifier.scoring.value, runtime.device, str(runtime.dtype).removeprefix("torch."),
                 runtime.quantization.value)
        return classifier

    # -- adapters ------------------------------------------------------------------------------------------
    def switch_adapter(self, adapter_dir: Path) -> str:
        """Serve the LoRA adapter in ``adapter_dir`` from the next call on; the base model stays loaded.

        The adapter is checked and loaded beside the current one before anything switches, so a corrupt or
        incompatible adapter raises ``ClassifierError`` and the current adapter keeps serving. The previous
        adapter is then unloaded. Call it from the thread that classifies (the worker's model thread), so a
        batch is never scored half with one adapter and half with another.
        """
        from peft import PeftModel

        version = check_adapter(adapter_dir, self.model_id, self.scoring)
        if version == self.adapter_version:
            return version
        head = load_label_head(adapter_dir, unwrap(self.model)[0].config.hidden_size, self.runtime.device)
        metadata = read_adapter_metadata(adapter_dir)  # its normalization and wording are known: check_adapter
        normalization = metadata.get("text_normalization")
        wording = adapter_wording(metadata)
        previous, name = self.adapter_version, _peft_name(version)
        previous_name = _peft_name(previous)
        merged = self._unmerge()
        try:
            if isinstance(self.model, PeftModel):
                self.model.load_adapter(adapter_dir, adapter_name=name)
                self.model.set_adapter(name)
            else:
                self.model = PeftModel.from_pretrained(self.model, adapter_dir, adapter_name=name)
        except Exception as exc:
            if isinstance(self.model, PeftModel) and name in self.model.peft_config:
                self.model.delete_adapter(name)
                if previous_name in self.model.peft_config:
                    self.model.set_adapter(previous_name)
            if merged:
                self._merge()
            raise ClassifierError(f"adapter {adapter_dir} does not fit the base model: {exc}") from exc
        if isinstance(self.model, PeftModel) and previous_name in self.model.peft_config:
            self.model.delete_adapter(previous_name)
        self.model.eval()
        self.adapter_version = version
        self.label_head = head
        self.text_normalization = normalization
        self.use_wording(wording)
        self._merge()
        log.info("adapter %s -> %s (%s)", previous, version, adapter_dir)
        return version

    def _merge(self) -> None:
        """Fold the active adapter into the base weights: serving then costs no LoRA matmuls (measured in
        docs/benchmarks.md). Not on 4-bit weights, where merging would re-quantize them."""
        if (self.merge_adapters and self.runtime.quantization is not Quantization.nf4
                and hasattr(self.model, "merge_adapter")):
            self.model.merge_adapter()

    def _unmerge(self) -> bool:
        """Restore the base weights before another adapter is loaded; True if they were merged."""
        layer = next((m for m in self.model.modules() if hasattr(m, "merged") and hasattr(m, "unmerge")), None)
        if layer is None or not layer.merged:
            return False
        self.model.unmerge_adapter()
        return True

    # -- encoding ------------------------------------------------------------------------------------------
    def use_wording(self, wording: str) -> None:
        """Put tweets inside the prompt words named ``wording`` (``PROMPT_WORDINGS``), as the adapter was trained.
        The ``prompt`` scoring mode has its own prompt and accepts only ``UNRECORDED_WORDING``."""
        if wording not in PROMPT_WORDINGS:
            raise ClassifierError(f"unknown prompt wording {wording!r}: one of {', '.join(PROMPT_WORDINGS)}")
        if self.scoring is Scoring.prompt and wording != UNRECORDED_WORDING:
            raise ClassifierError(f"the prompt scoring mode reads the paper-style prompt, not the {wording!r} wording")
        prefix, suffix = PROMPT_WORDINGS[wording]
        self.wording = wording
        self._prefix_ids, self._suffix_ids = self._encode(prefix), self._encode(suffix)

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each tweet inside the prompt; only the tweet itself is truncated."""
        if self.text_normalization == LINKS_AND_MENTIONS:
            texts = [normalize_tweet(t) for t in texts]
        if self.scoring is Scoring.prompt:
            return self._encode_paper_prompt(texts)
        body = self.tokenizer(texts, add_special_tokens=False, truncation=True, max_length=self.max_tokens)
        return [self._bos + self._prefix_ids + ids + self._suffix_ids for ids in body["input_ids"]]

    def _encode_paper_prompt(self, texts: list[str]) -> list[list[int]]:
        """The whole prompt tokenized as one text, as llama.cpp tokenizes it (a tweet's first word after
        "Tweet: " is not the same token as that word alone in LLaMA-3's or Gemma's vocabulary), then the
        answer's lead-in. A tweet over ``max_tokens`` is cut to its first ``max_tokens`` tokens first."""
        bodies = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        texts = [text if len(ids) <= self.max_tokens else self.tokenizer.decode(ids[: self.max_tokens])
                 for text, ids in zip(texts, bodies)]
        prompts = self.tokenizer([self._prompt_head + text + self._prompt_tail for text in texts],
                                 add_special_tokens=False)["input_ids"]
        return [self._bos + ids + self.answer_lead_ids for ids in prompts]

    def collate(self, sequences: list[list[int]]) -> tuple["torch.Tensor", "torch.Tensor"]:
        """Right-padded ids and attention mask on the model's device."""
        import torch

        width = max(len(s) for s in sequences)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.full((len(sequences), width), pad, dtype=torch.long)
        mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, seq in enumerate(sequences):
            ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
        return ids.to(self.runtime.device), mask.to(self.runtime.device)

    # -- scoring -------------------------------------------------------------------------------------------
    def label_logits(self, input_ids: "torch.Tensor", attention_mask: "torch.Tensor") -> "torch.Tensor":
        """(batch, 4) logits of the label words (prompt mode: the category numbers) at each sequence's last real
        token."""
        return label_logits(self.model, input_ids, attention_mask, self.label_token_ids, self.label_head)

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """(len(texts), 4) probabilities in ``CATEGORIES`` order."""
        return self.score(texts, self.packed_logits)

    def packed_logits(self, batch: PackedPass) -> "torch.Tensor":
        return packed_label_logits(self.model, batch, self.label_token_ids, self.label_head)

    def score(self, texts: list[str], logits_of) -> np.ndarray:
        """(len(texts), 4) probabilities: the tweets encoded and packed into passes, ``logits_of(pass)`` (or a list
        of logits, whose probabilities are averaged: an ensemble) for each."""
        import torch

        if not texts:
            return np.zeros((0, len(CATEGORIES)), dtype=np.float32)
        probs = np.zeros((len(texts), len(CATEGORIES)), dtype=np.float32)
        with torch.inference_mode():
            for batch in packed_passes(self.encode(texts), self.pass_tokens, pad_id=self.tokenizer.pad_token_id or 0,
                                       device=self.runtime.device):
                logits = logits_of(batch)
                members = logits if isinstance(logits, list) else [logits]
                mean = sum(torch.softmax(m.float(), dim=-1) for m in members) / len(members)
                probs[batch.index] = mean.cpu().numpy()
        return probs
