"""The container stack: docker-compose.yml must be valid for Debian's docker-compose 1.29, wire the worker up, and
carry no default secret: each ClickHouse user has its own required password and only the rights it needs."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
SERVICES = COMPOSE["services"]
INIT_SCRIPT = ROOT / "deploy" / "clickhouse" / "initdb" / "10-stancestream-users.sh"
# One distinct value per variable, so a test can tell which password ended up where.
PASSWORDS = {"CLICKHOUSE_ADMIN_PASSWORD": "adm1n", "CLICKHOUSE_MIGRATOR_PASSWORD": "m1grator",
             "CLICKHOUSE_WRITER_PASSWORD": "wr1ter", "CLICKHOUSE_ANALYST_PASSWORD": "ana1yst"}


def compose_config(env: dict[str, str]) -> subprocess.CompletedProcess:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.fail("docker-compose is not installed: run `make setup` (apt package docker-compose)")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CLICKHOUSE_", "STANCESTREAM_"))}
    return subprocess.run([exe, "-f", "docker-compose.yml", "config"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env=clean | env)


@pytest.fixture(scope="module")
def rendered() -> dict:
    """The configuration docker-compose renders with every password set."""
    result = compose_config(PASSWORDS)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["services"]


def env(service: str, services: dict = SERVICES) -> dict[str, str]:
    raw = services[service].get("environment") or {}
    if isinstance(raw, list):  # the `- KEY=value` form
        raw = dict(item.partition("=")[::2] for item in raw)
    return {key: str(value) for key, value in raw.items()}


def volume_targets(service: str) -> set[str]:
    return {volume.split(":")[1] for volume in SERVICES[service].get("volumes", [])}


def test_docker_compose_config_accepts_the_file(rendered):
    assert {"kafka", "clickhouse", "migrate", "worker", "trainer"} <= rendered.keys()


@pytest.mark.parametrize("missing", sorted(PASSWORDS))
def test_config_stops_with_a_clear_message_when_a_password_is_unset(missing):
    result = compose_config({k: v for k, v in PASSWORDS.items() if k != missing})
    assert result.returncode != 0
    assert f"set {missing}" in result.stderr  # the message names the variable to set
    empty = compose_config(PASSWORDS | {missing: ""})  # `:?` also refuses an empty value
    assert empty.returncode != 0 and f"set {missing}" in empty.stderr


def test_no_service_has_a_default_or_literal_password():
    for name, spec in SERVICES.items():
        for key, value in env(name).items():
            for variable in re.findall(r"\$\{([^}]*)\}", value):
                if "PASSWORD" in variable or "SECRET" in variable:
                    assert re.fullmatch(r"\w+:\?.+", variable), f"{name}.{key} has a default: ${{{variable}}}"
            if "PASSWORD" in key or "SECRET" in key:
                assert value.startswith("${") and value.endswith("}"), f"{name}.{key} is a literal"
            if key.endswith("_URL") and "@" in value:
                assert re.search(r"://\w+:\$\{\w+:\?[^}]+\}@", value), f"{name}.{key} carries a literal password"
    assert ":-" not in re.sub(r"#.*", "", COMPOSE_TEXT)  # no ${VAR:-default} anywhere


def test_each_user_gets_its_own_password(rendered):
    clickhouse = env("clickhouse", rendered)
    assert clickhouse["CLICKHOUSE_USER"] == "stancestream_admin"
    assert clickhouse["CLICKHOUSE_PASSWORD"] == PASSWORDS["CLICKHOUSE_ADMIN_PASSWORD"]
    assert clickhouse["STANCESTREAM_MIGRATOR_PASSWORD"] == PASSWORDS["CLICKHOUSE_MIGRATOR_PASSWORD"]
    assert clickhouse["STANCESTREAM_WRITER_PASSWORD"] == PASSWORDS["CLICKHOUSE_WRITER_PASSWORD"]
    assert clickhouse["STANCESTREAM_ANALYST_PASSWORD"] == PASSWORDS["CLICKHOUSE_ANALYST_PASSWORD"]
    users = {}
    for service in ("migrate", "worker", "trainer"):
        url = urlsplit(env(service, rendered)["CLICKHOUSE_URL"])
        assert (url.scheme, url.hostname, url.port, url.path) == ("http", "clickhouse", 8123, "/stancestream")
        users[service] = (url.username, url.password)
    assert users == {"migrate": ("stancestream_migrator", "m1grator"), "worker": ("stancestream_writer", "wr1ter"),
                     "trainer": ("stancestream_writer", "wr1ter")}
    # the admin's password reaches no application container
    for service in ("migrate", "worker", "trainer"):
        assert "adm1n" not in json.dumps(rendered[service])


def test_migrations_run_once_before_workers_and_trainer(rendered):
    assert rendered["migrate"]["command"] == ["migrate"]
    assert rendered["migrate"]["restart"] == "no"
    assert rendered["migrate"]["depends_on"]["clickhouse"]["condition"] == "service_healthy"
    for service in ("worker", "trainer"):
        assert rendered[service]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_published_ports_are_on_loopback_only():
    for name, spec in SERVICES.items():
        for port in spec.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond this machine"


def _init_sql(tmp_path: Path, environment: dict[str, str]) -> tuple[subprocess.CompletedProcess, str]:
    """Run the init script with a stand-in `clickhouse` that records the SQL it is given."""
    stub = tmp_path / "bin" / "clickhouse"
    stub.parent.mkdir()
    stub.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/args\ncat > {tmp_path}/sql\n')
    stub.chmod(0o755)
    result = subprocess.run(["bash", str(INIT_SCRIPT)], capture_output=True, text=True, timeout=60,
                            env={"PATH": f"{stub.parent}:{os.environ['PATH']}"} | environment)
    sql_file = tmp_path / "sql"
    return result, sql_file.read_text() if sql_file.exists() else ""


INIT_ENV = {"CLICKHOUSE_USER": "stancestream_admin", "CLICKHOUSE_PASSWORD": "adm1n",
            "STANCESTREAM_MIGRATOR_PASSWORD": "m1grator", "STANCESTREAM_WRITER_PASSWORD": "wr1ter",
            "STANCESTREAM_ANALYST_PASSWORD": "it's \"quoted\"; DROP USER x"}


def test_clickhouse_runs_the_init_script():
    mounts = SERVICES["clickhouse"]["volumes"]
    assert "./deploy/clickhouse/initdb:/docker-entrypoint-initdb.d:ro" in mounts
    assert os.access(INIT_SCRIPT, os.X_OK)  # the image executes (not sources) an executable script


@pytest.mark.clickhouse
def test_init_script_grants_least_privilege(tmp_path, store):
    result, sql = _init_sql(tmp_path, INIT_ENV)
    assert result.returncode == 0, result.stderr
    statements = [s.strip() for s in sql.split(";") if s.strip()]
    grants = {s.split(" TO ")[1]: s for s in statements if s.startswith("GRANT")}
    assert grants["stancestream_writer"] == "GRANT SELECT, INSERT ON stancestream.* TO stancestream_writer"
    assert grants["stancestream_analyst"] == "GRANT SELECT ON stancestream.* TO stancestream_analyst"
    assert "ON stancestream.*" in grants["stancestream_migrator"] and "CREATE TABLE" in grants["stancestream_migrator"]
    assert not re.search(r"ON \*\.\* TO|ACCESS MANAGEMENT|\b(FILE|URL|SOURCES|SYSTEM)\b", sql)
    assert "SETTINGS PROFILE 'stancestream_readonly'" in sql and "readonly = 1" in sql
    for password in ("m1grator", "wr1ter", "DROP USER x"):  # only hashes reach SQL
        assert password not in sql
    for user in ("migrator", "writer", "analyst"):
        digest = hashlib.sha256(INIT_ENV[f"STANCESTREAM_{user.upper()}_PASSWORD"].encode()).hexdigest()
        assert f"stancestream_{user} IDENTIFIED WITH sha256_hash BY '{digest}'" in sql
    for statement in statements:  # ClickHouse's own parser accepts every statement
        assert store.query("SELECT formatQuerySingleLine({s:String})", {"s": statement}).scalar()


def test_init_script_refuses_a_missing_password(tmp_path):
    result, sql = _init_sql(tmp_path, {k: v for k, v in INIT_ENV.items() if k != "STANCESTREAM_WRITER_PASSWORD"})
    assert result.returncode != 0 and "set STANCESTREAM_WRITER_PASSWORD" in result.stderr
    assert sql == ""


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


def test_worker_reaches_kafka_and_clickhouse_by_service_name(rendered):
    worker = env("worker", rendered)
    assert worker["KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert "PLAINTEXT://kafka:9092" in env("kafka")["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert urlsplit(worker["CLICKHOUSE_URL"]).hostname == "clickhouse"
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
