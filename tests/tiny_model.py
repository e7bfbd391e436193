"""A tiny random Gemma-3 causal LM with a word-level tokenizer, saved as a local Hugging Face directory.

It loads through exactly the code path of the real base model (``StanceClassifier.load`` with a local
``base_model`` directory) in well under a second, and needs no download.
"""

from __future__ import annotations

import re
from pathlib import Path

from shared.classifier.scoring import PAPER_STYLE_PROMPT, PROMPT_WORDINGS, VERBALIZERS

SPECIAL = ["<pad>", "<eos>", "<bos>", "[UNK]"]  # ids 0..3

# Words of the test fixtures (schemas/examples, test texts) and common English words.
FIXTURE_WORDS = """
the a an and or but not no yes is are was were be been has have had do does did will would can could should
i you he she it we they me him her us them my your his its our their this that these those there here
what who when where why how all any some many more most much very just only also even still again
of in on at to for from with by about into over after before under between through against without
new old good bad big small long short first last next other same own high low great little
people person man woman child children family friend friends city country world life time day week year
today tomorrow yesterday night morning home house work job school money law government border borders
immigration immigrants immigrant migrants migrant refugees refugee asylum visa citizens citizenship
policy policies vote votes election minister president party support against welcome deport deportation
open close closed control rights help jobs economy wages housing crime safe safety
football match game team goal win won lost play played music song concert film movie book read
coffee tea food dinner lunch breakfast rain sun weather cold hot beautiful happy sad love like hate
think know want need make made take go going went come see look say said tell give get got feel
tweet stance answer question minimal full example numeric id text sample feed csv jsonl gz
marathon training run legs market saturday oranges episode ending system update nothing works
one two three four five six seven eight nine ten hundred thousand
""".split()


def _words(text: str) -> list[str]:
    return re.findall(r"\w+|[^\w\s]+", text.lower())  # as the Whitespace pre-tokenizer splits


def vocabulary(paper_prompt: bool = False) -> list[str]:
    """The tiny tokenizer's words; ``paper_prompt`` adds those of the paper-style prompt (and its numbers 1-4)
    at the end, for the ``prompt`` scoring mode. Without it the vocabulary is the one every other test uses."""
    words = [w for prefix, suffix in PROMPT_WORDINGS.values() for w in _words(prefix + suffix)]
    words += [w.strip().lower() for w in VERBALIZERS.values()]
    words += FIXTURE_WORDS + list(".,:;!?#@'\"-/()")
    if paper_prompt:
        words += _words(PAPER_STYLE_PROMPT.replace("{tweet}", ""))
    vocab = list(SPECIAL)
    for word in words:
        if word not in vocab:
            vocab.append(word)
    return vocab


def build_tiny_model(directory: Path, paper_prompt: bool = False) -> Path:
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig, PreTrainedTokenizerFast

    vocab = {word: idx for idx, word in enumerate(vocabulary(paper_prompt))}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="[UNK]"
    )
    tokenizer.save_pretrained(directory)

    config = Gemma3TextConfig(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, max_position_embeddings=512, sliding_window=32,
        # Wider than the default 0.02 so that different texts get clearly different label probabilities.
        initializer_range=0.2,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    Gemma3ForCausalLM(config).save_pretrained(directory)
    return directory
