"""The query gateway, ad-hoc SQL, hot-swap and migrations under attack: real chDB, a real gateway, a real broker.

An attacker here is any local process or web page that can reach the gateway's loopback port, or anyone who can
produce to ``adapters.events``. Every refusal is checked by its effect too: the table is still there, no file
was written, the secret file's content never came back, the URL was never fetched.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import logging
import os
import shutil
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from shared.classifier.adapters import BASE_VERSION
from shared.settings import Settings
from shared.store import StoreError, open_store
from shared.store.gateway import QueryGateway
from shared.store.gateway_client import GatewayStore
from shared.store.migrations import migrate
from shared.store.sqlpolicy import QueryRefused, run_adhoc

pytestmark = pytest.mark.clickhouse

SECRET = "gateway-security-secret-7f3a"


# -- fixtures --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gateway_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("gateway")


@pytest.fixture(scope="module")
def gateway(store, gateway_dir):
    old_umask = os.umask(0)  # the file must be private however permissive the umask
    try:
        running = QueryGateway(store, gateway_dir).start()
    finally:
        os.umask(old_umask)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def token(gateway, gateway_dir) -> str:
    return json.loads((gateway_dir / "gateway.json").read_text())["token"]


@pytest.fixture(scope="module")
def client(gateway, token) -> GatewayStore:
    return GatewayStore(gateway.address, token)


@pytest.fixture(scope="module")
def bait(tmp_path_factory):
    """A file an attacker wants to read, a directory they want to write into, a URL they want fetched."""
    root = tmp_path_factory.mktemp("bait")
    (root / "secret.txt").write_text(SECRET + "\n")
    (root / "secret.csv").write_text(f"{SECRET},1\n")
    hits: list[str] = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(f"{SECRET}\n".encode())

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield {"dir": root, "url": f"http://127.0.0.1:{server.server_address[1]}", "hits": hits}
    server.shutdown()


def raw_post(gateway: QueryGateway, path: str, body: dict | bytes, headers: dict[str, str]) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(f"{gateway.address}{path}", data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def exists(store, table: str) -> bool:
    return bool(store.query("EXISTS TABLE {t:Identifier}", {"t": table}).scalar())


# -- the credential --------------------------------------------------------------------------------------------
def test_gateway_json_is_private_and_names_a_fresh_token(gateway, gateway_dir, token, store):
    path = gateway_dir / "gateway.json"
    assert path.stat().st_mode & 0o777 == 0o600  # written under umask 0: created private, not chmod'ed after
    assert len(token) >= 32
    second = QueryGateway(store, gateway_dir / "other").start()
    try:
        assert json.loads((gateway_dir / "other" / "gateway.json").read_text())["token"] != token  # per run
    finally:
        second.stop()
    # open_store finds address and token there: the client other commands use works as is.
    found = open_store(Settings(data_dir=gateway_dir))
    assert isinstance(found, GatewayStore)
    assert found.query("SELECT 41 + 1 AS x").scalar() == 42


def test_requests_without_the_right_token_are_refused_before_anything_runs(gateway, token, store):
    probe = {"sql": "CREATE TABLE gw_probe (a UInt8) ENGINE = Memory", "write": True}
    json_type = {"Content-Type": "application/json"}
    for headers in (json_type, json_type | {"Authorization": "Bearer wrong"},
                    json_type | {"Authorization": f"Bearer {token[:-1]}"},
                    json_type | {"Authorization": token}, json_type | {"Authorization": f"Basic {token}"}):
        status, body = raw_post(gateway, "/query", probe, headers)
        assert status == 401, (headers, body)
        assert token not in json.dumps(body)
    assert not exists(store, "gw_probe")
    with pytest.raises(QueryRefused, match="credential"):
        GatewayStore(gateway.address, "not-the-token").query("SELECT 1")


def test_browser_requests_are_refused(gateway, token, store):
    good = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    probe = {"sql": "CREATE TABLE gw_probe (a UInt8) ENGINE = Memory", "write": True}
    port = gateway.address.rsplit(":", 1)[1]
    cases = [(good | {"Origin": "http://evil.example"}, 403), (good | {"Origin": "null"}, 403),
             (good | {"Origin": gateway.address}, 403), (good | {"Host": f"evil.example:{port}"}, 403),
             (good | {"Content-Type": "text/plain"}, 415),
             (good | {"Content-Type": "application/x-www-form-urlencoded"}, 415),
             ({"Authorization": f"Bearer {token}"}, 415)]
    for headers, expected in cases:
        status, body = raw_post(gateway, "/query", probe, headers)
        assert status == expected, (headers, body)
    assert not exists(store, "gw_probe")
    status, body = raw_post(gateway, "/query", {"sql": "SELECT 1 AS one"}, good)  # the same request, allowed
    assert status == 200 and body["rows"] == [[1]]


def test_the_token_never_reaches_the_log(gateway, token, client, caplog):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(QueryRefused):
        client.query("DROP TABLE dead_letters")
    raw_post(gateway, "/query", {"sql": "SELECT 1"}, {"Content-Type": "application/json"})
    client.query("SELECT 1")
    assert token not in caplog.text


# -- read-only by default --------------------------------------------------------------------------------------
DROPS = ["DROP TABLE dead_letters", "drop table dead_letters", "/* x */ DrOp\n TABLE `dead_letters` -- y",
         "DROP TABLE IF EXISTS default.dead_letters", "TRUNCATE TABLE dead_letters",
         "RENAME TABLE dead_letters TO x", "SELECT 1; DROP TABLE dead_letters", "SELECT 1;DROP TABLE dead_letters;",
         "SELECT ';'; DROP TABLE dead_letters", "ALTER TABLE dead_letters DELETE WHERE 1", "DETACH TABLE dead_letters",
         "EXCHANGE TABLES dead_letters AND labels", "INSERT INTO labels SELECT * FROM labels", "CREATE TABLE gw_probe (a UInt8) ENGINE = Memory",
         "SET readonly = 0", "USE system", "SYSTEM DROP MARK CACHE", "KILL QUERY WHERE 1", "EXPLAIN AST DROP TABLE x"]


@pytest.mark.parametrize("sql", DROPS)
def test_writes_are_refused_without_write_and_the_table_stays(client, store, sql):
    store.insert("dead_letters", [("t", 0, 1, "r", "p", _now())],
                 ["source_topic", "partition", "offset", "reason", "payload", "failed_at"])
    with pytest.raises(QueryRefused) as refused:
        client.query(sql)
    assert "\n" not in str(refused.value)
    assert exists(store, "dead_letters") and exists(store, "labels") and not exists(store, "gw_probe")
    assert store.query("SELECT count() FROM dead_letters").scalar() >= 1


def test_a_refused_write_says_to_add_write(client):
    with pytest.raises(QueryRefused, match="add --write"):
        client.query("DROP TABLE dead_letters")


def test_write_mode_writes_but_never_destroys_the_stacks_tables(client, clean_store):
    store = clean_store
    client.command("DROP TABLE IF EXISTS gw_scratch")
    client.query("CREATE TABLE gw_scratch (a UInt32) ENGINE = MergeTree ORDER BY a", write=True)
    client.query("INSERT INTO gw_scratch SELECT number FROM numbers(5)", write=True)
    assert store.query("SELECT sum(a) FROM gw_scratch").scalar() == 10
    client.query("ALTER TABLE gw_scratch DELETE WHERE a = 4", write=True)
    client.query("DROP TABLE gw_scratch", write=True)
    assert not exists(store, "gw_scratch")
    store.insert("labels", [("t1", "a text", "en", "neutral", "me", _now(), _now())],
                 ["tweet_id", "text", "lang", "label", "annotator", "labeled_at", "ingested_at"])
    for sql in ("DROP TABLE dead_letters", "DROP TABLE IF EXISTS gw_scratch, labels", "TRUNCATE TABLE labels",
                "TRUNCATE labels", "ALTER TABLE labels DROP COLUMN text", "ALTER TABLE default.labels MODIFY TTL "
                "toDateTime(labeled_at)", "DROP VIEW latest_classifications", "DROP DATABASE default",
                "TRUNCATE ALL TABLES FROM default", "DROP TABLE schema_migrations"):
        with pytest.raises(QueryRefused, match="running stack|whole database"):
            client.query(sql, write=True)
    assert all(exists(store, t) for t in ("dead_letters", "labels", "latest_classifications", "schema_migrations"))
    assert store.query("SELECT count(), any(text) FROM labels").rows == [(1, "a text")]
    # What can be undone stays possible: renaming a table away and back (fault drills), deleting rows.
    client.query("RENAME TABLE holdout TO holdout_away", write=True)
    assert not exists(store, "holdout")
    client.query("RENAME TABLE holdout_away TO holdout", write=True)
    client.query("DELETE FROM labels WHERE tweet_id = 't1'", write=True)
    assert exists(store, "holdout") and store.query("SELECT count() FROM labels").scalar() == 0


def test_the_read_session_refuses_writes_on_its_own(store):
    """Defence in depth: even a statement the policy missed runs where ClickHouse itself forbids writes."""
    reader = store.read_only()
    with pytest.raises(StoreError, match="readonly"):
        reader.query("CREATE TABLE gw_probe (a UInt8) ENGINE = Memory")
    with pytest.raises(StoreError, match="readonly"):
        reader.query("SELECT 1 SETTINGS readonly = 0")
    assert not exists(store, "gw_probe")
    assert store.query("SELECT getSetting('readonly')").scalar() == 0  # the worker's own session stays writable


# -- files, URLs, other servers --------------------------------------------------------------------------------
def _escapes(bait: dict) -> list[str]:
    d, url = bait["dir"], bait["url"]
    return [
        f"SELECT * FROM file('{d}/secret.txt', 'LineAsString')",
        f"select * from FILE ('{d}/secret.txt', 'LineAsString')",
        f"SELECT * FROM `file`('{d}/secret.txt', 'LineAsString')",
        f"SELECT * FROM /* hide */ file\n-- more\n('{d}/secret.txt', 'LineAsString')",
        f"SELECT file('{d}/secret.txt')",
        f"SELECT FiLe('{d}/secret.txt') AS x",
        f"SELECT * FROM (SELECT * FROM (SELECT * FROM file('{d}/secret.txt', 'LineAsString')))",
        f"WITH x AS (SELECT * FROM file('{d}/secret.txt', 'LineAsString')) SELECT * FROM x",
        f"SELECT 1 UNION ALL SELECT length(file('{d}/secret.txt'))",
        f"SELECT 1 WHERE 1 IN (SELECT count() FROM file('{d}/secret.csv', 'CSV'))",
        f"SELECT arrayMap(x -> file('{d}/secret.txt'), [1])",
        f"DESCRIBE file('{d}/secret.csv', 'CSVWithNames')",
        f"DESC TABLE file('{d}/secret.csv')",
        f"EXPLAIN SELECT * FROM file('{d}/secret.txt', 'LineAsString')",
        f"SELECT * FROM url('{url}/u1', 'LineAsString')",
        f"SELECT * FROM URL('{url}/u2', LineAsString)",
        f"SELECT * FROM s3('{url}/bucket/key', 'LineAsString')",
        f"SELECT * FROM urlCluster('default', '{url}/u3', 'LineAsString')",
        "SELECT * FROM remote('127.0.0.1:9000', system.one)",
        "SELECT * FROM remoteSecure('127.0.0.1:9440', system.one)",
        "SELECT * FROM cluster('default', system.one)",
        "SELECT * FROM mysql('127.0.0.1:3306', 'db', 't', 'u', 'p')",
        "SELECT * FROM postgresql('127.0.0.1:5432', 'db', 't', 'u', 'p')",
        "SELECT * FROM executable('cat /etc/passwd', 'LineAsString', 'x String')",
        "SELECT * FROM input('x String')",
        f"SELECT * FROM sqlite('{d}/secret.txt', 't')",
        "SELECT * FROM python('x')",
        f"SELECT * FROM filesystem('{d}')",
        f"SELECT * FROM deltaLake('{url}/d')",
        f"SELECT * FROM iceberg('{url}/i')",
        f"SELECT * FROM hdfs('hdfs://127.0.0.1:9000/x', 'LineAsString')",
        f"SELECT * FROM numbers(1) JOIN file('{d}/secret.csv', 'CSV') AS f ON 1",
        f"SELECT * FROM viewIfPermitted(SELECT * FROM file('{d}/secret.txt', 'LineAsString') ELSE null('x String'))",
        f"SELECT * FROM merge('x') UNION DISTINCT SELECT * FROM file('{d}/secret.txt', 'LineAsString')",
        f"SELECT 1 INTO OUTFILE '{d}/out1.txt'",
        f"select 1 into\n/* c */ outfile '{d}/out2.txt' TRUNCATE",
        f"SELECT 1 INTO OUTFILE '{d}/out3.txt' AND STDOUT",
    ]


def _write_escapes(bait: dict) -> list[str]:
    d, url = bait["dir"], bait["url"]
    return [
        f"INSERT INTO FUNCTION file('{d}/out4.csv', 'CSV') SELECT 1",
        f"insert into function FILE('{d}/out5.csv', 'CSV') select 1",
        f"INSERT INTO FUNCTION url('{url}/post', 'CSV') SELECT 1",
        f"INSERT INTO gw_target FROM INFILE '{d}/secret.csv' FORMAT CSV",
        f"INSERT INTO gw_target SELECT * FROM file('{d}/secret.csv', 'CSV')",
        "INSERT INTO gw_target VALUES ('a', 1); DROP TABLE gw_target",
        "INSERT INTO gw_target FORMAT CSV\na,1\n;DROP TABLE gw_target",
        f"CREATE TABLE gw_evil (x String) ENGINE = File(LineAsString, '{d}/secret.txt')",
        f"CREATE TABLE gw_evil (x String) ENGINE = URL('{url}/e1', LineAsString)",
        f"CREATE TABLE gw_evil ENGINE = Memory AS SELECT * FROM file('{d}/secret.txt', 'LineAsString')",
        f"CREATE TABLE gw_evil AS url('{url}/e2', 'LineAsString')",
        f"CREATE DATABASE gw_evil ENGINE = Filesystem('{d}')",
        f"CREATE DICTIONARY gw_evil (x String) PRIMARY KEY x SOURCE(FILE(path '{d}/secret.csv' format 'CSV')) "
        "LAYOUT(FLAT()) LIFETIME(0)",
        f"CREATE TABLE gw_evil (a UInt8) ENGINE = MergeTree ORDER BY a "
        f"SETTINGS disk = disk(type = local, path = '{d}/disk/')",
        f"ATTACH TABLE gw_evil FROM '{d}' (a UInt8) ENGINE = MergeTree ORDER BY a",
        f"BACKUP TABLE gw_target TO File('{d}/backup')",
        f"RESTORE TABLE gw_target FROM File('{d}/backup')",
        "SYSTEM FLUSH LOGS",
        "CREATE USER gw_evil IDENTIFIED BY 'x'",
        "GRANT ALL ON *.* TO gw_evil",
        "CREATE FUNCTION gw_evil AS (x) -> x",
        "ALTER TABLE gw_target FREEZE",
        "ALTER TABLE gw_target FETCH PARTITION tuple() FROM '/clickhouse/tables/x'",
    ]


def _run(path: str, client: GatewayStore, store, sql: str, write: bool):
    """The same statement through a running stack's gateway, or as `sql` runs it with no stack (direct)."""
    if path == "gateway":
        return client.query(sql, write=write)
    return run_adhoc(store, sql, write=write)


