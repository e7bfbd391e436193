"""Soak test of the embedded stack: a steady offered rate for a long time, watching memory, lag and counts.

    .venv/bin/python benchmarks/soak.py --minutes 30 --rate 1 --out out/soak

Starts ``stancestream run --feed -`` exactly as a user would, writes tweets (cycled from data/sample_feed.jsonl
and ../shared's test set when present, each with a fresh id) to its standard input at ``--rate`` per second,
and every ``--sample-s`` records: the resident memory (RSS) of the ``run`` process and of each child (the
Tansu broker), the lag (tweets written − tweets stored or dead-lettered) and the counts. At the end it stops
``run`` with Ctrl-C (which drains), checks that every line written is stored exactly once (classifications
FINAL, the hourly rollup, dead letters), and writes OUT/soak.json and OUT/soak.png.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from shared.settings import Settings  # noqa: E402
from shared.store import open_store  # noqa: E402


def texts() -> list[str]:
    rows = [json.loads(line)["text"] for line in (REPO / "data" / "sample_feed.jsonl").read_text().splitlines()
            if line.startswith("{") and '"text"' in line and _is_json(line)]
    test_csv = REPO.parent / "shared" / "datasets" / "immigration-tweets" / "test.csv"
    if test_csv.exists():
        import csv

        with open(test_csv, newline="", encoding="utf-8") as handle:
            rows += [r["text"] for r in csv.DictReader(handle) if r.get("text")]
    return [text for text in rows if text.strip()]  # a blank text is a dead letter, not a tweet


def _is_json(line: str) -> bool:
    try:
        return isinstance(json.loads(line).get("text"), str)
    except ValueError:
        return False


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def command_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def counts(settings: Settings) -> dict[str, int]:
    store = open_store(settings)  # the running stack's gateway
    row = store.query("SELECT (SELECT count() FROM classifications FINAL), (SELECT count() FROM classifications),"
                      " (SELECT sum(tweets) FROM classifications_hourly), (SELECT count() FROM dead_letters FINAL)"
                      ).rows[0]
    return {"classified": int(row[0]), "rows_written": int(row[1]), "rollup": int(row[2] or 0),
            "dead_letters": int(row[3])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--rate", type=float, default=1.0, help="tweets per second offered")
    parser.add_argument("--sample-s", type=float, default=10.0)
    parser.add_argument("--invalid-every", type=int, default=50, help="every Nth line is malformed (0: none)")
    parser.add_argument("--out", type=Path, default=REPO / "out" / "soak")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    data_dir = args.out / "var"
    env = dict(os.environ, STANCESTREAM_DATA_DIR=str(data_dir), STANCESTREAM_METRICS_PORT="off")
    settings = Settings(data_dir=data_dir)
    pool = texts()
    proc = subprocess.Popen([sys.executable, "-m", "services.cli", "run", "--feed", "-"], cwd=REPO, env=env,
                            stdin=subprocess.PIPE, stdout=open(args.out / "run.log", "w"), stderr=subprocess.STDOUT,
                            text=True)
    while not (data_dir / "gateway.json").exists():
        if proc.poll() is not None:
            print(f"run exited with {proc.returncode}; see {args.out / 'run.log'}", file=sys.stderr)
            return 1
        time.sleep(1)
    written = {"lines": 0, "invalid": 0}
    stop = threading.Event()

    def feed() -> None:
        started = time.monotonic()
        i = 0
        while not stop.is_set():
            ahead = started + i / args.rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
            if args.invalid_every and i % args.invalid_every == args.invalid_every - 1:
                line = '{"id": "soak-bad-%d", "text": ' % i
                written["invalid"] += 1
            else:
                line = json.dumps({"id": f"soak-{i}", "text": pool[i % len(pool)],
                                   "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
                                  ensure_ascii=False)
            proc.stdin.write(line + "\n")
            proc.stdin.flush()
            written["lines"] += 1
            i += 1

    feeder = threading.Thread(target=feed, daemon=True)
    started = time.monotonic()
    feeder.start()
    samples = []
    try:
        while time.monotonic() - started < args.minutes * 60:
            time.sleep(args.sample_s)
            if proc.poll() is not None:
                print(f"run exited early with {proc.returncode}", file=sys.stderr)
                break
            now = counts(settings)
            sample = {"t_s": round(time.monotonic() - started, 1), "written": written["lines"],
                      "lag": written["lines"] - now["classified"] - now["dead_letters"],
                      "rss_mb": {"run": rss_mb(proc.pid)}} | now
            for child in children(proc.pid):
                sample["rss_mb"][command_name(child)] = rss_mb(child)
            samples.append(sample)
            print(json.dumps(sample), flush=True)
    finally:
        stop.set()
        feeder.join(timeout=5)
        proc.send_signal(signal.SIGINT)  # drains what the broker holds
        proc.stdin.close()  # the producer is done too
        proc.wait(timeout=600)
    final = _final_counts(settings)
    valid = written["lines"] - written["invalid"]
    verdict = {"written": written["lines"], "valid": valid, "invalid": written["invalid"]} | final
    # Every line exactly once: each either classified or dead-lettered, the rollup and archive agreeing.
    verdict["exact"] = (final["classified"] + final["dead_letters"] == written["lines"]
                        and final["classified"] == final["rollup"] == final["tweets"])
    report = {"minutes": args.minutes, "rate": args.rate, "cpu": _cpu(), "samples": samples, "final": verdict}
    (args.out / "soak.json").write_text(json.dumps(report, indent=1))
    _plot(samples, args.out / "soak.png", args.rate)
    print(json.dumps(verdict))
    return 0 if verdict["exact"] else 1


def _final_counts(settings: Settings) -> dict[str, int]:
    from shared.store import open_store as open_

    store = open_(settings, prefer_gateway=False)
    try:
        row = store.query("SELECT (SELECT count() FROM classifications FINAL), (SELECT sum(tweets) FROM"
                          " classifications_hourly), (SELECT count() FROM dead_letters FINAL),"
                          " (SELECT count() FROM tweets FINAL)").rows[0]
    finally:
        store.close()
    return {"classified": int(row[0]), "rollup": int(row[1] or 0), "dead_letters": int(row[2]), "tweets": int(row[3])}


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "?"


def _plot(samples: list[dict], path: Path, rate: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not samples:
        return
    minutes = [s["t_s"] / 60 for s in samples]
    names = sorted({k for s in samples for k in s["rss_mb"]})
    fig, axes = plt.subplots(len(names) + 1, 1, figsize=(9, 2.4 * (len(names) + 1)), sharex=True)
    for ax, name in zip(axes, names):  # one panel each: the broker's MBs vanish beside the model's GBs
        ax.plot(minutes, [s["rss_mb"].get(name) for s in samples])
        ax.set_ylabel(f"{name} RSS (MB)")
    axes[0].set_title(f"soak: {rate:g} tweets/s offered to `stancestream run`")
    lag = axes[-1]
    lag.plot(minutes, [s["lag"] for s in samples], color="tab:red")
    lag.set_ylabel("lag (tweets written − stored)")
    lag.set_xlabel("minutes")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def replot(report: Path, out: Path) -> None:
    data = json.loads(report.read_text())
    _plot(data["samples"], out, data["rate"])


if __name__ == "__main__":
    sys.exit(main())
