"""Prometheus of the compose stack: deploy/prometheus/prometheus.yml and alerts.yml pass `promtool` (Debian's
`prometheus` package, installed by `make setup`), the alert rules' own unit tests (alerts.test.yml) pass, and every
metric that an alert or a Grafana panel names is one a running worker really exports, with the labels it is
filtered or grouped by: checked against a live /metrics scrape, which also shows the consumer-lag gauge counting
what the worker has fetched but not committed (the drift alert against a trainer's, after a drift check)."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import threading
import urllib.request
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
CONFIG = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
RULES = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
RULE_TESTS = yaml.safe_load((PROMETHEUS / "alerts.test.yml").read_text())
DASHBOARD = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "stancestream.json").read_text())

ALERTS = {rule["alert"]: rule["expr"] for group in RULES["groups"] for rule in group["rules"] if "alert" in rule}
#: Alerts on what only the trainer service's drift check exports (the stack's embedded trainer does not run it),
#: checked against a trainer's metrics after a check instead of a worker's.
DRIFT_ALERTS = {"StanceDrift"}
PANEL_EXPRS = {f"{panel['title']} {target['refId']}": target["expr"] for panel in DASHBOARD["panels"]
               for target in panel.get("targets", []) if (target.get("datasource") or {}).get("type") == "prometheus"}


def promtool(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail("promtool is not installed: run `make setup` (apt package prometheus)")
    return subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_promtool_accepts_the_config_and_finds_its_rules():
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout  # alerts.yml is found beside it, as in the container


def test_promtool_accepts_the_rules():
    result = promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(ALERTS)} rules found" in result.stdout


def test_alert_rules_unit_tests_pass():
    result = promtool("test", "rules", "alerts.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_shown_firing_and_some_alert_quiet_in_the_rule_tests():
    cases = [case for test in RULE_TESTS["tests"] for case in test["alert_rule_test"]]
    assert {c["alertname"] for c in cases if c["exp_alerts"]} == set(ALERTS)
    assert any(not c["exp_alerts"] for c in cases)


def test_promtool_refuses_a_broken_rule_and_a_failing_rule_test(tmp_path):
    """The checks above can fail: a rule with a typo'd function, and a rule test expecting what does not happen."""
    typo = {"alert": "X", "expr": "rate_of(stancestream_tweets_total[5m]) > 0"}  # no such function
    broken = {"groups": [{"name": "g", "rules": [typo]}]}
    (tmp_path / "broken.yml").write_text(yaml.safe_dump(broken))
    assert promtool("check", "rules", "broken.yml", cwd=tmp_path).returncode != 0
    shutil.copy(PROMETHEUS / "alerts.yml", tmp_path / "alerts.yml")
    wrong = yaml.safe_load((PROMETHEUS / "alerts.test.yml").read_text())
    quiet = next(c for t in wrong["tests"] for c in t["alert_rule_test"] if c["alertname"] == "TrainingRejected")
    quiet["exp_alerts"] = [{"exp_labels": {"severity": "info"}}]  # it does not fire: the test must say so
    (tmp_path / "wrong.test.yml").write_text(yaml.safe_dump(wrong))
    assert promtool("test", "rules", "wrong.test.yml", cwd=tmp_path).returncode != 0


