"""What a training is given, ``TrainConfig`` (the recipe: each field is a ``stancestream train`` option), and what
it returns, ``TrainResult``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from shared.classifier.scoring import PROMPT_WORDINGS, TRAIN_WORDING


def _option(default, help: str):
    return field(default=default, metadata={"help": help})


HEADS = ("label-words", "trained", "fresh")
SAMPLINGS = ("shuffle", "balanced", "stance-balanced")


@dataclass
class TrainConfig:
    """A training recipe; each field is a `stancestream train` option, its help the explanation below."""

    epochs: float = _option(2.0, "passes over the training split")
    learning_rate: float = _option(2e-4, "AdamW peak learning rate")
    batch_size: int = _option(16, "tweets per optimizer step")
    lora_rank: int = _option(16, "LoRA rank r")
    lora_alpha: int = _option(32, "LoRA alpha (the update is scaled by alpha / r)")
    lora_dropout: float = _option(0.05, "dropout on the LoRA input")
    weight_decay: float = _option(0.0, "AdamW's decoupled weight decay on the adapter's weights (0 = off): pulls "
                                       "the update toward the base model, a regulariser for recipes that adapt "
                                       "many layers")
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
    prompt_wording: str = _option(TRAIN_WORDING, "the words around each tweet (shared/classifier/scoring.py, "
                                  "PROMPT_WORDINGS): instruction (v1's), or short (≈ 15%% fewer tokens per tweet, "
                                  "so ≈ 1.2× faster to serve; its refit of v1's recipe lost 0.034 dev macro-F1: "
                                  "docs/experiments.md, exp16); recorded in the adapter, so serving does the same "
                                  "(label-word scoring only: the prompt mode has its own prompt)")
    translate_train: bool = _option(False, "add the English translations (translation_en) as extra examples")
    consistency: float = _option(0.0, "weight of a cross-lingual consistency term: the symmetric KL divergence "
                                      "between the predictions on a non-English tweet and on its English "
                                      "translation (translation_en), both trained (0 = off)")
    sampling: str = _option("shuffle", "batch order: shuffle (each example once per epoch), balanced (drawn with "
                                       "replacement so that within each language every label is equally likely, "
                                       "each language keeping its share of the data) or stance-balanced (the same "
                                       "for pro, anti and neutral only: unrelated tweets keep their share of their "
                                       "language)")
    pretrain_epochs: float = _option(1.0, "with --pretrain-texts: passes of the causal-LM stage over the texts")
    pretrain_rank: int = _option(8, "with --pretrain-texts: LoRA rank of the causal-LM stage (every decoder layer)")
    pretrain_learning_rate: float = _option(1e-4, "with --pretrain-texts: AdamW learning rate of that stage")
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
        if self.prompt_wording not in PROMPT_WORDINGS:
            raise ValueError(f"--prompt-wording must be one of {', '.join(PROMPT_WORDINGS)}, "
                             f"got {self.prompt_wording!r}")
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"--sampling must be one of {', '.join(SAMPLINGS)}, got {self.sampling!r}")
        for name in ("consistency", "weight_decay"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
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
