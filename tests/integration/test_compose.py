"""The container stack: docker-compose.yml must be valid for Debian's docker-compose 1.29, wire the worker up, and
carry no default secret: each ClickHouse user has its own required password and only the rights it needs. The
production shape: topics created by a one-shot service, a healthcheck on every long-running service, Prometheus
scraping every worker replica, and Grafana (provisioned, the only published port) on loopback by default."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
SERVICES = COMPOSE["services"]
INIT_SCRIPT = ROOT / "deploy" / "clickhouse" / "initdb" / "10-stancestream-users.sh"
GRAFANA = ROOT / "deploy" / "grafana"
PROMETHEUS_CONFIG = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
# One distinct value per variable, so a test can tell which password ended up where.
PASSWORDS = {"CLICKHOUSE_ADMIN_PASSWORD": "adm1n", "CLICKHOUSE_MIGRATOR_PASSWORD": "m1grator",
             "CLICKHOUSE_WRITER_PASSWORD": "wr1ter", "CLICKHOUSE_ANALYST_PASSWORD": "ana1yst",
             "GRAFANA_ADMIN_PASSWORD": "gr4fana"}
#: Variables that have a default in docker-compose.yml (${VAR:-default}): the tests render it without whatever the
#: caller's environment sets for them.
DEFAULTED = tuple(sorted(set(re.findall(r"\$\{(\w+):?-", re.sub(r"#.*", "", COMPOSE_TEXT)))))


def compose_config(env: dict[str, str]) -> subprocess.CompletedProcess:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.fail("docker-compose is not installed: run `make setup` (apt package docker-compose)")
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("CLICKHOUSE_", "STANCESTREAM_", "GRAFANA_")) and k not in DEFAULTED}
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
    assert {"kafka", "clickhouse", "migrate", "topic-init", "worker", "trainer", "prometheus", "grafana"} <= \
        rendered.keys()


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
    # Defaults only for what is no secret: ${VAR:-default} never names a password, a secret or a URL (which
    # carries one).
    assert {"STANCESTREAM_PARTITIONS", "TWEETS_RETENTION_MS", "GRAFANA_BIND"} <= set(DEFAULTED)
    assert not [v for v in DEFAULTED if re.search("PASSWORD|SECRET|URL|TOKEN|KEY", v)]


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
    for service in ("migrate", "worker", "trainer", "grafana"):
        assert "adm1n" not in json.dumps(rendered[service])
    # Grafana gets its admin password and, of the ClickHouse ones, the read-only analyst's only; no other service
    # sees Grafana's
    grafana = env("grafana", rendered)
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"] == "gr4fana"
    assert grafana["CLICKHOUSE_ANALYST_PASSWORD"] == "ana1yst"
    assert not {"m1grator", "wr1ter"} & set(grafana.values())
    assert [name for name in rendered if "gr4fana" in json.dumps(rendered[name])] == ["grafana"]


def test_migrations_run_once_before_workers_and_trainer(rendered):
    assert rendered["migrate"]["command"] == ["migrate"]
    assert rendered["migrate"]["restart"] == "no"
    assert rendered["migrate"]["depends_on"]["clickhouse"]["condition"] == "service_healthy"
    for service in ("worker", "trainer"):
        assert rendered[service]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def _published(services: dict) -> dict[str, list[tuple[str, int, int]]]:
    """(host ip, published port, container port) of each service that publishes any, from rendered config: the
    short form of docker-compose 1.29 ("127.0.0.1:3000:3000/tcp") or the long form of Compose v2."""
    published = {}
    for name, spec in services.items():
        for port in spec.get("ports", []):
            if isinstance(port, dict):
                entry = (port.get("host_ip", ""), int(port["published"]), int(port["target"]))
            else:
                parts = str(port).split("/")[0].split(":")  # [host ip:]published:target
                entry = (parts[0] if len(parts) == 3 else "", int(parts[-2]), int(parts[-1]))
            published.setdefault(name, []).append(entry)
    return published


def test_only_grafana_is_published_and_on_loopback_by_default(rendered):
    assert _published(rendered) == {"grafana": [("127.0.0.1", 3000, 3000)]}
    # ClickHouse, Kafka and Prometheus are reached on the compose network only
    assert not SERVICES["clickhouse"].get("ports") and not SERVICES["prometheus"].get("ports")


def test_grafana_bind_publishes_it_elsewhere_only_when_asked():
    result = compose_config(PASSWORDS | {"GRAFANA_BIND": "192.0.2.7"})
    assert result.returncode == 0, result.stderr
    assert _published(yaml.safe_load(result.stdout)["services"]) == {"grafana": [("192.0.2.7", 3000, 3000)]}


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
    # readonly = 1 still, but the Grafana plugin's client may set its query timeout (it sends one with every
    # query), within bounds, and nothing else
    profile = next(s for s in statements if s.startswith("ALTER SETTINGS PROFILE stancestream_readonly"))
    assert re.fullmatch(r"ALTER SETTINGS PROFILE stancestream_readonly\s+SETTINGS readonly = 1, "
                        r"max_execution_time = 60 MIN 1 MAX 600 CHANGEABLE_IN_READONLY", profile)
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


# --- production shape ---------------------------------------------------------------------------------------


def _unescape(command: str) -> str:
    return command.replace("$$", "$")  # compose's escape of a literal $ (rendered config keeps it)


def test_topic_init_creates_every_topic_with_partitions_and_retention(rendered, tmp_path):
    """Run the rendered topic-init script with stand-in Kafka tools that record their arguments."""
    from shared.streaming.topics import Topics

    spec = rendered["topic-init"]
    assert spec["image"] == SERVICES["kafka"]["image"]  # the tools of the broker's own version
    assert spec["depends_on"]["kafka"]["condition"] == "service_healthy" and spec["restart"] == "no"
    assert spec["entrypoint"][:1] == ["/bin/bash"]
    script = _unescape(spec["command"][0]).replace("/opt/kafka/bin/", f"{tmp_path}/")
    for tool in ("kafka-topics.sh", "kafka-configs.sh"):
        stub = tmp_path / tool
        stub.write_text(f'#!/bin/sh\necho "{tool} $*" >> {tmp_path}/calls\n')
        stub.chmod(0o755)
    variables = env("topic-init", rendered) | {"STANCESTREAM_PARTITIONS": "6"}
    result = subprocess.run(["bash", *spec["entrypoint"][1:], script], capture_output=True, text=True, timeout=60,
                            env={"PATH": os.environ["PATH"]} | variables)
    assert result.returncode == 0, result.stderr
    calls = (tmp_path / "calls").read_text().splitlines()
    created = {}
    for call in calls:
        words = call.split()
        if words[0] == "kafka-topics.sh":
            assert {"--create", "--if-not-exists"} <= set(words) and words[words.index("--bootstrap-server") + 1] == \
                "kafka:9092"
            created[words[words.index("--topic") + 1]] = (int(words[words.index("--partitions") + 1]),
                                                          words[words.index("--config") + 1])
        else:  # the retention of an existing topic follows the env file too
            assert words[:1] == ["kafka-configs.sh"] and "--alter" in words
    retention = {Topics.raw: "TWEETS", Topics.classified: "TWEETS", Topics.dlq: "DLQ", Topics.labels: "LABELS",
                 Topics.adapter_events: "ADAPTER_EVENTS"}
    assert created == {topic.value: (1 if topic is Topics.adapter_events else 6,
                                     f"retention.ms={variables[retention[topic] + '_RETENTION_MS']}")
                       for topic in Topics}
    assert sum(w.startswith("kafka-configs.sh") for w in calls) == len(Topics)
    assert all(int(variables[f"{name}_RETENTION_MS"]) > 0 for name in retention.values())


def test_topic_init_fails_loudly_when_kafka_refuses(rendered, tmp_path):
    script = _unescape(rendered["topic-init"]["command"][0]).replace("/opt/kafka/bin/", f"{tmp_path}/")
    for tool in ("kafka-topics.sh", "kafka-configs.sh"):
        (tmp_path / tool).write_text("#!/bin/sh\nexit 1\n")
        (tmp_path / tool).chmod(0o755)
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60,
                            env={"PATH": os.environ["PATH"]} | env("topic-init", rendered))
    assert result.returncode != 0  # so worker and trainer (service_completed_successfully) do not start


def test_workers_and_trainer_start_after_topics_and_migrations(rendered):
    for service in ("worker", "trainer"):
        for one_shot in ("migrate", "topic-init"):
            assert rendered[service]["depends_on"][one_shot]["condition"] == "service_completed_successfully"
    # the same partition count for the topics and the workers' own check
    assert env("worker", rendered)["STANCESTREAM_PARTITIONS"] == env("topic-init", rendered)["STANCESTREAM_PARTITIONS"]
    # the trainer waits for a worker that serves /metrics, i.e. one that has seeded the adapter registry
    assert rendered["trainer"]["depends_on"]["worker"]["condition"] == "service_healthy"


def test_every_service_has_a_healthcheck_or_is_a_one_shot_that_others_wait_for(rendered):
    waited_for = {(dep, spec["condition"]) for other in rendered.values()
                  for dep, spec in (other.get("depends_on") or {}).items()}
    for name, spec in rendered.items():
        if spec.get("restart") == "no":  # one shot: its exit status is its health
            assert (name, "service_completed_successfully") in waited_for, name
            assert "healthcheck" not in spec
        else:
            assert spec["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
            assert spec["restart"] == "unless-stopped", name
    for name, spec in rendered.items():  # a service_healthy condition needs a healthcheck to ever be met
        for dep, condition in (spec.get("depends_on") or {}).items():
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in rendered[dep], f"{name} waits for {dep}, which has no healthcheck"


def test_worker_and_trainer_serve_metrics_to_the_compose_network_only(rendered):
    from shared.settings import Settings

    assert Settings.model_fields["metrics_host"].default == "127.0.0.1"  # the code's default stays loopback
    job_ports = {job["job_name"]: job for job in PROMETHEUS_CONFIG["scrape_configs"]}
    for service in ("worker", "trainer"):
        variables = env(service, rendered)
        assert variables["STANCESTREAM_METRICS_HOST"] == "0.0.0.0"  # explicitly, inside the container
        port = int(variables["STANCESTREAM_METRICS_PORT"])
        assert f"127.0.0.1:{port}/metrics" in " ".join(rendered[service]["healthcheck"]["test"])
        assert not rendered[service].get("ports")
    worker_sd = job_ports["stancestream-worker"]["dns_sd_configs"]
    assert worker_sd == [{"names": ["worker"], "type": "A", "port": port, "refresh_interval": "30s"}]
    assert job_ports["stancestream-trainer"]["static_configs"] == [{"targets": [f"trainer:{port}"]}]


@pytest.mark.parametrize("service", ["worker", "trainer"])
def test_metrics_healthcheck_passes_on_a_serving_endpoint_and_fails_without_one(service, rendered):
    """The healthcheck's own Python, pointed at a real Telemetry endpoint on a free port, then at a closed one."""
    import socket

    from shared.settings import Settings
    from shared.streaming.telemetry import Telemetry

    test = rendered[service]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    telemetry = Telemetry().serve(Settings(metrics_port=0))
    try:
        port = int(telemetry.address.rsplit(":", 1)[1].split("/")[0])
        served = subprocess.run([sys.executable, "-c", test[3].replace(":9464/", f":{port}/")], timeout=60)
    finally:
        telemetry.stop()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    refused = subprocess.run([sys.executable, "-c", test[3].replace(":9464/", f":{closed}/")], capture_output=True,
                             timeout=60)
    assert served.returncode == 0 and refused.returncode != 0


