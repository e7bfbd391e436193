"""Fault injection: real processes killed with SIGKILL at chosen points, a real Tansu broker, real chDB.

Each test checks the promise of the README it is named after: every line ends up classified or dead-lettered
exactly once — in ``classifications FINAL``, in the hourly rollup and in ``dead_letters`` — whatever crashed.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from commands import cli_env, run_cli, spawn_cli, stop
from reliability_log import record
from shared.streaming.faults import POINTS

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.model]

POSTED = ["2026-11-01T08:15:00Z", "2026-11-01T09:40:00Z", "2026-11-02T17:05:00Z"]  # three hourly buckets


def _env(tmp_path: Path, tiny_model_dir: Path, **extra: str) -> dict[str, str]:
    return cli_env(tmp_path, tiny_model_dir) | {"STANCESTREAM_BATCH_SIZE": "16", "STANCESTREAM_METRICS_PORT": "off",
                                                "STANCESTREAM_TRAINER_EMBEDDED": "false"} | extra


def _write_feed(path: Path, n_valid: int, n_invalid: int) -> Path:
    lines = [json.dumps({"id": f"f{i}", "text": f"Refugees and migrants at the border, report {i}",
                         "created_at": POSTED[i % 3]}) for i in range(n_valid)]
    for k in range(n_invalid):  # spread through the file, so most batches mix valid and invalid lines
        lines.insert((k * 37) % len(lines), '{"id": "broken", "text": ' if k % 2 else "not json at all")
    path.write_text("\n".join(lines) + "\n")
    return path


def _counts(env: dict[str, str]) -> dict[str, int]:
    """What every table and the rollup say, read through the running stack's gateway or the store itself."""
    result = run_cli("sql", "--format", "json",
                     "SELECT (SELECT count() FROM classifications FINAL) AS classified,"
                     " (SELECT count() FROM classifications) AS rows_written,"
                     " (SELECT sum(tweets) FROM classifications_hourly) AS rollup,"
                     " (SELECT count() FROM tweets FINAL) AS tweets,"
                     " (SELECT count() FROM dead_letters FINAL) AS dead_letters", env=env)
    assert result.returncode == 0, result.stderr
    return {k: int(v or 0) for k, v in json.loads(result.stdout)[0].items()}


def _run_to_the_end(env: dict[str, str], feed: Path, timeout: float) -> None:
    """`run --feed FEED --exit-when-done` again, as a user resumes an interrupted feed: it must finish cleanly."""
    resumed = run_cli("run", "--feed", str(feed), "--exit-when-done", env=env, timeout=timeout)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr


def _record_exactly_once(env: dict[str, str], fault: str, how: str, valid: int, invalid: int, happened: str) -> None:
    """Record what the store says now (read by itself, the stack stopped) for the reliability table, then check the
    promise: every valid line classified, rolled up and stored exactly once, every invalid one dead-lettered once."""
    counts = _counts(env)
    record(fault, how, valid + invalid, valid, invalid, counts, happened)
    assert counts | {"rows_written": 0} == {"classified": valid, "rollup": valid, "tweets": valid,
                                            "dead_letters": invalid, "rows_written": 0}


