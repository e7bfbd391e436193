"""Adapters made and judged: the training recipe and data, the LoRA training loop, evaluation and metrics, the
trainer's gated cycle, and the registry of adapter versions."""
