"""int8 on an AVX2-only CPU, with what keeps the answers added one at a time: does torch's fbgemm int8 (the only
int8 GEMM torch has for AVX2) then agree with the served fp32?

    .venv/bin/python benchmarks/smoothquant_agreement.py --variant 0 --variant 0.5 --variant 0.8 --variant 0.8:down_proj
    .venv/bin/python benchmarks/smoothquant_agreement.py --zero-padding --per-token --full-range --variant 0.8:down_proj
    .venv/bin/python benchmarks/smoothquant_agreement.py --weights-only --variant 0 --variant 0:down_proj
    .venv/bin/python benchmarks/smoothquant_agreement.py <the chosen options> --final

- Smoothing (SmoothQuant, Xiao et al. 2023), α in ``--variant``: each input channel j of a decoder projection is
  divided by s_j = max|X_j|^α / max|W_j|^(1-α) and its weight column multiplied by it (the same products in exact
  arithmetic; X_j's range measured on ``--calibrate-n`` tweets of train.csv). Projections reading one input
  (q/k/v, gate/up) share s, and o_proj's s is shared by the query heads of a value head, so all of it could fold
  into the norms and the value/up projections; here it runs as a multiply in front of each layer.
- ``--zero-padding``: the packed passes' unused row ends never reach 10-50× a real token's range.
- ``--per-token``: fbgemm quantizes a call's activations with one scale; each token is scaled to a largest |value|
  of 1 before the product and back after it, so that one scale fits every token.
- ``--full-range``: 8-bit activations where torch's dynamic Linear asks fbgemm for 7.
- ``--weights-only``: the weights rounded to per-channel int8, fp32 products: the weights' share of the error.

The variant is chosen on ``--select-n`` train.csv tweets that the calibration did not see; ``--final`` is the one
check on test.csv. The issue's bar for offering int8: label agreement ≥ 0.99 with the served precision and
macro-F1 within 0.005. Speeds are printed beside fp32's (one process, one round, the unfolded multiplies
included): indicative only. Results: docs/benchmarks.md, "int8 on AVX2 again".
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from ab import timed
from services.bench.main import machine, read_tweets
from shared.classifier.model import StanceClassifier
from shared.settings import Settings
from shared.training.metrics import scores, to_indices

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "immigration-tweets"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", action="append", default=None,
                        help="α[:projections[:layers]] (repeatable): the migration strength (0: no smoothing), the "
                             "comma-separated projections and decoder layers left in fp32")
    parser.add_argument("--calibrate-n", type=int, default=256, help="train.csv tweets whose activations set s")
    parser.add_argument("--select-n", type=int, default=320, help="train.csv tweets after those, to choose α on")
    parser.add_argument("--zero-padding", action="store_true",
                        help="zero the padding's embeddings, so it stays zero through every layer (same answers)")
    parser.add_argument("--weights-only", action="store_true",
                        help="round the weights to per-channel int8 and keep fp32 products: the weights' share of the "
                             "disagreement")
    parser.add_argument("--per-token", action="store_true",
                        help="scale each token to a largest |value| of 1 around the product: per-token int8 from "
                             "fbgemm's per-tensor kernel")
    parser.add_argument("--full-range", action="store_true",
                        help="8-bit activations, where torch's dynamic Linear asks fbgemm for 7 (reduce_range: AVX2's "
                             "u8×s8 pair sums can saturate int16)")
    parser.add_argument("--final", action="store_true", help="the one check: test.csv, with speed")
    args = parser.parse_args()

    train_texts, train_labels = read_tweets(DATASETS / "train.csv", args.calibrate_n + args.select_n)
    calibration = train_texts[:args.calibrate_n]
    if args.final:
        texts, labels = read_tweets(DATASETS / "test.csv", None)
    else:
        texts, labels = train_texts[args.calibrate_n:], train_labels[args.calibrate_n:]
    truth = to_indices(labels)
    settings = Settings()
    print(machine(), f"torch threads {torch.get_num_threads()}, {len(texts)} tweets "
          f"({'test.csv' if args.final else 'train.csv, unseen by the calibration'})", flush=True)

    classifier = StanceClassifier.load(settings, adapter=settings.adapter)
    served, served_rate = timed(classifier, texts)
    served_f1 = scores(truth, served.argmax(1))["macro_f1"]
    print(f"served ({classifier.runtime.dtype}): {served_rate:.2f} tweets/s, macro-F1 {served_f1:.3f}", flush=True)
    ranges = None
    for variant in args.variant or ["0.5"]:
        alpha, projections, layers = (variant.split(":") + ["", ""])[:3]
        kept = ({name for name in projections.split(",") if name}
                | {f"layer{index}" for index in layers.split(",") if index})
        classifier = StanceClassifier.load(settings, adapter=settings.adapter)
        if args.zero_padding:
            zero_padding(classifier)
        ranges = ranges or input_ranges(classifier, calibration)  # of the unchanged model: the same for every variant
        if args.weights_only:
            round_weights(classifier.model, kept)
        else:
            smooth_and_quantize(classifier.model, ranges, float(alpha), kept, args.per_token, args.full_range)
        int8, int8_rate = timed(classifier, texts)
        agreement = float((int8.argmax(1) == served.argmax(1)).mean())
        int8_f1 = scores(truth, int8.argmax(1))["macro_f1"]
        print(f"α {float(alpha):.2f}, fp32 kept: {', '.join(sorted(kept)) or 'none'}: {int8_rate:.2f} tweets/s "
              f"({int8_rate / served_rate:.2f}x, with the unfolded multiplies), label agreement {agreement:.3f} "
              f"({int((int8.argmax(1) != served.argmax(1)).sum())} of {len(texts)} differ), "
              f"max |dp| {np.abs(int8 - served).max():.3f}, macro-F1 {int8_f1:.3f} ({int8_f1 - served_f1:+.3f})",
              flush=True)


def zero_padding(classifier: StanceClassifier) -> None:
    """A packed pass's unused row ends hold the pad token, whose activations grow through the layers to 10-50× a
    real token's (down_proj's input: 785 against 49 in layer 1) and so set one-scale-per-pass int8's range. Zero
    embeddings stay zero through Gemma's norms, bias-free projections and attention, and the tweets never attend to
    them: the same answers."""
    pad_id = classifier.tokenizer.pad_token_id or 0

    def zeroed(_module, inputs, output):
        return output.masked_fill((inputs[0] == pad_id)[..., None], 0.0)

    classifier.model.get_input_embeddings().register_forward_hook(zeroed)


def decoder_linears(model) -> dict:
    """The decoder's projections by the name of the module holding their weight (``….q_proj``, or
    ``….q_proj.base_layer`` where LoRA wraps it: merged, only that runs)."""
    return {name: module for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and ".layers." in name and _projection(name).endswith("_proj")}


def _layer(name: str) -> int:
    return int(name.split(".layers.", 1)[1].split(".", 1)[0])


def _projection(name: str) -> str:
    return name.removesuffix(".base_layer").rsplit(".", 1)[1]


def input_ranges(classifier: StanceClassifier, texts: list[str]) -> dict:
    """Each decoder projection's largest |input| per channel over ``texts`` (padding included: it is in every
    pass the quantized layer sees)."""
    ranges: dict = {}

    def hook(name):
        def record(_module, inputs):
            seen = inputs[0].detach().abs().reshape(-1, inputs[0].shape[-1]).amax(0)
            ranges[name] = seen if name not in ranges else torch.maximum(ranges[name], seen)
        return record

    handles = [module.register_forward_pre_hook(hook(name))
               for name, module in decoder_linears(classifier.model).items()]
    try:
        classifier.predict_proba(texts)
    finally:
        for handle in handles:
            handle.remove()
    return ranges


def round_weights(model, kept: set) -> None:
    """Each decoder projection's weight rounded to int8 with one symmetric scale per output channel, as fbgemm
    stores it; the products stay fp32."""
    with torch.no_grad():
        for name, linear in decoder_linears(model).items():
            if _projection(name) in kept or f"layer{_layer(name)}" in kept:
                continue
            scale = linear.weight.abs().amax(1, keepdim=True).clamp(min=1e-8) / 127
            linear.weight.copy_((linear.weight / scale).round().clamp(-127, 127) * scale)


def smooth_and_quantize(model, ranges: dict, alpha: float, kept: set, per_token: bool = False,
                        full_range: bool = False) -> None:
    """Projections reading the same input (q/k/v; gate/up) share one s, as folding them into their norm requires."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    torch.backends.quantized.engine = "fbgemm"
    linears = decoder_linears(model)
    groups: dict = {}
    shared = {"q_proj": "qkv", "k_proj": "qkv", "v_proj": "qkv", "gate_proj": "gate_up", "up_proj": "gate_up"}
    for name in linears:
        groups.setdefault((_layer(name), shared.get(_projection(name), _projection(name))), []).append(name)
    chosen = {}
    for members in groups.values():
        members = [name for name in members if _projection(name) not in kept and f"layer{_layer(name)}" not in kept]
        if not members:
            continue
        weight_range = torch.stack([linears[name].weight.detach().abs().amax(0) for name in members]).amax(0)
        x_range = ranges[members[0]]
        if _projection(members[0]) == "o_proj":  # folded into v_proj: the query heads sharing a value head share s
            heads = model.config.num_attention_heads // model.config.num_key_value_heads
            x_range = _shared_across(x_range, heads, model.config.head_dim * model.config.num_key_value_heads)
            weight_range = _shared_across(weight_range, heads, model.config.head_dim * model.config.num_key_value_heads)
        s = (x_range.clamp(min=1e-5) ** alpha / weight_range.clamp(min=1e-5) ** (1 - alpha)).clamp(min=1e-5)
        for name in members:
            linear = linears[name]
            with torch.no_grad():
                linear.weight.mul_(s)
            parent_name, leaf = name.rsplit(".", 1)
            parent = model.get_submodule(parent_name)
            setattr(parent, leaf, _Smoothed(s, linear, per_token, full_range))
            chosen[f"{name}.linear"] = per_channel_dynamic_qconfig
    quantize_dynamic(model, chosen, inplace=True)


def _shared_across(values, copies: int, width: int):
    return values.reshape(copies, width).amax(0).repeat(copies)


class _Smoothed(torch.nn.Module):
    """``linear`` reading its input divided by ``s``; with ``per_token`` each token's row is scaled to a largest
    |value| of 1 before the product and back after it (the projections have no bias), so fbgemm's one scale per
    call quantizes every token over its own range: per-token int8 from a per-tensor kernel, at the cost of two
    elementwise passes."""

    def __init__(self, s, linear, per_token: bool, full_range: bool):
        super().__init__()
        self.register_buffer("inverse", 1.0 / s)
        self.linear, self.per_token, self.full_range = linear, per_token, full_range

    def forward(self, x):
        x = x * self.inverse
        if not self.per_token:
            return self._product(x)
        norm = x.abs().amax(-1, keepdim=True).clamp(min=1e-6)
        return self._product(x / norm) * norm

    def _product(self, x):
        if not self.full_range:
            return self.linear(x)  # torch's dynamic Linear: 7-bit activations (reduce_range)
        return torch.ops.quantized.linear_dynamic(x, self.linear._packed_params._packed_params, reduce_range=False)


if __name__ == "__main__":
    main()