def _await(env: dict[str, str], proc: subprocess.Popen, done, timeout: float = 180) -> dict[str, int]:
    """Poll the counts until ``done(counts)``; fail if ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        if _serving(env, proc):
            counts = _counts(env)
            if done(counts):
                return counts
        time.sleep(0.5)
    proc.kill()
    broker_log = Path(env["STANCESTREAM_DATA_DIR"]) / "broker.log"  # the embedded broker's side of a stall
    tail = broker_log.read_text(errors="replace")[-2000:] if broker_log.exists() else "(none)"
    raise AssertionError(f"timed out; last counts {counts}; its output:\n{proc.communicate()[0][-3000:]}\n"
                         f"broker.log:\n{tail}")


def _serving(env: dict[str, str], proc: subprocess.Popen) -> bool:
    """Whether ``proc`` itself serves the gateway: a killed one leaves its gateway.json behind, and opening the
    store then would take the lock the starting process needs."""
    try:
        return json.loads((Path(env["STANCESTREAM_DATA_DIR"]) / "gateway.json").read_text())["pid"] == proc.pid
    except (OSError, ValueError, KeyError):
        return False


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def _kill_9_run_once(env: dict[str, str], args: list[str], classified: int) -> list[int]:
    """Start `run ARGS`, kill -9 it once ``classified`` tweets are stored; return its child processes, after
    checking they died with it (no orphaned broker)."""
    with spawn_cli("run", *args, env=env) as proc:
        _await(env, proc, lambda c: c["classified"] >= classified)
        helpers = _children(proc.pid)
        stop(proc, signal.SIGKILL, timeout=30)
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in helpers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert helpers and not any(_alive(pid) for pid in helpers), "a child of `run` outlived it (orphaned)"
    return helpers


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_kill_9_of_the_worker_at_every_point_loses_and_double_counts_nothing(tmp_path, tiny_model_dir, broker):
    """1,000 tweets and 20 bad lines; the worker is killed -9 before an insert, between insert and commit,
    while publishing and before acking, restarting each time; then it finishes."""
    from shared.streaming.feed import FeedReport, produce_feed, read_feed
    from shared.settings import Settings
    from shared.streaming.topics import Topics, ensure_topics, physical
    from streams import read_topic

    tag = uuid.uuid4().hex[:8]
    env = _env(tmp_path, tiny_model_dir, KAFKA_BOOTSTRAP=broker.bootstrap, STANCESTREAM_TOPIC_PREFIX=f"k{tag}.",
               STANCESTREAM_WORKER_GROUP=f"k{tag}", STANCESTREAM_PARTITIONS="2")
    settings = Settings(kafka_bootstrap=broker.bootstrap, topic_prefix=f"k{tag}.", partitions=2)
    feed = _write_feed(tmp_path / "feed.jsonl", 1000, 20)
    asyncio.run(ensure_topics(settings))
    report = asyncio.run(produce_feed(broker.bootstrap, physical(Topics.raw, settings), read_feed(str(feed)),
                                      FeedReport()))
    assert report.sent == 1020

    for point in POINTS:  # the 3rd time through the point, so some batches were already committed
        with spawn_cli("worker", env=env | {"STANCESTREAM_FAULT_KILL": f"{point}:3"}) as proc:
            out, _ = proc.communicate(timeout=180)
        assert proc.returncode == -signal.SIGKILL, f"{point}: worker was not killed there:\n{out}"

    with spawn_cli("worker", env=env) as proc:
        _await(env, proc, lambda c: c["classified"] >= 1000 and c["dead_letters"] >= 20)
        stop(proc, signal.SIGTERM, timeout=60)
    # Background merges hide replaced rows in the table; the output topic keeps every redelivered result.
    published = len(asyncio.run(read_topic(settings, Topics.classified, 10**6, timeout=8)))
    _record_exactly_once(env, "worker killed -9 at each of " + ", ".join(POINTS),
                         "STANCESTREAM_FAULT_KILL=<point>:3, four restarts of `stancestream worker`", 1000, 20,
                         f"each restart re-read the uncommitted batches: {published} results published for 1000 "
                         "tweets")
    assert published > 1000, "no batch was redelivered: the kills did not exercise anything"


def test_run_survives_kill_9_and_a_second_run_of_the_same_feed_completes_it_exactly_once(tmp_path, tiny_model_dir):
    env = _env(tmp_path, tiny_model_dir)
    feed = _write_feed(tmp_path / "feed.jsonl", 600, 12)
    helpers = _kill_9_run_once(env, ["--feed", str(feed), "--rate", "60"], classified=50)
    assert len(helpers) == 1, "run should have started exactly one broker process"
    partial = _counts(env)
    assert 50 <= partial["classified"] < 600

    _run_to_the_end(env, feed, timeout=300)
    _record_exactly_once(env, "`run` killed -9 mid-feed, then the same `run --feed` again",
                         "kill -9 of the run process after >= 50 classified; its broker died with it", 600, 12,
                         f"broker gone with run (no orphan); {partial['classified']} were stored before the kill, "
                         "the second run skipped them and fed the rest")


def test_ctrl_c_drains_what_was_fed_and_a_second_ctrl_c_says_what_is_left(tmp_path, tiny_model_dir):
    env = _env(tmp_path, tiny_model_dir, STANCESTREAM_BATCH_SIZE="4")  # slow enough to build a backlog
    feed = _write_feed(tmp_path / "feed.jsonl", 1500, 0)

    # One Ctrl-C: feeding stops, everything fed is processed, exit 0.
    with spawn_cli("run", "--feed", str(feed), "--rate", "100", env=env) as proc:
        _await(env, proc, lambda c: c["classified"] >= 20)
        out = stop(proc, signal.SIGINT, timeout=240)
    assert proc.returncode == 0, out
    fed = int(out.rsplit("final summary — fed ", 1)[1].split()[0])
    counts = _counts(env)
    record("Ctrl-C while the worker lags", "SIGINT once to `run --feed` (1,500 lines at 100/s)", fed, fed, 0,
           counts, "feeding stopped, the backlog drained, exit 0 with the summary and the resume command")
    assert counts["classified"] == counts["tweets"] == counts["rollup"] == fed, out
    assert "resume with: stancestream run --feed" in out

    # Two Ctrl-C: exit at once, saying how many fed tweets were left unprocessed and how to resume.
    with spawn_cli("run", "--feed", str(feed), env=env) as proc:
        _await(env, proc, lambda c: c["classified"] >= fed + 20)
        out = stop(proc, signal.SIGINT, signal.SIGINT, timeout=60)  # the second 0.5 s after the first
    assert proc.returncode == 130, out
    assert "not processed" in out and "resume with: stancestream run --feed" in out

    left = out.split("interrupted", 1)[1].split("not processed", 1)[0]
    _run_to_the_end(env, feed, timeout=600)
    _record_exactly_once(env, "Ctrl-C twice, then `run --feed` the same file",
                         "SIGINT, SIGINT 0.5 s later, then a third run", 1500, 0,
                         f"exit 130 at once, reporting{left.rstrip(' (')} not processed; the third run resumed "
                         "and completed the file")


@pytest.mark.parametrize("command", ["worker", "run"])
def test_a_store_outage_longer_than_the_retries(tmp_path, tiny_model_dir, broker, command):
    """The classifications table disappears (renamed away) for longer than the worker's retries last: the
    production worker stops uncommitted and a restart finishes; `run` keeps retrying and finishes itself."""
    tag = uuid.uuid4().hex[:8]
    env = _env(tmp_path, tiny_model_dir, STANCESTREAM_SINK_RETRIES="1")
    if command == "worker":
        env |= {"KAFKA_BOOTSTRAP": broker.bootstrap, "STANCESTREAM_TOPIC_PREFIX": f"o{tag}.",
                "STANCESTREAM_WORKER_GROUP": f"o{tag}", "STANCESTREAM_PARTITIONS": "2"}
    feed = _write_feed(tmp_path / "feed.jsonl", 200, 4)
    args = ["run", "--feed", str(feed), "--rate", "40", "--exit-when-done"] if command == "run" else ["worker"]
    with spawn_cli(*args, env=env) as proc:
        if command == "worker":
            from shared.streaming.feed import FeedReport, produce_feed, read_feed

            _await(env, proc, lambda c: True)  # up: its gateway answers
            records = list(read_feed(str(feed)))
            asyncio.run(produce_feed(broker.bootstrap, f"o{tag}.tweets.raw", iter(records[:50]), FeedReport()))
        _await(env, proc, lambda c: c["classified"] >= 10)
        away = run_cli("sql", "--write", "RENAME TABLE classifications TO classifications_away", env=env)
        assert away.returncode == 0, away.stderr
        if command == "worker":
            asyncio.run(produce_feed(broker.bootstrap, f"o{tag}.tweets.raw", iter(records[50:]), FeedReport()))
            out, _ = proc.communicate(timeout=120)  # 1 retry: it gives up within seconds
            assert proc.returncode == 1, out
        else:
            time.sleep(8)  # several retries' worth: `run` must still be there
            assert proc.poll() is None, proc.stdout.read()
        back = run_cli("sql", "--write", "RENAME TABLE classifications_away TO classifications", env=env)
        assert back.returncode == 0, back.stderr
        if command == "run":
            out, _ = proc.communicate(timeout=240)
            assert proc.returncode == 0, out
            assert "failing, retrying: ClickHouse write" in out
    if command == "worker":  # a restart finishes what the stopped one left uncommitted
        with spawn_cli("worker", env=env) as proc:
            _await(env, proc, lambda c: c["classified"] >= 200 and c["dead_letters"] >= 4)
            stop(proc, signal.SIGTERM, timeout=60)
    _record_exactly_once(env, f"ClickHouse outage longer than the retries, under `{command}`",
                         "classifications renamed away via `sql --write`, renamed back later; "
                         "STANCESTREAM_SINK_RETRIES=1", 200, 4,
                         "worker stopped uncommitted (exit 1); the restart finished" if command == "worker"
                         else "run kept retrying and showed the error, then finished by itself")


def test_durable_broker_storage_survives_kill_9_of_the_whole_stack(tmp_path, tiny_model_dir):
    """With STANCESTREAM_BROKER_STORAGE=durable, what the broker acknowledged outlives a kill -9 of `run`: a plain
    `run` afterwards (no feed) processes the rest, from the committed offsets it also kept."""
    # The whole feed must be in the broker before the kill, and most of it not yet stored: small batches, never
    # merged (merged takes let the tiny model store all 600 before a poll saw 20, once in CI).
    env = _env(tmp_path, tiny_model_dir, STANCESTREAM_BROKER_STORAGE="durable", STANCESTREAM_BATCH_SIZE="4",
               STANCESTREAM_MAX_BATCH_SIZE="4")
    feed = _write_feed(tmp_path / "feed.jsonl", 600, 12)
    helpers = _kill_9_run_once(env, ["--feed", str(feed)], classified=20)
    assert len(helpers) == 2, "durable storage runs the broker and its object store"
    partial = _counts(env)
    assert partial["classified"] < 600, "the feed was done before the kill: nothing left to prove"

    with spawn_cli("run", env=env) as proc:  # no feed: only what the durable broker kept
        _await(env, proc, lambda c: c["classified"] >= 600 and c["dead_letters"] >= 12)
        out = stop(proc, signal.SIGINT, timeout=120)
    assert proc.returncode == 0, out
    _record_exactly_once(env, "kill -9 of `run` with durable broker storage",
                         "STANCESTREAM_BROKER_STORAGE=durable; kill -9 of run after >= 20 classified; then `run` "
                         "without a feed", 600, 12,
                         f"broker and object store died with run; {partial['classified']} were stored before the "
                         "kill, the rest came back from the broker's disk")
