"""`stancestream run` and `stancestream sql` as a user runs them: separate processes, embedded broker and chDB."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from commands import REPO, cli_env, run_cli, spawn_cli, stop

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.model]


def _feed(path: Path, n: int, malformed: int) -> Path:
    lines = [json.dumps({"id": f"c{i}", "text": f"Refugees are welcome in our city {i}", "lang": "en",
                         "created_at": "2026-11-02T09:00:00Z"}) for i in range(n)]
    for k in range(malformed):
        lines.insert(3 * k + 1, '{"id": "broken", "text": ')
    path.write_text("\n".join(lines) + "\n")
    return path


def _count(env: dict[str, str]) -> tuple[int, int]:
    result = run_cli("sql", "SELECT (SELECT count() FROM classifications FINAL) AS c, "
                            "(SELECT count() FROM dead_letters FINAL) AS d", "--format", "json", env=env)
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout)[0]
    return int(row["c"]), int(row["d"])


def _await_counts(env: dict[str, str], expected: tuple[int, int], proc: subprocess.Popen, deadline: float) -> None:
    """Poll `stancestream sql` (through the running process's gateway) until it shows ``expected``."""
    counts = (0, 0)
    while time.monotonic() < deadline and counts != expected:
        time.sleep(1)
        assert proc.poll() is None, proc.stdout.read()
        if (Path(env["STANCESTREAM_DATA_DIR"]) / "gateway.json").exists():
            counts = _count(env)
    assert counts == expected


def test_run_exit_when_done_then_sql_after_stop(tmp_path, tiny_model_dir):
    env = cli_env(tmp_path, tiny_model_dir)
    feed = _feed(tmp_path / "feed.jsonl", 30, malformed=2)
    result = run_cli("run", "--feed", str(feed), "--exit-when-done", env=env, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "final summary" in result.stdout
    # After the stack stopped, `sql` opens the embedded store itself.
    assert _count(env) == (30, 2)
    csv_out = run_cli("sql", "SELECT lang, count() AS n FROM classifications FINAL GROUP BY lang", "--format", "csv",
                      env=env)
    assert csv_out.stdout.splitlines()[0] == "lang,n"
    assert sum(int(line.split(",")[1]) for line in csv_out.stdout.splitlines()[1:]) == 30


def test_sql_adapters_and_labels_while_running_then_ctrl_c_stops_cleanly(tmp_path, tiny_model_dir, tiny_adapter):
    env = cli_env(tmp_path, tiny_model_dir) | {"STANCESTREAM_ADAPTER": str(tiny_adapter)}
    feed = _feed(tmp_path / "feed.jsonl", 20, malformed=1)
    with spawn_cli("run", "--feed", str(feed), "--rate", "20", env=env) as proc:
        deadline = time.monotonic() + 180
        _await_counts(env, (20, 1), proc, deadline)  # through the running stack's gateway
        bad = run_cli("sql", "SELECT * FROM no_such_table", env=env)
        assert bad.returncode == 2 and "no_such_table" in bad.stderr
        # The registry and the labels, read through the running stack's gateway.
        adapters = run_cli("adapters", "list", "--json", env=env)
        assert adapters.returncode == 0, adapters.stderr
        assert [(a["version"], a["status"]) for a in json.loads(adapters.stdout)] == [("v1", "active")]
        labels = tmp_path / "labels.csv"
        labels.write_text("id,lang,label,text\n1,en,neutral,the minister spoke about visas\n"
                          "2,de,anti-immigration,Grenzen dicht\n3,en,maybe,unknown label\n")
        imported = run_cli("labels", "import", str(labels), env=env)
        assert imported.returncode == 0 and "published 3 label(s)" in imported.stdout, imported.stderr
        stats = run_cli("labels", "stats", "--json", env=env)
        assert stats.returncode == 0, stats.stderr
        assert json.loads(stats.stdout) | {"by_language": None} == {
            "total": 2, "new_since_active": 2, "active_version": "v1", "by_language": None}
        assert json.loads(stats.stdout)["by_language"] == {"de": {"anti-immigration": 1}, "en": {"neutral": 1}}
        out = stop(proc, signal.SIGINT, timeout=60)
    assert proc.returncode == 0, out
    assert "final summary" in out
    assert not (Path(env["STANCESTREAM_DATA_DIR"]) / "gateway.json").exists()


def test_run_reports_a_missing_feed_clearly(tmp_path, tiny_model_dir):
    result = run_cli("run", "--feed", str(tmp_path / "nope.jsonl"), env=cli_env(tmp_path, tiny_model_dir))
    assert result.returncode == 2
    assert "feed file not found" in result.stderr


@pytest.mark.slow
def test_demo_feed_with_the_real_model(tmp_path):
    """The README's demo path with the real default model (opt-in: --run-slow)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STANCESTREAM_DATA")}
    env["STANCESTREAM_DATA_DIR"] = str(tmp_path / "var")
    result = run_cli("run", "--feed", str(REPO / "data" / "sample_feed.jsonl"), "--exit-when-done", env=env,
                     timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert _count(env) == (192, 8)


def test_run_reads_a_feed_from_stdin(tmp_path, tiny_model_dir):
    env = cli_env(tmp_path, tiny_model_dir)
    feed = _feed(tmp_path / "feed.jsonl", 12, malformed=1).read_text()
    result = run_cli("run", "--feed", "-", "--exit-when-done", env=env, input=feed, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert _count(env) == (12, 1)


def test_ctrl_c_while_a_producer_keeps_stdin_open_exits_cleanly(tmp_path, tiny_model_dir):
    """`run --feed -` fed by a producer that never closes the pipe: Ctrl-C drains what was read and exits 0 — the
    reader blocked on the open pipe must not hang or crash the interpreter at exit."""
    env = cli_env(tmp_path, tiny_model_dir)
    feed = _feed(tmp_path / "feed.jsonl", 12, malformed=1).read_text()
    with spawn_cli("run", "--feed", "-", env=env, stdin=subprocess.PIPE) as proc:
        proc.stdin.write(feed)
        proc.stdin.flush()  # and left open, like a live producer
        _await_counts(env, (12, 1), proc, time.monotonic() + 120)
        out = stop(proc, signal.SIGINT, timeout=60)
    assert proc.returncode == 0, out
    assert "Fatal Python error" not in out and "final summary" in out


def test_worker_process_against_a_broker_then_sigterm(tmp_path, tiny_model_dir, broker):
    """The production entry point: `stancestream worker` with KAFKA_BOOTSTRAP set, stopped by SIGTERM."""
    import asyncio

    from shared.streaming.feed import FeedReport, produce_feed, read_feed

    env = cli_env(tmp_path, tiny_model_dir) | {"KAFKA_BOOTSTRAP": broker.bootstrap,
                                               "STANCESTREAM_TOPIC_PREFIX": "wproc.", "STANCESTREAM_PARTITIONS": "2"}
    missing = run_cli("worker", env={k: v for k, v in env.items() if k != "KAFKA_BOOTSTRAP"})
    assert missing.returncode == 2 and "KAFKA_BOOTSTRAP is not set" in missing.stderr

    with spawn_cli("worker", env=env) as proc:
        gateway = Path(env["STANCESTREAM_DATA_DIR"]) / "gateway.json"
        deadline = time.monotonic() + 120
        while not gateway.exists() and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.5)
        feed = _feed(tmp_path / "feed.jsonl", 10, malformed=1)
        asyncio.run(produce_feed(broker.bootstrap, "wproc.tweets.raw", read_feed(str(feed)), FeedReport()))
        _await_counts(env, (10, 1), proc, deadline)
        out = stop(proc, signal.SIGTERM, timeout=60)
    assert proc.returncode == 0, out


def test_monitor_shows_live_numbers_while_run_processes_a_feed(tmp_path, tiny_model_dir, tiny_adapter):
    env = cli_env(tmp_path, tiny_model_dir) | {"STANCESTREAM_ADAPTER": str(tiny_adapter)}
    feed = _feed(tmp_path / "feed.jsonl", 60, malformed=2)
    snapshots = []
    with spawn_cli("run", "--feed", str(feed), "--rate", "3", env=env) as proc:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            time.sleep(1)
            assert proc.poll() is None, proc.stdout.read()
            if not (Path(env["STANCESTREAM_DATA_DIR"]) / "gateway.json").exists():
                continue
            shown = run_cli("monitor", "--once", "--json", "--window", "120", env=env)
            assert shown.returncode == 0, shown.stderr
            snapshot = json.loads(shown.stdout)
            if snapshot["tweets_in_window"] == 0 and not snapshots:
                continue  # the stack is up but nothing is classified yet: wait for the first tweets
            snapshots.append(snapshot)
            if len(snapshots) >= 2 and snapshots[-1]["tweets_in_window"] > snapshots[0]["tweets_in_window"]:
                break
        table = run_cli("monitor", "--once", env=env)
        stop(proc, signal.SIGINT, timeout=60)
    assert snapshots, "monitor never showed a classified tweet"
    last = snapshots[-1]
    assert last["tweets_in_window"] > snapshots[0]["tweets_in_window"] > 0  # it moves while the feed runs
    assert last["ingest_per_s"] > 0 and last["latency_p50_ms"] is not None
    assert last["active_adapter"] == "v1" and last["dead_letters_total"] == 2
    assert sum(sum(labels.values()) for labels in last["mix"].values()) == last["tweets_in_window"]
    assert "ingest" in table.stdout and "tweets/s" in table.stdout and "adapter v1" in table.stdout


def test_a_worker_started_beside_run_attaches_to_its_broker_and_store(tmp_path, tiny_model_dir):
    """README: `stancestream worker` on the data directory of a running `run`, with neither KAFKA_BOOTSTRAP nor
    CLICKHOUSE_URL, joins its consumer group through its broker and writes through its gateway."""
    import asyncio
    import urllib.request

    from shared.streaming.broker import free_port
    from shared.streaming.feed import FeedReport, produce_feed, read_feed

    def metric(port: int, name: str) -> float:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
                lines = response.read().decode().splitlines()
        except OSError:
            return 0.0
        return next((float(line.split()[1]) for line in lines if line.startswith(name + " ")), 0.0)

    port = free_port()
    env = cli_env(tmp_path, tiny_model_dir) | {"STANCESTREAM_PARTITIONS": "4", "STANCESTREAM_BATCH_SIZE": "8",
                                               "STANCESTREAM_TRAINER_EMBEDDED": "false"}
    gateway = Path(env["STANCESTREAM_DATA_DIR"]) / "gateway.json"
    deadline = time.monotonic() + 240
    with spawn_cli("run", env=env, output=tmp_path / "run.log") as run:
        while not gateway.exists():
            assert run.poll() is None and time.monotonic() < deadline, (tmp_path / "run.log").read_text()
            time.sleep(0.5)
        with spawn_cli("worker", env=env | {"STANCESTREAM_METRICS_PORT": str(port)},
                       output=tmp_path / "worker.log") as worker:
            while metric(port, "stancestream_assigned_partitions") == 0:  # it joined the run's group
                assert worker.poll() is None and time.monotonic() < deadline, (tmp_path / "worker.log").read_text()
                time.sleep(0.5)
            bootstrap = json.loads(gateway.read_text())["kafka_bootstrap"]
            feed = _feed(tmp_path / "feed.jsonl", 400, malformed=0)
            asyncio.run(produce_feed(bootstrap, "tweets.raw", read_feed(str(feed)), FeedReport()))
            _await_counts(env, (400, 0), run, deadline)
            attached = metric(port, "stancestream_tweets_total")
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=60)
        stop(run, signal.SIGINT, timeout=60)
    assert worker.returncode == 0, (tmp_path / "worker.log").read_text()
    assert run.returncode == 0, (tmp_path / "run.log").read_text()
    assert 0 < attached < 400, f"the attached worker classified {attached} of the 400 tweets"
