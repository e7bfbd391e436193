"""The container stack: docker-compose.yml must be valid for Debian's docker-compose 1.29 and wire the worker up."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def env(service: str) -> dict[str, str]:
    raw = SERVICES[service].get("environment") or {}
    if isinstance(raw, list):  # the `- KEY=value` form
        raw = dict(item.partition("=")[::2] for item in raw)
    return {key: str(value) for key, value in raw.items()}


def volume_targets(service: str) -> set[str]:
    return {volume.split(":")[1] for volume in SERVICES[service].get("volumes", [])}


def test_docker_compose_config_accepts_the_file():
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.fail("docker-compose is not installed: run `make setup` (apt package docker-compose)")
    result = subprocess.run(
        [exe, "-f", "docker-compose.yml", "config"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


def test_services_exist():
    assert {"kafka", "clickhouse", "worker", "trainer"} <= SERVICES.keys()


def test_trainer_and_workers_share_the_adapter_registry_and_the_broker():
    assert SERVICES["trainer"]["command"] == ["trainer"]
    for service in ("worker", "trainer"):
        assert env(service)["STANCESTREAM_REGISTRY_DIR"] in volume_targets(service)
        assert env(service)["KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert env("worker")["CLICKHOUSE_URL"] == env("trainer")["CLICKHOUSE_URL"]
    from croniter import croniter

    assert croniter.is_valid(env("trainer")["STANCESTREAM_TRAINER_CRON"])


def test_kafka_is_single_node_kraft_with_data_on_its_volume():
    kafka = env("kafka")
    assert "controller" in kafka["KAFKA_PROCESS_ROLES"].split(",")
    assert "KAFKA_ZOOKEEPER_CONNECT" not in kafka
    # without KAFKA_LOG_DIRS the image writes to /tmp/kraft-combined-logs, off the volume
    assert kafka["KAFKA_LOG_DIRS"] in volume_targets("kafka")


def test_worker_reaches_kafka_and_clickhouse_by_service_name():
    worker = env("worker")
    assert worker["KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert "PLAINTEXT://kafka:9092" in env("kafka")["KAFKA_ADVERTISED_LISTENERS"].split(",")

    url = urlsplit(worker["CLICKHOUSE_URL"])
    clickhouse = env("clickhouse")
    assert (url.scheme, url.hostname, url.port) == ("http", "clickhouse", 8123)
    assert (url.username, url.password) == (clickhouse["CLICKHOUSE_USER"], clickhouse["CLICKHOUSE_PASSWORD"])
    assert worker["STANCESTREAM_CACHE_DIR"] in volume_targets("worker")


def test_worker_waits_for_healthy_dependencies():
    depends_on = SERVICES["worker"]["depends_on"]
    for name in ("kafka", "clickhouse"):
        assert depends_on[name]["condition"] == "service_healthy"
        assert "test" in SERVICES[name]["healthcheck"], f"{name} needs a healthcheck to ever become healthy"


def test_image_entrypoint_is_the_cli():
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    entrypoints = [json.loads(line.split(None, 1)[1]) for line in lines if line.startswith("ENTRYPOINT")]
    assert entrypoints[-1:] == [["stancestream"]]
    assert SERVICES["worker"]["command"] == ["worker"]