@pytest.mark.parametrize("path", ["gateway", "direct"])
@pytest.mark.parametrize("write", [False, True])
def test_files_urls_and_other_servers_are_refused_in_every_spelling(client, store, bait, path, write):
    store.command("CREATE TABLE IF NOT EXISTS gw_target (name String, n UInt32) ENGINE = MergeTree ORDER BY name")
    statements = _escapes(bait) + (_write_escapes(bait) if write else [])
    for sql in statements:
        with pytest.raises(QueryRefused) as refused:
            _run(path, client, store, sql, write)
        message = str(refused.value)
        assert SECRET not in message and "\n" not in message, (sql, message)
    assert bait["hits"] == []  # no URL was ever fetched
    assert sorted(p.name for p in bait["dir"].iterdir()) == ["secret.csv", "secret.txt"]  # nothing written there
    assert exists(store, "gw_target") and not exists(store, "gw_evil")
    assert store.query("SELECT count() FROM gw_target").scalar() == 0
    assert "gw_evil" not in {r[0] for r in store.query("SELECT name FROM system.databases").rows}


def test_the_bait_is_real(bait, store):
    """Without the policy the same statements do read the file and fetch the URL: the refusals above matter."""
    d = bait["dir"]
    assert store.query(f"SELECT file('{d}/secret.txt')").scalar().strip() == SECRET
    assert store.query(f"SELECT * FROM url('{bait['url']}/real', 'LineAsString')").scalar() == SECRET
    assert bait["hits"] == ["/real"]
    bait["hits"].clear()