def test_prometheus_loads_the_checked_config_and_rules(rendered):
    prometheus = rendered["prometheus"]
    mounts = SERVICES["prometheus"]["volumes"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in mounts
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    assert PROMETHEUS_CONFIG["rule_files"] == ["alerts.yml"]  # relative: the same file in the checkout and there
    assert any(v.split(":")[1] == "/prometheus" for v in mounts)  # its data on a volume
    assert "--storage.tsdb.path=/prometheus" in prometheus["command"]


def test_grafana_is_provisioned_with_the_read_only_analyst_and_no_anonymous_access(rendered):
    grafana = env("grafana", rendered)
    assert grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "false" and grafana["GF_USERS_ALLOW_SIGN_UP"] == "false"
    plugin, _, version = grafana["GF_PLUGINS_PREINSTALL_SYNC"].partition("@")
    assert plugin == "grafana-clickhouse-datasource" and re.fullmatch(r"\d+\.\d+\.\d+", version)  # pinned
    mounts = dict(v.split(":")[:2] for v in SERVICES["grafana"]["volumes"])
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    sources = {d["type"]: d for d in yaml.safe_load((GRAFANA / "provisioning" / "datasources" /
                                                    "stancestream.yml").read_text())["datasources"]}
    clickhouse = sources["grafana-clickhouse-datasource"]
    assert clickhouse["jsonData"]["username"] == "stancestream_analyst"
    assert (clickhouse["jsonData"]["host"], clickhouse["jsonData"]["defaultDatabase"]) == ("clickhouse", "stancestream")
    # the password comes from Grafana's environment, which gets the analyst's
    assert clickhouse["secureJsonData"]["password"] == "$CLICKHOUSE_ANALYST_PASSWORD"
    assert "CLICKHOUSE_ANALYST_PASSWORD" in grafana
    assert sources["prometheus"]["url"] == "http://prometheus:9090"
    # the dashboard provider reads the folder the dashboards are mounted on, and the dashboard uses these sources
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "stancestream.yml").read_text())
    assert providers["providers"][0]["options"]["path"] == mounts["./deploy/grafana/dashboards"]
    dashboard = json.loads((GRAFANA / "dashboards" / "stancestream.json").read_text())
    used = {json.dumps(p["datasource"], sort_keys=True) for p in dashboard["panels"]}
    assert used == {json.dumps({"type": d["type"], "uid": d["uid"]}, sort_keys=True) for d in sources.values()}


