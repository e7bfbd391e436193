"""``stancestream bench``: classifier throughput per precision and batch size, the paper's method as baseline,
the roofline, the replay rate, and end-to-end capacity, latency and the copies speedup. Writes DIR/bench.json,
DIR/e2e.png and the "Latest bench" section of docs/benchmarks.md."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import platform
import statistics
import time
from pathlib import Path

from shared.classifier.final_layer import runs_final_layer_at_last_tokens
from shared.classifier.model import StanceClassifier
from shared.training.metrics import scores, to_indices
from shared.settings import Settings
from shared.versions import MODEL_LIBRARIES, library_versions

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "benchmarks.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"
#: What a bench result also depends on beyond the model: the stream, the store and the baseline.
BENCH_LIBRARIES = MODEL_LIBRARIES + ("faust-streaming", "aiokafka", "chdb", "clickhouse-connect", "llama_cpp_python")


def read_tweets(path: Path, n: int | None) -> tuple[list[str], list[str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))[:n]
    if not rows:
        raise ValueError(f"{path} has no rows")
    return [r["text"] for r in rows], [r["label"] for r in rows]


def machine() -> dict:
    cpu = "unknown"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split()
    except (OSError, StopIteration):
        flags = []
    isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return {"cpu": cpu, "cores": os.cpu_count(), "isa": isa, "python": platform.python_version()}


def run(settings: Settings, data: Path, out: Path, n: int, precisions: list[str], pass_sizes: list[int],
        window_s: float, replay_n: int, baseline_n: int, slow_n: int, skip_baseline: bool, skip_e2e: bool,
        update_doc: bool, workers_n: int = 0, max_workers: int | None = None) -> dict:
    import torch

    from services.bench.baseline import BaselineUnavailable, run_baseline
    from services.bench.e2e import run_e2e, run_replay_bench
    from services.bench.roofline import flops_per_tweet, matmul_peak
    from services.bench.throughput import measure, measure_micro_batches, precision_table

    out.mkdir(parents=True, exist_ok=True)
    log = print
    texts, gold = read_tweets(data, n)
    threads = settings.torch_threads or torch.get_num_threads()
    report: dict = {"created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine(),
                    "versions": library_versions(BENCH_LIBRARIES), "data": str(data), "n": len(texts),
                    "threads": threads}
    log(f"machine: {report['machine']['cpu']}, {report['machine']['cores']} cores, {threads} torch threads")

    log("(a) the served classifier (default runtime, shipped adapter)")
    served = StanceClassifier.load(settings, adapter=settings.adapter)
    precision = _precision_name(served)
    dtype_name = precision.split("+")[0]

    def served_sample(classifier: StanceClassifier, where: str) -> dict:
        """The served setting timed, then the matmul peak right after it: paired, so that the host's drift
        cancels in their ratio (the roofline) instead of landing in it."""
        sample = {"where": where} | measure(classifier, texts, settings.pass_tokens)
        sample["peak_gflops"] = matmul_peak(dtype_name, seconds=1.5)["gflops"]
        log(f"  served ({where}): {sample['tweets_per_s']:.2f} tweets/s; {dtype_name} matmul peak "
            f"{sample['peak_gflops']:.0f} GFLOP/s")
        return sample

    samples = [served_sample(served, "start")]
    predictions = served.predict_proba(texts).argmax(axis=1)
    streaming = measure_micro_batches(served, texts, settings.batch_size)
    report["classifier"] = {k: v for k, v in samples[0].items() if k not in ("where", "peak_gflops")} | {
        "precision": precision, "adapter": served.adapter_version,
        "accuracy": round(scores(to_indices(gold), predictions)["accuracy"], 4), "micro_batches": streaming}
    log(f"  accuracy {report['classifier']['accuracy']:.3f} on these {len(texts)} tweets; "
        f"{streaming['tweets_per_s']:.2f} tweets/s in the worker's micro-batches of {settings.batch_size}")

    log("(c) roofline")
    per_tweet = flops_per_tweet(served.model.config, [len(s) for s in served.encode(texts)],
                                last_tokens_final_layer=runs_final_layer_at_last_tokens(served.model))
    # Four significant figures: a tiny test model spends well under a thousandth of a GFLOP per tweet.
    report["roofline"] = {"gflops_per_tweet": float(f"{per_tweet / 1e9:.4g}"), "peak": matmul_peak(dtype_name)}
    log(f"  {per_tweet / 1e9:.2f} GFLOP per tweet; peak by shape {report['roofline']['peak']['by_shape']}")

    log("(e) replay")
    e2e_settings = settings.model_copy(update={"data_dir": out / "e2e-var", "kafka_bootstrap": None,
                                               "clickhouse_url": None, "trainer_embedded": False})
    report["replay"] = run_replay_bench(e2e_settings, served, texts, replay_n, out / "replay", log) if replay_n else {}
    report["replay_tweets_per_s"] = report["replay"].get("tweets_per_s")
    del served

    log("(a) precisions × tokens per pass")
    report["precisions"] = precision_table(settings, texts, precisions, pass_sizes, slow_n, log)

    log("(b) baseline: the paper's method through llama.cpp")
    if skip_baseline:
        report["baseline"] = {"skipped": True}
    else:
        try:
            base = run_baseline(texts[:baseline_n], threads, log)
            answered = [p for p in base["predictions"] if p is not None]
            base["accuracy"] = round(sum(p == g for p, g in zip(base["predictions"], gold)) / base["n"], 4)
            base["answered"] = len(answered)
            base["predictions"] = None  # not kept: the counts say what matters
            report["baseline"] = base
            report["baseline_tweets_per_s"] = base["tweets_per_s"]
            log(f"  baseline {base['tweets_per_s']:.2f} tweets/s ({base['prompt_tokens_per_tweet']:.0f} prompt "
                f"tokens/tweet), accuracy {base['accuracy']:.3f}")
        except BaselineUnavailable as exc:
            report["baseline"] = {"skipped": True, "reason": str(exc)}
            log(f"  skipped: {exc}")

    log("(d) end to end")
    if skip_e2e:
        report["e2e"] = {}
    else:
        every_tweet, _ = read_tweets(data, None)  # a copies burst of all-different tweets needs more than n
        e2e = asyncio.run(run_e2e(e2e_settings, texts, samples[0]["tweets_per_s"], log, window_s,
                                  probe=served_sample, originals=every_tweet))  # the same tweets
        samples += e2e.pop("served_samples")
        report["e2e"] = e2e
        report["e2e_capacity_tweets_per_s"] = e2e["capacity_tweets_per_s"]
        report["e2e_latency"] = e2e["latency"]
        report["cache"] = {k: e2e["cache"][k] for k in ("duplicate_share", "speedup")}
        _plot_e2e(e2e["windows"], out / "e2e.png")
    _served_rate(report, samples, log)

    (out / "bench.json").write_text(json.dumps(report, indent=1) + "\n")  # kept should the last section fail
    log("(f) worker processes")  # last: it sets this process's torch threads per worker count
    if workers_n:
        from services.bench.scaling import run_scaling

        report["workers"] = run_scaling(e2e_settings, texts, log, workers_n, max_workers)
        (out / "bench.json").write_text(json.dumps(report, indent=1) + "\n")
    if update_doc:
        update_benchmarks_doc(report, out)
    log(f"wrote {out / 'bench.json'}")
    return report


def _precision_name(classifier: StanceClassifier) -> str:
    dtype = str(classifier.runtime.dtype).removeprefix("torch.").replace("float32", "fp32").replace("bfloat16", "bf16")
    return dtype + ("+nf4" if classifier.runtime.quantization.value == "nf4" else "")


def _served_rate(report: dict, samples: list[dict], log) -> None:
    """The host's speed drifts by up to 30 % within one run, so no number below divides rates measured minutes
    apart. ``tweets_per_s`` is the median of the served setting's samples (the start; with the end-to-end stack,
    its own classifier just before and just after the capacity search and after the last window); the roofline
    fraction is the median of each sample over the peak measured right after it; the capacity fraction divides
    the capacity by the mean of the two samples that bracket the capacity search."""
    rates = [s["tweets_per_s"] for s in samples]
    rate = round(statistics.median(rates), 3)
    report["tweets_per_s"] = report["classifier"]["tweets_per_s"] = rate
    report["classifier"]["samples_tweets_per_s"] = rates
    report["classifier"]["samples"] = samples
    r = report["roofline"]
    per_sample = [s["tweets_per_s"] * r["gflops_per_tweet"] / s["peak_gflops"] for s in samples]
    r["samples_fraction"] = [round(f, 3) for f in per_sample]
    r["peak_gflops"] = round(statistics.median(s["peak_gflops"] for s in samples), 1)
    r["achieved_gflops"] = round(r["gflops_per_tweet"] * rate, 1)
    report["roofline_fraction"] = round(statistics.median(per_sample), 3)
    if report.get("baseline_tweets_per_s"):
        report["ratio"] = round(rate / report["baseline_tweets_per_s"], 2)
    around = [s["tweets_per_s"] for s in samples if s["where"] in ("before capacity", "after capacity")]
    if report.get("e2e_capacity_tweets_per_s") is not None and around:
        report["e2e"]["classifier_around_capacity_tweets_per_s"] = round(statistics.mean(around), 3)
        report["e2e_capacity_fraction"] = round(report["e2e_capacity_tweets_per_s"] / statistics.mean(around), 3)
    log(f"  served: {rate:.2f} tweets/s (median of {', '.join(f'{x:.2f}' for x in rates)}); "
        f"roofline {report['roofline_fraction']:.0%} (median of {', '.join(f'{x:.0%}' for x in per_sample)})"
        + (f"; ours/baseline {report['ratio']:.1f}×" if "ratio" in report else "")
        + (f"; capacity {report['e2e_capacity_fraction']:.0%} of the classifier around it"
           if "e2e_capacity_fraction" in report else ""))


def _plot_e2e(windows: list[dict], path: Path) -> None:
    """Latency percentiles and delivered rate against the offered rate, one point per steady window."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(windows, key=lambda w: w["offered"])
    offered = [r["offered"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for key in ("p50_s", "p95_s", "p99_s"):
        left.plot(offered, [r[key] for r in rows], marker="o", label=key.removesuffix("_s"))
    left.set_xlabel("offered rate (tweets/s)")
    left.set_ylabel("produce → queryable latency (s)")
    left.set_yscale("log")
    left.legend()
    left.grid(alpha=0.3)
    kept_up = [r["offered"] - (r.get("lag_slope") or 0.0) for r in rows]
    right.plot(offered, kept_up, marker="o", label="delivered (offer − the lag's growth)")
    right.plot(offered, [r["second_half_rate"] for r in rows], marker=".", linestyle=":",
               label="results counted in the second half")
    right.plot(offered, offered, linestyle="--", color="grey", label="offered")
    for r, y in zip(rows, kept_up):
        if not r["sustained"]:
            right.annotate("not sustained", (r["offered"], y), fontsize=8)
    right.set_xlabel("offered rate (tweets/s)")
    right.set_ylabel("tweets/s")
    right.legend()
    right.grid(alpha=0.3)
    fig.suptitle("End to end: Kafka → worker → ClickHouse, steady windows")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render_markdown(report: dict) -> str:
    m = report["machine"]
    lines = [f"Run {report['created_at']} on {m['cpu']} ({m['cores']} cores, {', '.join(m['isa']) or 'no AVX2'}), "
             f"{report['threads']} torch threads, {report['n']} tweets of `{Path(report['data']).name}`.", ""]
    c = report["classifier"]
    lines += [f"- **Served classifier** ({c['precision']}, adapter {c['adapter']}, "
              f"packed passes of {c['pass_tokens']} tokens): "
              f"**{c['tweets_per_s']:.2f} tweets/s** (median of "
              f"{', '.join(f'{x:.2f}' for x in c.get('samples_tweets_per_s', [c['tweets_per_s']]))}: "
              f"{', '.join(x['where'] for x in c.get('samples', [])) or 'one sample'}), {c['tokens_per_s']:.0f} tokens/s, "
              f"{c['tokens_per_tweet']:.0f} tokens/tweet, accuracy {c['accuracy']:.3f}; "
              f"{c['micro_batches']['tweets_per_s']:.2f} tweets/s when the tweets come "
              f"{c['micro_batches']['micro_batch']} at a time, as the worker sees them."]
    b = report.get("baseline", {})
    if not b.get("skipped"):
        lines += [f"- **Baseline** (paper's method, llama.cpp, {b['model']}, one tweet per call, 3 tokens): "
                  f"{b['tweets_per_s']:.2f} tweets/s ({b['prompt_tokens_per_tweet']:.0f} prompt tokens/tweet, "
                  f"{b['prompt_tokens_per_s']:.0f} prompt tokens/s) on {b['n']} tweets, accuracy {b['accuracy']:.3f}. "
                  f"**Ratio ours/baseline: {report['ratio']:.1f}×.**"]
    r = report["roofline"]
    peaks = ", ".join(f"{x['peak_gflops']:.0f}" for x in c.get("samples", []))
    lines += [f"- **Roofline:** {r['gflops_per_tweet']:.2f} GFLOP per tweet × each served sample over the "
              f"{r['peak']['dtype']} matmul peak measured right after it ({peaks} GFLOP/s): "
              f"{', '.join(f'{x:.0%}' for x in r.get('samples_fraction', []))}, median "
              f"**{report['roofline_fraction']:.0%}**.", "",
              "| precision | tokens per pass | tweets/s | tokens/s | n |", "|---|---|---|---|---|"]
    lines += [f"| {p['precision']} | {p['pass_tokens']} | {p['tweets_per_s']:.2f} | {p['tokens_per_s']:.0f} | {p['n']} |"
              for p in report["precisions"]]
    if report.get("replay"):
        lines += ["", f"- **Replay:** {report['replay']['n']} archived tweets at **{report['replay_tweets_per_s']:.2f} "
                      "tweets/s**."]
    e = report["e2e"]
    if e:
        lines += [f"- **End to end:** backlog {e['backlog']['throughput']:.2f} tweets/s; capacity (sustained "
                  f"{e['window_s']:.0f} s) **{report['e2e_capacity_tweets_per_s']:.2f} tweets/s = "
                  f"{report['e2e_capacity_fraction']:.0%} of the classifier alone** (timed just before and after the "
                  f"search: {e['classifier_around_capacity_tweets_per_s']:.2f} tweets/s); identical tweets: "
                  f"{e['cache']['unique_tweets_per_s']:.2f} → {e['cache']['copies_tweets_per_s']:.2f} tweets/s with "
                  f"half copies, medians of {e['cache']['rounds']} alternating rounds "
                  f"(**{report['cache']['speedup']:.2f}×**).", "",
                  "| offered (tweets/s) | sustained | lag growth (tweets/s) | delivered, 2nd half | p50 (s) | p95 (s) "
                  "| p99 (s) | n |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {w['offered']:.2f} | {'yes' if w['sustained'] else 'no'} | "
                  f"{w['lag_slope'] if w.get('lag_slope') is not None else '–'} | {w['second_half_rate']:.2f} | "
                  f"{w['p50_s']:.2f} | {w['p95_s']:.2f} | {w['p99_s']:.2f} | {w['n']} |"
                  for w in sorted(e["windows"], key=lambda w: w["offered"])]
    if report.get("workers"):
        w = report["workers"]
        lines += ["", f"- **Worker processes** (backlog of {w['rows'][0]['n']} tweets, {w['cores']} cores, cache off): "
                  + "; ".join(f"{r['workers']} × {r['torch_threads']} thread(s) {r['tweets_per_s']:.2f} tweets/s "
                              f"({r['speedup']:.2f}×)" for r in w["rows"]) + "."]
    return "\n".join(lines)


def update_benchmarks_doc(report: dict, out: Path) -> None:
    section = f"{START}\n{render_markdown(report)}\n{END}"
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    if START in text and END in text:
        text = text[: text.index(START)] + section + text[text.index(END) + len(END):]
    else:
        text += f"\n## Latest bench (`stancestream bench`)\n\n{section}\n"
    DOC.write_text(text)
