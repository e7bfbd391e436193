"""The stance classifier: a causal LM (optionally 4-bit, optionally with a LoRA adapter) scoring four label words.

Each tweet is wrapped in a short instruction and the model's next-token scores for the four label words
(" pro", " anti", " neutral", " unrelated") are read at the last position, in one forward pass per length-sorted
sub-batch. Only the four rows of the output embedding are multiplied, never the 262k-word vocabulary.
An adapter may bring its own 4-way linear head (``label_head.safetensors``, see ``train --head``) that replaces
those four rows. The same ``label_logits`` serves training and inference, so what is trained is exactly what is
served.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from shared.errors import StancestreamError
from shared.messages import CATEGORIES, Category
from shared.classifier.model_source import model_fingerprint, resolve_base_model
from shared.settings import Device, Dtype, Quantization, Settings

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

PROMPT_PREFIX = "Tweet: "
# Short on purpose: every prompt token is paid on every tweet (the tweet itself averages ~58 tokens).
PROMPT_SUFFIX = "\nImmigration stance (pro, anti, neutral or unrelated):"
VERBALIZERS: dict[Category, str] = {
    Category.pro: " pro",
    Category.anti: " anti",
    Category.neutral: " neutral",
    Category.unrelated: " unrelated",
}
_LINK = re.compile(r"https?://\S+|www\.\S+")
_MENTION = re.compile(r"(?<!\w)@\w+")
#: What an adapter trained with ``train --normalize-text`` records; the classifier then normalizes every tweet.
LINKS_AND_MENTIONS = "links-and-mentions"
ADAPTER_METADATA = "stancestream.json"
LABEL_HEAD_FILE = "label_head.safetensors"
BASE_VERSION = "base"


def normalize_tweet(text: str) -> str:
    """Links become ``http`` and @mentions ``@user`` (TweetEval's preprocessing): a t.co link is ~15 tokens of
    random characters and reply chains stack handles, noise the model would otherwise pay for and memorize."""
    return _MENTION.sub("@user", _LINK.sub("http", text))


class ClassifierError(StancestreamError):
    """The model or adapter cannot be loaded or used."""


@dataclass(frozen=True)
class Runtime:
    """Where and how the model runs, resolved from the settings and the hardware."""

    device: str
    dtype: "torch.dtype"
    quantization: Quantization

    @classmethod
    def resolve(cls, settings: Settings) -> "Runtime":
        import torch

        device = settings.device.value
        if device == Device.auto.value:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cuda" and not torch.cuda.is_available():
            raise ClassifierError("STANCESTREAM_DEVICE=cuda but torch sees no CUDA device")
        quant = settings.quantization
        if quant is Quantization.auto:
            # Measured on a 2-core AMX CPU: bf16 12-17 tweets/s, nf4 3.7 (bitsandbytes dequantizes on every
            # call on CPU). On CUDA, nf4 keeps the paper's 4-bit memory budget with fused kernels.
            quant = Quantization.nf4 if device == "cuda" else Quantization.none
        if settings.dtype is Dtype.fp32:
            dtype = torch.float32
        elif settings.dtype is Dtype.bf16 or device == "cuda" or _cpu_has_fast_bf16():
            dtype = torch.bfloat16
        else:
            dtype = torch.float32
        return cls(device, dtype, quant)


def _cpu_has_fast_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def read_adapter_metadata(adapter_dir: Path) -> dict:
    path = adapter_dir / ADAPTER_METADATA
    return json.loads(path.read_text()) if path.exists() else {}


class StanceClassifier:
    """Scores tweets into the four labels. Not thread-safe: the worker calls it from one executor thread."""

    def __init__(self, model, tokenizer, runtime: Runtime, *, max_tokens: int, batch_size: int,
                 model_id: str, adapter_version: str, merge_adapters: bool = True):
        self.model = model
        self.tokenizer = tokenizer
        self.runtime = runtime
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self.model_id = model_id
        self.adapter_version = adapter_version
        self.merge_adapters = merge_adapters
        self._prefix_ids = self._encode(PROMPT_PREFIX)
        self._suffix_ids = self._encode(PROMPT_SUFFIX)
        bos = tokenizer.bos_token_id
        self._bos = [bos] if bos is not None else []
        self.label_token_ids = label_token_ids(tokenizer)
        self.label_head: "torch.nn.Linear | None" = None  # the adapter's own head, if it has one
        self.text_normalization: str | None = None  # as the adapter was trained

    # -- loading -------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, settings: Settings, adapter: Path | None = None) -> "StanceClassifier":
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if settings.torch_threads:
            torch.set_num_threads(settings.torch_threads)
        runtime = Runtime.resolve(settings)
        model_dir = resolve_base_model(settings.base_model, settings.cache_dir / "models")
        kwargs: dict = {"dtype": runtime.dtype}
        if runtime.quantization is Quantization.nf4:
            kwargs["quantization_config"] = _nf4_config(runtime.dtype)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)
        if runtime.quantization is not Quantization.nf4:
            model.to(runtime.device)
        model.eval()
        model_id = f"{Path(settings.base_model).name}@{model_fingerprint(model_dir)}"
        classifier = cls(model, tokenizer, runtime, max_tokens=settings.max_tokens,
                         batch_size=settings.infer_batch_size, model_id=model_id, adapter_version=BASE_VERSION,
                         merge_adapters=settings.merge_adapter)
        adapter = adapter if adapter is not None else settings.adapter
        if adapter is not None:
            classifier.switch_adapter(Path(adapter))
        log.info("classifier ready: %s adapter=%s on %s/%s/%s", model_id, classifier.adapter_version,
                 runtime.device, str(runtime.dtype).removeprefix("torch."), runtime.quantization.value)
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

        version = check_adapter(adapter_dir, self.model_id)
        if version == self.adapter_version:
            return version
        head = load_label_head(adapter_dir, _unwrap(self.model)[0].config.hidden_size, self.runtime.device)
        normalization = read_adapter_metadata(adapter_dir).get("text_normalization")  # known: check_adapter
        previous = self.adapter_version
        merged = self._unmerge()
        try:
            if isinstance(self.model, PeftModel):
                self.model.load_adapter(adapter_dir, adapter_name=version)
                self.model.set_adapter(version)
            else:
                self.model = PeftModel.from_pretrained(self.model, adapter_dir, adapter_name=version)
        except Exception as exc:
            if isinstance(self.model, PeftModel) and version in self.model.peft_config:
                self.model.delete_adapter(version)
                if previous in self.model.peft_config:
                    self.model.set_adapter(previous)
            if merged:
                self._merge()
            raise ClassifierError(f"adapter {adapter_dir} does not fit the base model: {exc}") from exc
        if isinstance(self.model, PeftModel) and previous in self.model.peft_config:
            self.model.delete_adapter(previous)
        self.model.eval()
        self.adapter_version = version
        self.label_head = head
        self.text_normalization = normalization
        self._merge()
        log.info("adapter %s -> %s (%s)", previous, version, adapter_dir)
        return version

    def _merge(self) -> None:
        """Fold the active adapter into the base weights: serving then costs no LoRA matmuls (measured in
        docs/benchmarks.md). Not on 4-bit weights, where merging would re-quantize them."""
        if self.merge_adapters and self.runtime.quantization is not Quantization.nf4 and hasattr(self.model, "merge_adapter"):
            self.model.merge_adapter()

    def _unmerge(self) -> bool:
        """Restore the base weights before another adapter is loaded; True if they were merged."""
        layer = next((m for m in self.model.modules() if hasattr(m, "merged") and hasattr(m, "unmerge")), None)
        if layer is None or not layer.merged:
            return False
        self.model.unmerge_adapter()
        return True

    # -- encoding ------------------------------------------------------------------------------------------
    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each tweet inside the prompt; only the tweet itself is truncated."""
        if self.text_normalization == LINKS_AND_MENTIONS:
            texts = [normalize_tweet(t) for t in texts]
        body = self.tokenizer(texts, add_special_tokens=False, truncation=True, max_length=self.max_tokens)
        return [self._bos + self._prefix_ids + ids + self._suffix_ids for ids in body["input_ids"]]

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
        """(batch, 4) logits of the label words at each sequence's last real token."""
        return label_logits(self.model, input_ids, attention_mask, self.label_token_ids, self.label_head)

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """(len(texts), 4) probabilities in ``CATEGORIES`` order, one forward pass per length bucket."""
        import torch

        if not texts:
            return np.zeros((0, len(CATEGORIES)), dtype=np.float32)
        sequences = self.encode(texts)
        probs = np.zeros((len(texts), len(CATEGORIES)), dtype=np.float32)
        with torch.inference_mode():
            for idx in length_buckets([len(s) for s in sequences], self.batch_size):
                ids, mask = self.collate([sequences[i] for i in idx])
                logits = self.label_logits(ids, mask).float()
                probs[idx] = torch.softmax(logits, dim=-1).cpu().numpy()
        return probs

    def predict(self, texts: list[str]) -> list[Category]:
        return [CATEGORIES[i] for i in self.predict_proba(texts).argmax(axis=1)]


#: A bucket closes when padding it to its longest sequence would cost more than this share of extra tokens.
MAX_PADDING = 0.15


def length_buckets(lengths: list[int], max_rows: int, max_padding: float = MAX_PADDING) -> list[np.ndarray]:
    """Indices grouped into forward passes of similar length: at most ``max_rows`` sequences each, and padded
    tokens at most ``max_padding`` of the real ones. A micro-batch of tweets of 20 to 120 tokens in fixed
    groups of 16 would otherwise compute mostly padding."""
    order = np.argsort(lengths, kind="stable")
    buckets, current, real = [], [], 0
    for i in order:
        n = lengths[i]
        if current and (len(current) == max_rows or n * (len(current) + 1) > (1 + max_padding) * (real + n)):
            buckets.append(np.array(current))
            current, real = [], 0
        current.append(i)
        real += n
    if current:
        buckets.append(np.array(current))
    return buckets


def label_token_ids(tokenizer) -> list[int]:
    ids = []
    for label, word in VERBALIZERS.items():
        pieces = tokenizer(word, add_special_tokens=False)["input_ids"]
        if not pieces:
            raise ClassifierError(f"the tokenizer maps the label word {word!r} to nothing")
        ids.append(pieces[0])
    if len(set(ids)) != len(ids):
        raise ClassifierError(f"label words share a first token ({ids}): pick distinct verbalizers")
    return ids


def _unwrap(model):
    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    return causal_lm, getattr(causal_lm, causal_lm.base_model_prefix)


def label_logits(model, input_ids, attention_mask, token_ids: list[int], head=None):
    """Hidden state at the last real position times the four label rows of the output embedding (or through
    ``head``, an adapter's own 4-way linear head)."""
    _, backbone = _unwrap(model)
    hidden = backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    return _logits_at_last_token(model, hidden, attention_mask, token_ids, head)


def _logits_at_last_token(model, hidden, attention_mask, token_ids: list[int], head=None):
    import torch

    causal_lm, _ = _unwrap(model)
    last = attention_mask.sum(dim=1) - 1
    final = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    if head is not None:
        logits = head(final.to(head.weight.dtype))
    else:
        weight = causal_lm.get_output_embeddings().weight[token_ids]
        logits = final.to(weight.dtype) @ weight.T
    cap = getattr(causal_lm.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


# --- training only the top layers -----------------------------------------------------------------------------
# When LoRA adapts only decoder layers start..N-1, everything below ``start`` is frozen and deterministic: its
# output can be computed once per tweet and reused every epoch, so an epoch costs only the top layers' forward
# and backward. These two functions split the backbone's forward at ``start``; a test checks that together they
# equal the plain forward (they follow Gemma-3's decoder loop in transformers 5.17).

class _StopForward(Exception):
    pass


def hidden_before_layer(model, input_ids, attention_mask, start: int):
    """The residual stream entering decoder layer ``start`` (the layers below are not run twice)."""
    _, backbone = _unwrap(model)
    captured = {}

    def capture(module, args, kwargs):
        captured["hidden"] = args[0] if args else kwargs["hidden_states"]
        raise _StopForward

    handle = backbone.layers[start].register_forward_pre_hook(capture, with_kwargs=True)
    try:
        backbone(input_ids=input_ids, attention_mask=attention_mask)
    except _StopForward:
        pass
    finally:
        handle.remove()
    return captured["hidden"]


def label_logits_from_layer(model, hidden, attention_mask, start: int, token_ids: list[int], head=None):
    """``label_logits`` for a batch whose residual stream entering layer ``start`` is already known."""
    import torch
    from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask

    _, backbone = _unwrap(model)
    config = backbone.config
    position_ids = torch.arange(hidden.shape[1], device=hidden.device).unsqueeze(0)
    mask_args = {"config": config, "inputs_embeds": hidden, "attention_mask": attention_mask,
                 "past_key_values": None, "position_ids": position_ids}
    masks = {"full_attention": create_causal_mask(**mask_args),
             "sliding_attention": create_sliding_window_causal_mask(**mask_args)}
    rotary = {kind: backbone.rotary_emb(hidden, position_ids, kind) for kind in set(config.layer_types)}
    for index in range(start, config.num_hidden_layers):
        kind = config.layer_types[index]
        hidden = backbone.layers[index](hidden, attention_mask=masks[kind], position_embeddings=rotary[kind],
                                        position_ids=position_ids)
    return _logits_at_last_token(model, backbone.norm(hidden), attention_mask, token_ids, head)


# --- an adapter's own label head ------------------------------------------------------------------------------

def new_label_head(model, token_ids: list[int], from_label_words: bool):
    """A float32 4-way linear head, started from the label words' output rows (so step 0 scores exactly as
    label-word scoring does) or from torch's default random init."""
    import torch

    causal_lm, _ = _unwrap(model)
    rows = causal_lm.get_output_embeddings().weight[token_ids].detach().float()
    head = torch.nn.Linear(rows.shape[1], len(token_ids)).to(rows.device)
    if from_label_words:
        with torch.no_grad():
            head.weight.copy_(rows)
            head.bias.zero_()
    return head


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


def _nf4_config(compute_dtype):
    try:
        from transformers import BitsAndBytesConfig
        import bitsandbytes  # noqa: F401
    except ImportError as exc:
        raise ClassifierError("quantization=nf4 needs bitsandbytes (pip install bitsandbytes)") from exc
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute_dtype)


def check_adapter(adapter_dir: Path, model_id: str | None = None) -> str:
    """The adapter's version, after checking it is complete, readable and made for this base model."""
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
    return str(metadata.get("version") or adapter_dir.name)