def test_local_table_functions_and_system_tables_still_work(client):
    assert client.query("SELECT sum(number) FROM numbers(4)").scalar() == 6
    assert client.query("SELECT count() FROM system.tables WHERE name = 'labels'").scalar() == 1
    assert client.query("SELECT {n:UInt32} * 2 AS twice", {"n": 21}).scalar() == 42
    assert client.query("SELECT x FROM values('x UInt8', 1, 2) ORDER BY x").rows == [(1,), (2,)]
    assert [r[0] for r in client.query("SHOW TABLES").rows].count("dead_letters") == 1


# -- typed inserts ---------------------------------------------------------------------------------------------
def test_inserts_only_into_the_allowlisted_tables_and_their_columns(client, store, clean_store):
    store.command("CREATE TABLE IF NOT EXISTS gw_target (name String, n UInt32) ENGINE = MergeTree ORDER BY name")
    with pytest.raises(QueryRefused, match="not accepted"):
        client.insert("gw_target", [("x", 1)], ["name", "n"])
    with pytest.raises(QueryRefused, match="not accepted"):
        client.insert("system.query_log", [("x",)], ["query"])
    with pytest.raises(QueryRefused, match="columns"):
        client.insert("labels", [("t1", "text")], ["tweet_id", "text) SELECT 1 --"])
    with pytest.raises(QueryRefused, match="columns"):
        client.insert("labels", [("t1", "t1")], ["tweet_id", "tweet_id"])
    assert store.query("SELECT count() FROM gw_target").scalar() == 0
    assert store.query("SELECT count() FROM labels").scalar() == 0
    client.insert("labels", [("t1", "a text", "en", "neutral", "me", _now(), _now())],
                  ["tweet_id", "text", "lang", "label", "annotator", "labeled_at", "ingested_at"])
    assert store.query("SELECT tweet_id, label FROM labels").rows == [("t1", "neutral")]


