"""Cluster mode (``STANCESTREAM_CLICKHOUSE_CLUSTER``): the migrations rendered for a cluster, checked statement by
statement and as the catalog they leave behind, and single-node mode checked to be the files as written.

No ClickHouse here: tests/integration/test_cluster_migrations.py parses every rendered statement with ClickHouse's
own parser and runs the rendered schema on a one-shard cluster."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.settings import Settings
from shared.store.base import QueryResult
from shared.store.cluster import ClusterRenderer, ClusterRenderError, schema_migrations_ddl
from shared.store.migrations import discover, migrate, rendered, schema_objects

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = "stancestream"
MIGRATIONS = discover()
# The bookkeeping table as single-node mode has always created it (pinned: cluster mode must not change it).
SINGLE_NODE_SCHEMA_MIGRATIONS = ("CREATE TABLE IF NOT EXISTS schema_migrations (number UInt32, name String, applied_at "
                                 "DateTime DEFAULT now()) ENGINE = MergeTree ORDER BY number")
ZK_ARGS = "'/clickhouse/tables/{shard}/{database}/{table}', '{replica}'"


def flat(sql: str) -> str:
    return " ".join(sql.split())


def scripts(cluster: str | None):
    """(migration, direction, its statements) for every script, in both directions."""
    for migration in MIGRATIONS:
        for direction in ("up", "down"):
            yield migration, direction, rendered(migration, direction, cluster, MIGRATIONS)


# --- a toy catalog: what a sequence of (rendered) statements leaves on a node ------------------------------------
_ON = rf"(?: ON CLUSTER {CLUSTER})?"


def apply(catalog: dict[str, str], statement: str) -> None:
    s = flat(statement)
    if m := re.match(rf"CREATE (OR REPLACE )?(?:TABLE|VIEW|MATERIALIZED VIEW) (IF NOT EXISTS )?(\w+){_ON}\b", s):
        if not (m[2] and m[3] in catalog):
            catalog[m[3]] = s
    elif m := re.match(rf"DROP (?:TABLE|VIEW) (IF EXISTS )?(\w+){_ON}(?: SYNC)?$", s):
        assert m[1] or m[2] in catalog, f"drops {m[2]}, which does not exist: {s}"
        catalog.pop(m[2], None)
    elif m := re.match(rf"EXCHANGE TABLES (\w+) AND (\w+){_ON}$", s):
        assert m[1] in catalog and m[2] in catalog, s
        catalog[m[1]], catalog[m[2]] = catalog[m[2]], catalog[m[1]]
    elif m := re.match(rf"RENAME TABLE (\w+) TO (\w+){_ON}$", s):
        catalog[m[2]] = catalog.pop(m[1])
    elif m := re.match(r"(?:ALTER TABLE|INSERT INTO) (\w+)", s):
        assert m[1] in catalog, f"aims at {m[1]}, which does not exist: {s}"
    else:
        raise AssertionError(f"the toy catalog does not know {s}")


def engine(create: str) -> str:
    m = re.search(r"\bENGINE = (\w+)", create)
    return m[1] if m else ("MaterializedView" if "MATERIALIZED VIEW" in create else "View")


def reads(select: str) -> set[str]:
    return set(re.findall(r"\b(?:FROM|JOIN) (\w+)", select.split(" AS ", 1)[1]))


def check_cluster_catalog(catalog: dict[str, str], where: str) -> None:
    for name, create in catalog.items():
        kind = engine(create)
        if kind.endswith("MergeTree"):
            assert kind.startswith("Replicated") and name.endswith("_local"), f"{where}: {name} is {kind}"
            assert f"{kind}({ZK_ARGS}" in create, f"{where}: {name} lacks its Keeper path and replica: {create}"
            distributed = catalog.get(name.removesuffix("_local"), "")
            assert re.search(rf"AS {name} ENGINE = Distributed\({CLUSTER}, currentDatabase\(\), {name}, ", distributed), \
                f"{where}: no Distributed table over {name}: {distributed}"
            key = re.search(rf"{name}, (cityHash64\((.*)\)|rand\(\))\)$", distributed)
            for column in (key[2] or "").split(", ") if key[2] else []:  # the key's columns are the local table's
                assert re.search(rf"[(,]\s*{column} ", create), f"{where}: {name} has no column {column} (key {key[1]})"
        elif kind == "Distributed":
            assert f"{name}_local" in catalog, f"{where}: Distributed {name} over a missing table"
        elif kind == "MaterializedView":
            target = re.search(r" TO (\w+) AS ", create)[1]
            assert target.endswith("_local") and engine(catalog[target]).startswith("Replicated"), create
            assert reads(create) and all(t.endswith("_local") for t in reads(create)), f"{where}: {create}"
        else:  # a plain view reads what analysts read: the Distributed tables
            assert not any(t.endswith("_local") for t in reads(create)), f"{where}: {create}"


def catalogs(cluster: str | None) -> list[tuple[str, dict[str, str]]]:
    """The catalog after each step of: every migration up, then every one down, then every one up again."""
    catalog: dict[str, str] = {}
    steps = []
    order = ([(m, "up") for m in MIGRATIONS] + [(m, "down") for m in reversed(MIGRATIONS)]
             + [(m, "up") for m in MIGRATIONS])
    for migration, direction in order:
        for statement in rendered(migration, direction, cluster, MIGRATIONS):
            apply(catalog, statement)
        steps.append((f"after {migration.number:04d} {direction}", dict(catalog)))
    return steps


# --- single-node mode: the files, as written -----------------------------------------------------------------
def test_single_node_statements_are_the_files_as_written():
    for migration, direction, statements in scripts(None):
        assert statements == migration.statements(direction)
        path = migration.up if direction == "up" else migration.down
        text = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("--"))
        for statement in statements:
            assert statement in text and "ON CLUSTER" not in statement.upper()


class Recorder:
    """A store that records what it is told; ``tables``: what system.tables lists; ``done``: applied numbers."""

    def __init__(self, tables=(), done=()):
        self.tables, self.done, self.commands, self.inserts = list(tables), list(done), [], []

    def query(self, sql, params=None):
        if sql.startswith("EXISTS TABLE"):
            return QueryResult(["result"], ["UInt8"], [(1 if self.done else 0,)])
        if "system.tables" in sql:
            return QueryResult(["name"], ["String"], [(t,) for t in self.tables])
        return QueryResult(["number"], ["UInt32"], [(n,) for n in self.done])

    def command(self, sql, params=None):
        self.commands.append(sql)

    def insert(self, table, rows, columns):
        self.inserts.append((table, list(rows)))

    def close(self):
        pass


def test_single_node_migrate_runs_exactly_the_files():
    store = Recorder()
    migrate(store)
    expected = [SINGLE_NODE_SCHEMA_MIGRATIONS] + [s for m in MIGRATIONS for s in m.statements("up")]
    assert store.commands == expected
    assert store.inserts == [("schema_migrations", [(m.number, m.name)]) for m in MIGRATIONS]


# --- cluster mode, statement by statement -----------------------------------------------------------------------
def test_cluster_rendering_is_deterministic_and_only_names_the_cluster():
    first = [s for _, _, statements in scripts(CLUSTER) for s in statements]
    assert first == [s for _, _, statements in scripts(CLUSTER) for s in statements]
    other = [s for _, _, statements in scripts("other_cluster") for s in statements]
    assert [s.replace(CLUSTER, "other_cluster") for s in first] == other


def test_every_cluster_statement_is_on_cluster_and_every_merge_tree_replicated():
    for migration, direction, statements in scripts(CLUSTER):
        single = {flat(s) for s in migration.statements(direction)}
        for statement in statements:
            where = f"{migration.number:04d} {direction}: {flat(statement)[:100]}"
            if statement.startswith("INSERT"):
                assert "SETTINGS distributed_foreground_insert = 1" in statement, where
                continue
            assert re.search(rf"\bON CLUSTER {CLUSTER}\b", statement), where
            assert flat(statement) not in single, where  # nothing runs as written on a cluster
            for found in re.finditer(r"ENGINE = (\w*MergeTree)(\([^)]*\))?", statement):
                assert found[1].startswith("Replicated"), where
                assert (found[2] or "").startswith(f"({ZK_ARGS}"), where


def test_replicated_engines_keep_the_engines_own_arguments():
    for migration, direction, statements in scripts(CLUSTER):
        originals = [re.search(r"ENGINE\s*=\s*(\w*MergeTree)(?:\(([^)]*)\))?", s)
                     for s in migration.statements(direction)]
        replicated = [re.search(r"ENGINE = Replicated(\w*MergeTree)\(([^)]*)\)", s) for s in statements]
        assert [(m[1], m[2] or "") for m in originals if m] == \
               [(m[1], m[2].removeprefix(ZK_ARGS).removeprefix(", ")) for m in replicated if m]


def test_the_cluster_catalog_holds_after_every_step_up_and_down():
    for where, catalog in catalogs(CLUSTER):
        check_cluster_catalog(catalog, where)


def test_every_name_of_the_single_node_schema_keeps_its_meaning_in_the_cluster():
    for (where, single), (_, cluster) in zip(catalogs(None), catalogs(CLUSTER)):
        for name, create in single.items():
            kind = engine(create)
            assert name in cluster, f"{where}: {name} missing in cluster mode"
            if kind.endswith("MergeTree"):
                assert engine(cluster[name]) == "Distributed" and engine(cluster[f"{name}_local"]) == f"Replicated{kind}"
            else:
                assert engine(cluster[name]) == kind, f"{where}: {name}"
        assert set(cluster) == set(single) | {f"{n}_local" for n, c in single.items() if engine(c).endswith("MergeTree")}


def test_every_table_the_code_names_exists_under_that_name():
    sources = [*(ROOT / "shared" / "store" / "queries").glob("*.py"), ROOT / "shared" / "store" / "sinks.py"]
    code = "\n".join(p.read_text() for p in sources)
    named = set(re.findall(r"\bFROM (\w+)", code)) | set(re.findall(r"\binsert\(\s*\"(\w+)\"", code))
    named -= {"schema_migrations", "system"}
    final = catalogs(CLUSTER)[-1][1]
    assert named and named <= set(schema_objects()), named - set(schema_objects())
    for name in named:
        assert engine(final[name]) in ("Distributed", "View"), name


def test_materialized_views_read_and_write_local_tables():
    views = [s for _, _, statements in scripts(CLUSTER) for s in statements if "MATERIALIZED VIEW" in s
             and s.startswith("CREATE")]
    assert views  # 0003 up and 0005 down create one
    for view in views:
        assert " TO classifications_hourly_local AS" in view
        assert reads(flat(view)) == {"classifications_local"}


def test_column_changes_reach_the_local_and_the_distributed_table():
    up = rendered(MIGRATIONS[2], "up", CLUSTER, MIGRATIONS)
    assert [s.split()[2] for s in up[:2]] == ["classifications_local", "classifications"]  # added: local first
    assert all(s.endswith("ADD COLUMN IF NOT EXISTS replay_run LowCardinality(String) DEFAULT ''") for s in up[:2])
    down = [s for s in rendered(MIGRATIONS[2], "down", CLUSTER, MIGRATIONS) if s.startswith("ALTER")]
    assert [s.split()[2] for s in down] == ["classifications", "classifications_local"]  # dropped: Distributed first


def test_other_alters_truncates_and_deletes_go_to_the_local_table():
    renderer = ClusterRenderer(CLUSTER)
    renderer.replay(MIGRATIONS[0].statements("up"))
    assert renderer.render("ALTER TABLE tweets DELETE WHERE id = '1'") == [
        f"ALTER TABLE tweets_local ON CLUSTER {CLUSTER} DELETE WHERE id = '1'"]
    assert renderer.render("TRUNCATE TABLE IF EXISTS tweets") == [
        f"TRUNCATE TABLE IF EXISTS tweets_local ON CLUSTER {CLUSTER}"]
    assert renderer.render("DELETE FROM tweets WHERE id = '1'") == [
        f"DELETE FROM tweets_local ON CLUSTER {CLUSTER} WHERE id = '1'"]
    assert renderer.render("RENAME TABLE tweets TO tweet_archive") == [
        f"RENAME TABLE tweets_local TO tweet_archive_local ON CLUSTER {CLUSTER}",
        f"DROP TABLE tweets ON CLUSTER {CLUSTER} SYNC",
        f"CREATE TABLE tweet_archive ON CLUSTER {CLUSTER} AS tweet_archive_local ENGINE = Distributed({CLUSTER}, "
        "currentDatabase(), tweet_archive_local, cityHash64(id))"]


@pytest.mark.parametrize("statement, why", [
    ("CREATE TABLE t ENGINE = MergeTree ORDER BY a AS SELECT 1 AS a", "AS"),
    ("CREATE TABLE t AS tweets", "ENGINE"),
    ("CREATE MATERIALIZED VIEW v ENGINE = MergeTree ORDER BY a AS SELECT 1 AS a", "TO table"),
    ("ALTER TABLE tweets ADD COLUMN x String, MATERIALIZE INDEX i", "split it"),
    ("CREATE TABLE t ON CLUSTER c (a UInt8) ENGINE = MergeTree ORDER BY a", "already says ON CLUSTER"),
    ("SELECT 1", "no cluster rendering"),
    ("DROP TABLE tweets, classifications", "one object"),
])
def test_what_cannot_be_rendered_safely_is_refused(statement, why):
    renderer = ClusterRenderer(CLUSTER)
    renderer.replay(MIGRATIONS[0].statements("up"))
    with pytest.raises(ClusterRenderError, match=why):
        renderer.render(statement)


def test_a_sharding_key_override_must_be_a_prefix_of_the_sorting_key():
    with pytest.raises(ClusterRenderError, match="prefix"):
        ClusterRenderer(CLUSTER).render("CREATE TABLE classifications (a String, tweet_id String) "
                                        "ENGINE = ReplacingMergeTree ORDER BY (a, tweet_id)")


def test_schema_migrations_is_one_replicated_table_on_every_node():
    ddl = schema_migrations_ddl(CLUSTER)
    assert f"schema_migrations ON CLUSTER {CLUSTER} " in ddl
    engine_args = re.search(r"ReplicatedMergeTree\('([^']*)', '([^']*)'\)", ddl)
    assert "{shard}" not in engine_args[1]  # one Keeper path for the whole cluster: every node is a replica
    assert "{shard}" in engine_args[2] and "{replica}" in engine_args[2]  # replica names unique across shards


def test_cluster_migrate_creates_ON_CLUSTER_objects_and_heals_a_missing_distributed_table():
    store = Recorder()
    assert [m.number for m in migrate(store, cluster=CLUSTER)] == [m.number for m in MIGRATIONS]
    assert store.commands[0] == schema_migrations_ddl(CLUSTER)
    assert all(f"ON CLUSTER {CLUSTER}" in c for c in store.commands if not c.startswith("INSERT"))
    assert store.inserts == [("schema_migrations", [(m.number, m.name)]) for m in MIGRATIONS]

    final = catalogs(CLUSTER)[-1][1]
    store = Recorder(tables=[n for n in final if n != "tweets"], done=[m.number for m in MIGRATIONS])
    assert [m.number for m in migrate(store, cluster=CLUSTER)] == [1]
    assert [c.split(" AS ")[0].split("\n")[0] for c in store.commands] == [
        f"CREATE TABLE IF NOT EXISTS tweets_local ON CLUSTER {CLUSTER}", f"CREATE TABLE IF NOT EXISTS tweets ON CLUSTER {CLUSTER}"]
    complete = Recorder(tables=final, done=[m.number for m in MIGRATIONS])
    assert migrate(complete, cluster=CLUSTER) == [] and complete.commands == []  # nothing to do: no DDL at all


def test_the_cluster_setting_is_a_name_and_needs_a_server(monkeypatch):
    monkeypatch.setenv("CLICKHOUSE_URL", "http://u:p@ch:8123/db")
    monkeypatch.setenv("STANCESTREAM_CLICKHOUSE_CLUSTER", "stancestream")
    assert Settings().clickhouse_cluster == "stancestream"
    monkeypatch.setenv("STANCESTREAM_CLICKHOUSE_CLUSTER", "")
    assert Settings().clickhouse_cluster is None  # unset: one server
    monkeypatch.setenv("STANCESTREAM_CLICKHOUSE_CLUSTER", "x; DROP TABLE tweets")
    with pytest.raises(ValidationError):
        Settings()
    monkeypatch.delenv("CLICKHOUSE_URL")
    monkeypatch.setenv("STANCESTREAM_CLICKHOUSE_CLUSTER", "stancestream")
    with pytest.raises(ValidationError, match="needs CLICKHOUSE_URL"):
        Settings()