def test_grafana_prometheus_panels_are_valid_promql(tmp_path):
    """promtool checks the panels' expressions as recording rules ($__rate_interval is Grafana's: 4 scrapes)."""
    assert PANEL_EXPRS
    rules = [{"record": f"panel:{i}", "expr": expr.replace("$__rate_interval", "1m")}
             for i, expr in enumerate(PANEL_EXPRS.values())]
    (tmp_path / "panels.yml").write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    result = promtool("check", "rules", "panels.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_on_targets_name_the_scrape_jobs():
    jobs = {job["job_name"] for job in CONFIG["scrape_configs"]}
    for name, expr in ALERTS.items():
        for pattern in re.findall(r'job=~"([^"]*)"', expr):
            assert {j for j in jobs if re.fullmatch(pattern, j)} == {"stancestream-worker", "stancestream-trainer"}


# --- against a running worker -----------------------------------------------------------------------------------

SELECTOR = re.compile(r"\b(stancestream_\w+)(?:\{([^}]*)\})?")
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')


def _scrape(address: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Sample name -> (labels, value) of each of its samples."""
    text = urllib.request.urlopen(address, timeout=10).read().decode()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def _lag(samples, topic: str, partition: int) -> float | None:
    return next((value for labels, value in samples.get("stancestream_consumer_lag", [])
                 if labels == {"topic": topic, "partition": str(partition)}), None)


async def _wait_for_lag(address: str, topic: str, expected: float, timeout: float = 60):
    """Scrape until the lag of ``topic`` partition 0 is ``expected``; that scrape's samples."""
    deadline = asyncio.get_running_loop().time() + timeout
    seen = None
    while asyncio.get_running_loop().time() < deadline:
        samples = await asyncio.to_thread(_scrape, address)
        seen = _lag(samples, topic, 0)
        if seen == expected:
            return samples
        await asyncio.sleep(0.5)
    raise AssertionError(f"consumer lag of {topic}/0 is {seen}, expected {expected} within {timeout}s")


def _exported_problems(exprs: dict[str, str], samples: dict[str, list[tuple[dict[str, str], float]]]) -> list[str]:
    """What an expression asks of a metric that the scrape does not have: the name, a label value it is filtered
    on, a label it is grouped by."""
    problems = []
    for where, expr in exprs.items():
        grouping = {label.strip() for labels in re.findall(r"\bby\s*\(([^)]*)\)", expr) for label in labels.split(",")}
        names = SELECTOR.findall(expr)
        if not names and not re.match(r"up\{", expr):  # Prometheus' own `up` aside
            problems.append(f"{where}: names no stancestream metric")
        for name, matchers in names:
            if name not in samples:
                problems.append(f"{where}: {name} is not exported")
                continue
            label_sets = [labels for labels, _ in samples[name]]
            for label, op, value in MATCHER.findall(matchers):
                if op == "=" and not any(s.get(label) == value for s in label_sets):
                    problems.append(f'{where}: no {name}{{{label}="{value}"}} is exported')
            for label in grouping - {""}:
                if not all(label in s for s in label_sets):
                    problems.append(f"{where}: {name} has no label {label!r} to group by")
    return problems


@pytest.mark.kafka
@pytest.mark.clickhouse
@pytest.mark.model
def test_alerts_and_panels_name_what_a_running_worker_exports(broker, clean_store, store_dir, tiny_classifier,
                                                              monkeypatch):
    from services.stack.stack import Stack
    from shared.store.sinks import ClickHouseSink
    from shared.streaming.feed import FeedReport, produce_feed
    from shared.streaming.feed_files import FeedRecord
    from shared.streaming.topics import Topics, physical
    from streams import stream_settings, tweets, wait_committed

    settings = stream_settings(broker, store_dir, partitions=1)
    # Writes wait for the test: meanwhile the worker has fetched every message and committed none of them.
    release = threading.Event()
    real_write = ClickHouseSink.write

    def held_write(self, *args):
        assert release.wait(timeout=120), "the test never released the write"
        return real_write(self, *args)

    monkeypatch.setattr(ClickHouseSink, "write", held_write)
    records = tweets(20, "m") + [FeedRecord(None, b"not json"), FeedRecord(None, b"[1, 2]")]
    raw, labels = Topics.raw.value, Topics.labels.value

    async def scenario():
        stack = await Stack(settings, classifier=tiny_classifier).start()
        try:
            report = await produce_feed(settings.kafka_bootstrap, physical(Topics.raw, settings), iter(records),
                                        FeedReport())
            assert report.end_offsets == {0: 22}
            # fetched up to the partition's highwater, 22, and nothing committed: 22 behind
            await _wait_for_lag(stack.telemetry.address, raw, 22)
            release.set()
            await wait_committed(stack, report, timeout=120)  # generous: this machine also runs benchmarks
            return await _wait_for_lag(stack.telemetry.address, raw, 0), stack.stats  # all committed
        finally:
            release.set()
            await stack.stop()

    samples, stats = asyncio.run(scenario())
    assert stats.tweets == 20 and stats.dead_letters == 2
    # partitions of the worker's own topics, under their logical names (the test's topics have a prefix); not
    # Faust's leader topic
    assert {(s["topic"], s["partition"]) for s, _ in samples["stancestream_consumer_lag"]} <= {(raw, "0"),
                                                                                                (labels, "0")}
    problems = _exported_problems({k: v for k, v in ALERTS.items() if k not in DRIFT_ALERTS} | PANEL_EXPRS, samples)
    assert not problems, "\n".join(problems)
    # and the check itself fails on a metric nobody exports or a label value that never occurs
    assert _exported_problems({"typo": "rate(stancestream_tweet_total[5m])",
                               "label": 'stancestream_training_runs_total{decision="faild"}',
                               "grouping": "sum by (lang) (stancestream_tweets_total)"}, samples) == [
        "typo: stancestream_tweet_total is not exported",
        'label: no stancestream_training_runs_total{decision="faild"} is exported',
        "grouping: stancestream_tweets_total has no label 'lang' to group by"]


def test_the_drift_alert_names_what_the_trainer_exports_after_a_drift_check():
    from shared.quantification.drift import DriftMonitor, WindowStats
    from shared.settings import Settings
    from shared.streaming.telemetry import Telemetry

    confident = (0,) * 8 + (100, 0)  # every tweet's highest probability in [0.85, 0.925)
    reference = {"tr": WindowStats((25, 25, 25, 25), confident, 0), "de": WindowStats((25, 25, 25, 25), confident, 0)}
    window = {"tr": WindowStats((70, 10, 10, 10), confident, 0), "de": WindowStats((25, 25, 25, 25), confident, 0)}
    result = DriftMonitor().evaluate(reference, window, {"tr", "de"})
    telemetry = Telemetry().serve(Settings(metrics_port=0))
    try:
        telemetry.drift(result.rows)
        samples = _scrape(telemetry.address)
    finally:
        telemetry.stop()
    assert DRIFT_ALERTS <= set(ALERTS)
    problems = _exported_problems({name: ALERTS[name] for name in DRIFT_ALERTS}, samples)
    assert not problems, "\n".join(problems)
    alarms = {(labels["lang"], labels["measure"]): value for labels, value in samples["stancestream_drift_alarm"]}
    assert alarms[("tr", "label_psi")] == 1 and alarms[("de", "label_psi")] == 0
    assert alarms[("all", "unseen_language_share")] == 0
    # and the check fails on a trainer that has not published a check yet
    idle = Telemetry().serve(Settings(metrics_port=0))
    try:
        assert _exported_problems({"StanceDrift": ALERTS["StanceDrift"]}, _scrape(idle.address))
    finally:
        idle.stop()