# -- stancestream sql ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["gateway", "direct"])
def test_sql_command_needs_write_for_writes(where, gateway, gateway_dir, store_dir, store, monkeypatch, capsys):
    from services import cli

    monkeypatch.setenv("STANCESTREAM_DATA_DIR", str(gateway_dir if where == "gateway" else store_dir))
    store.command("DROP TABLE IF EXISTS gw_cli")
    assert cli.main(["sql", "CREATE TABLE gw_cli (a UInt8) ENGINE = Memory"]) == 2
    err = capsys.readouterr().err.strip()
    assert "add --write" in err and len(err.splitlines()) == 1
    assert not exists(store, "gw_cli")
    assert cli.main(["sql", "--write", "CREATE TABLE gw_cli (a UInt8) ENGINE = Memory"]) == 0
    assert cli.main(["sql", "--write", "INSERT INTO gw_cli SELECT 7"]) == 0
    capsys.readouterr()
    assert cli.main(["sql", "SELECT a FROM gw_cli", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == ["a", "7"]
    assert cli.main(["sql", "--write", "SELECT * FROM file('/etc/passwd', 'LineAsString')"]) == 2
    assert "file()" in capsys.readouterr().err
    assert cli.main(["sql", "--write", "DROP TABLE gw_cli"]) == 0
    assert not exists(store, "gw_cli")


# -- hot-swap --------------------------------------------------------------------------------------------------
@pytest.fixture
def swap(clean_store, tiny_settings, tiny_adapter, tmp_path):
    from shared.classifier.model import StanceClassifier
    from shared.training.registry import AdapterRegistry
    from shared.streaming.worker import WorkerStats
    from shared.streaming.telemetry import Telemetry

    registry = AdapterRegistry(clean_store, tmp_path / "registry")
    registry.seed(tiny_adapter)  # v1, active, copied to registry/v1
    outside = tmp_path / "outside"
    shutil.copytree(tiny_adapter, outside)  # a valid adapter, just not the registry's
    return dict(registry=registry, outside=outside, classifier=StanceClassifier.load(tiny_settings),
                stats=WorkerStats(), telemetry=Telemetry(), thread=ThreadPoolExecutor(max_workers=1))


def _refused(telemetry) -> float:
    return telemetry.registry.get_sample_value("stancestream_adapter_switches_total", {"outcome": "refused"}) or 0


@pytest.mark.model
def test_hot_swap_loads_only_the_registrys_directory_of_the_active_version(swap, tmp_path, caplog):
    from shared.streaming.hotswap import apply_event
    from shared.messages import AdapterAction, AdapterEvent
    from shared.training.registry import AdapterStatus

    registry, classifier, stats, telemetry = swap["registry"], swap["classifier"], swap["stats"], swap["telemetry"]
    link = registry.root / "v3"
    link.symlink_to(swap["outside"], target_is_directory=True)  # inside by name, outside in fact
    registry._write("v3", "v1", link, AdapterStatus.candidate, None, {}, "planted")
    events = [("v1", swap["outside"]),        # a registered version, a foreign path
              ("v9", swap["outside"]),        # a version the registry never heard of
              ("v3", link)]                   # registered, but not active and a symlink out of the registry
    for version, path in events:
        asyncio.run(apply_event(AdapterEvent(version=version, path=str(path), action=AdapterAction.promote),
                                classifier, swap["thread"], stats, telemetry, registry))
    assert classifier.adapter_version == BASE_VERSION and stats.adapter_switches == 0
    assert stats.adapter_failures == 3 and _refused(telemetry) == 3
    assert "refused adapter v1" in caplog.text and "refused adapter v9" in caplog.text
    # Even active, a registry row whose directory leaves the registry is refused.
    registry._write("v3", "v1", link, AdapterStatus.active, "v1", {}, "planted")
    asyncio.run(apply_event(AdapterEvent(version="v3", path=str(link), action=AdapterAction.promote),
                            classifier, swap["thread"], stats, telemetry, registry))
    assert classifier.adapter_version == BASE_VERSION and stats.adapter_failures == 4
    # The registry's own directory of its active version is served.
    registry._write("v1", None, registry.root / "v1", AdapterStatus.active, None, {}, "back")
    asyncio.run(apply_event(AdapterEvent(version="v1", path=str(registry.root / "v1"), action=AdapterAction.promote),
                            classifier, swap["thread"], stats, telemetry, registry))
    assert classifier.adapter_version == "v1" and stats.adapter_switches == 1 and _refused(telemetry) == 4


@pytest.mark.kafka
@pytest.mark.model
def test_hot_swap_through_the_topic_refuses_a_path_outside_the_registry(swap, broker, store_dir):
    from shared.streaming.hotswap import AdapterWatcher, publish_adapter_event
    from shared.messages import AdapterAction, AdapterEvent
    from shared.streaming.topics import Topics, ensure_topics
    from streams import stream_settings, until

    settings = stream_settings(broker, store_dir, registry_dir=swap["registry"].root)
    registry, classifier, stats = swap["registry"], swap["classifier"], swap["stats"]

    async def scenario():
        await ensure_topics(settings, (Topics.adapter_events,))
        watcher = await AdapterWatcher(settings).start()
        try:
            watcher.follow(classifier, swap["thread"], stats, swap["telemetry"], registry)
            for version, path in (("v1", swap["outside"]), ("v7", swap["outside"]), ("v1", registry.root / "v1")):
                await publish_adapter_event(settings, AdapterEvent(version=version, path=str(path),
                                                                   action=AdapterAction.promote))
            await until(lambda: stats.adapter_switches + stats.adapter_failures == 3, timeout=60,
                        what="three events handled")
        finally:
            await watcher.stop()

    asyncio.run(scenario())
    assert stats.adapter_failures == 2 and stats.adapter_switches == 1
    assert classifier.adapter_version == "v1"


# -- migrations heal -------------------------------------------------------------------------------------------
def _columns(store, table: str) -> list[tuple]:
    return store.query("SELECT name, type FROM system.columns WHERE database = currentDatabase() "
                       "AND table = {t:String} ORDER BY position", {"t": table}).rows


@pytest.mark.parametrize("through", ["store", "gateway"])
def test_migrate_recreates_a_dropped_table_and_view(through, store, client, caplog):
    before = {t: _columns(store, t) for t in ("dead_letters", "classifications", "latest_classifications")}
    store.command("DROP TABLE dead_letters")
    store.command("DROP VIEW latest_classifications")
    assert not exists(store, "dead_letters")
    caplog.set_level(logging.WARNING)
    healed = migrate(store if through == "store" else client)
    assert healed, "migrate said nothing to do with dead_letters missing"
    assert "dead_letters" in caplog.text and "latest_classifications" in caplog.text
    for table, columns in before.items():
        assert _columns(store, table) == columns, table  # the current schema, not the first migration's
    assert migrate(store) == []  # nothing missing any more: nothing to do, no DDL


def _now():
    from shared.messages import utcnow

    return utcnow()


def test_a_long_adhoc_read_is_stopped_at_the_query_timeout(store):
    """The embedded engine runs one query at a time: an ad-hoc read may hold the worker's writes back only for
    STANCESTREAM_QUERY_TIMEOUT_S (1 s here), then ClickHouse stops it and says so."""
    import time

    from shared.store.clickhouse import ClickHouseStore

    impatient = ClickHouseStore(store._client, "test store", dsn=store._dsn, lock=store._lock, adhoc_timeout_s=1)
    started = time.monotonic()
    with pytest.raises(StoreError, match="(?i)timeout"):
        run_adhoc(impatient, "SELECT count() FROM numbers(100000000000) WHERE sipHash64(number) % 7 = 3")
    assert time.monotonic() - started < 8
    assert run_adhoc(impatient, "SELECT 1").scalar() == 1  # the session is still usable