def test_clickhouse_has_a_backup_disk_on_its_own_volume():
    import xml.etree.ElementTree as ET

    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) if v.count(":") == 2 else v.split(":", 1)
                  for v in SERVICES["clickhouse"]["volumes"])
    config = ET.parse(ROOT / "deploy" / "clickhouse" / "config.d" / "backup_disk.xml").getroot()
    assert mounts["./deploy/clickhouse/config.d/backup_disk.xml"] == "/etc/clickhouse-server/config.d/backup_disk.xml"
    disk = config.find("storage_configuration/disks/backups")
    assert disk.findtext("type") == "local" and config.findtext("backups/allowed_disk") == "backups"
    # the disk's path is the backups volume, not the data volume
    assert mounts["clickhouse-backups"].rstrip("/") == disk.findtext("path").rstrip("/") != "/var/lib/clickhouse"
    assert "clickhouse-backups" in COMPOSE["volumes"]
    readme = (ROOT / "README.md").read_text()
    assert "BACKUP DATABASE stancestream TO Disk('backups', " in readme and \
        f"clickhouse:{disk.findtext('path')}stancestream-" in readme


CLUSTER_DIR = ROOT / "deploy" / "clickhouse" / "cluster"
CLUSTER_SERVICES = {"clickhouse-keeper", "clickhouse-1", "clickhouse-2", "migrate-cluster", "worker-cluster"}


