"""What a training can resume from: the LoRA weights (and the label head), the optimizer, the schedule, the
weight average, torch's random state (LoRA dropout draws from it) and the loop's state, written beside the run
(``OUT/checkpoint``) and swapped in atomically."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from shared.classifier.adapters import LABEL_HEAD_FILE, save_label_head


class WeightAverage:
    """Exponential moving average of the trainable weights (Polyak averaging), swapped in for evaluation."""

    def __init__(self, params: list, decay: float):
        self.params, self.decay = params, decay
        self.shadow = [p.detach().clone() for p in params]

    def update(self, step: int) -> None:
        import torch

        # Early on the average would be dominated by the untrained start: warm the decay up.
        decay = min(self.decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for shadow, p in zip(self.shadow, self.params):
                shadow.lerp_(p.detach(), 1 - decay)

    def swap(self) -> None:
        import torch

        with torch.no_grad():
            for shadow, p in zip(self.shadow, self.params):
                held = p.detach().clone()
                p.copy_(shadow)
                shadow.copy_(held)

    def load(self, tensors: list) -> None:
        for shadow, saved in zip(self.shadow, tensors):
            shadow.copy_(saved)


def save_checkpoint(directory: Path, model, optimizer, scheduler, state: dict,
                    average: WeightAverage | None = None, head=None) -> None:
    import torch
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    tmp = directory.with_name(directory.name + ".partial")
    tmp.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in get_peft_model_state_dict(model).items()}, tmp / "adapter.safetensors")
    if head is not None:
        save_label_head(head, tmp)
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    if average is not None:
        torch.save(average.shadow, tmp / "average.pt")
    # Without it a resumed run draws other dropout masks than an uninterrupted one and ends elsewhere.
    torch.save(torch.get_rng_state(), tmp / "rng.pt")
    (tmp / "state.json").write_text(json.dumps(state, default=str))
    if directory.exists():
        shutil.rmtree(directory)
    tmp.rename(directory)


def load_checkpoint(directory: Path, model, optimizer, scheduler, average: WeightAverage | None = None,
                    head=None) -> dict:
    """Restore what ``save_checkpoint`` wrote into the given objects; return the loop's state."""
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    state = json.loads((directory / "state.json").read_text())
    set_peft_model_state_dict(model, load_file(directory / "adapter.safetensors"))
    if head is not None:
        head.load_state_dict(load_file(directory / LABEL_HEAD_FILE))
    optimizer.load_state_dict(torch.load(directory / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(torch.load(directory / "scheduler.pt", weights_only=True))
    if average is not None:
        average.load(torch.load(directory / "average.pt", weights_only=True))
    if (directory / "rng.pt").exists():  # checkpoints written before 2026-12-02 evening have none
        torch.set_rng_state(torch.load(directory / "rng.pt", weights_only=True))
    return state