def _mounts(service: str) -> dict[str, str]:
    """Source -> target of each of ``service``'s volumes, as docker-compose.yml writes them."""
    return {volume.split(":")[0]: volume.split(":")[1] for volume in SERVICES[service].get("volumes", [])}


def test_cluster_profile_renders_wires_keeper_and_two_shards_and_leaves_plain_up_unchanged():
    import xml.etree.ElementTree as ET

    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.fail("docker-compose is not installed: run `make setup` (apt package docker-compose)")
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("CLICKHOUSE_", "STANCESTREAM_", "GRAFANA_")) and k not in DEFAULTED}
    result = subprocess.run([exe, "-f", "docker-compose.yml", "--profile", "cluster", "config"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, env=clean | PASSWORDS)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    # plain `docker compose up` starts the services without a profile: none of the cluster's, none waiting for one
    plain = {name for name, spec in services.items() if not spec.get("profiles")}
    assert {"clickhouse", "migrate", "worker"} <= plain
    for name in CLUSTER_SERVICES:
        assert services[name]["profiles"] == ["cluster"], name
    for name in plain:
        assert not set(services[name].get("depends_on") or {}) & CLUSTER_SERVICES, name

    config = ET.parse(CLUSTER_DIR / "config.d" / "cluster.xml").getroot()
    (cluster,) = list(config.find("remote_servers"))
    shards = cluster.findall("shard")  # 2 shards x 1 replica, one per server service
    assert [shard.findtext("replica/host") for shard in shards] == ["clickhouse-1", "clickhouse-2"]
    assert all(len(shard.findall("replica")) == 1 and shard.findtext("internal_replication") == "true"
               for shard in shards)
    keeper = ET.parse(CLUSTER_DIR / "keeper.xml").getroot()
    assert (config.findtext("zookeeper/node/host"), config.findtext("zookeeper/node/port")) == \
        ("clickhouse-keeper", keeper.findtext("keeper_server/tcp_port"))
    assert _mounts("clickhouse-keeper")["./deploy/clickhouse/cluster/keeper.xml"] == \
        "/etc/clickhouse-keeper/keeper_config.xml"
    shard_macros = set()
    for node in ("clickhouse-1", "clickhouse-2"):
        mounts = _mounts(node)
        assert all((ROOT / source).exists() for source in mounts if source.startswith("./")), mounts
        assert services[node]["hostname"] == node
        assert mounts["./deploy/clickhouse/cluster/config.d/cluster.xml"] == "/etc/clickhouse-server/config.d/cluster.xml"
        macros_file = next(source for source, target in mounts.items()
                           if target == "/etc/clickhouse-server/config.d/macros.xml")
        macros = ET.parse(ROOT / macros_file).getroot()
        assert macros.findtext("macros/replica") == node
        shard_macros.add(macros.findtext("macros/shard"))
        initdb = sorted(target for source, target in mounts.items() if "initdb" in source)
        assert initdb == ["/docker-entrypoint-initdb.d/10-stancestream-users.sh",
                          "/docker-entrypoint-initdb.d/20-cluster-grant.sh"]  # users first, then the CLUSTER grant
        # the inter-server secret comes from the environment, and the environment from a required variable
        assert env(node, services)[cluster.find("secret").get("from_env")] == PASSWORDS["CLICKHOUSE_ADMIN_PASSWORD"]
        assert services[node]["depends_on"]["clickhouse-keeper"]["condition"] == "service_healthy"
    assert len(shard_macros) == 2
    for service in ("migrate-cluster", "worker-cluster"):  # they name the cluster remote_servers defines
        variables = env(service, services)
        assert variables["STANCESTREAM_CLICKHOUSE_CLUSTER"] == cluster.tag
        assert urlsplit(variables["CLICKHOUSE_URL"]).hostname in ("clickhouse-1", "clickhouse-2")
    assert urlsplit(env("migrate-cluster", services)["CLICKHOUSE_URL"]).username == "stancestream_migrator"
    assert urlsplit(env("worker-cluster", services)["CLICKHOUSE_URL"]).username == "stancestream_writer"
    assert services["worker-cluster"]["depends_on"]["migrate-cluster"]["condition"] == "service_completed_successfully"
    # its own consumer group: never splits the partitions with the single-server workers
    assert env("worker-cluster", services)["STANCESTREAM_WORKER_GROUP"] != \
        env("worker", services).get("STANCESTREAM_WORKER_GROUP", "stancestream-worker")


def test_cluster_nodes_grant_the_migrator_on_cluster_ddl(tmp_path):
    script = CLUSTER_DIR / "initdb" / "20-cluster-grant.sh"
    assert os.access(script, os.X_OK)
    stub = tmp_path / "bin" / "clickhouse"
    stub.parent.mkdir()
    stub.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path}/args\n')
    stub.chmod(0o755)
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=60,
                            env={"PATH": f"{stub.parent}:{os.environ['PATH']}", "CLICKHOUSE_USER": "stancestream_admin",
                                 "CLICKHOUSE_PASSWORD": "adm1n"})
    assert result.returncode == 0, result.stderr
    args = (tmp_path / "args").read_text().splitlines()
    assert args[args.index("--query") + 1] == "GRANT CLUSTER ON *.* TO stancestream_migrator"  # that grant only
