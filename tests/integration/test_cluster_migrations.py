"""Cluster mode against real ClickHouse code: every rendered statement goes through ClickHouse's parser, and the
rendered schema runs, migrations up, down and up again, on a one-shard cluster in chDB.

chDB cannot run a real cluster: ON CLUSTER needs the server's DDL worker and Keeper, and a ReplicatedMergeTree
insert waits forever on clickhouse-local's test keeper. So the one-shard run executes each statement the way each
node's DDL worker does (ON CLUSTER removed) and with the engines de-replicated; everything else is real:
Distributed tables over local tables (chDB with a ``remote_servers`` config: the shard is this process), the
materialized view fired through a Distributed insert, EXCHANGE and CREATE OR REPLACE of Distributed tables,
FINAL through a Distributed table, the project's own migrate/rollback, inserts and queries.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = "stancestream"


def _scripts(cluster):
    from shared.store.migrations import discover, rendered

    migrations = discover()
    for migration in migrations:
        for direction in ("up", "down"):
            yield f"{migration.number:04d} {direction}", rendered(migration, direction, cluster, migrations)


@pytest.mark.clickhouse
@pytest.mark.parametrize("cluster", [None, CLUSTER])
def test_every_rendered_statement_parses(store, cluster):
    from shared.store.cluster import schema_migrations_ddl

    count = 0
    for where, statements in _scripts(cluster):
        for statement in statements + ([schema_migrations_ddl(CLUSTER)] if cluster else []):
            canonical = store.query("SELECT formatQuerySingleLine({s:String})", {"s": statement}).scalar()
            count += 1
            if cluster is None:
                assert " ON CLUSTER " not in canonical, where
            elif canonical.startswith("INSERT"):  # the setting belongs to the INSERT, not to its SELECT
                assert re.match(r"INSERT INTO \w+ (\([^)]*\) )?SETTINGS distributed_foreground_insert = 1 SELECT ",
                                canonical), f"{where}: {canonical}"
            else:
                assert re.search(rf"\bON CLUSTER {CLUSTER}\b", canonical), f"{where}: {canonical}"
                for engine in re.findall(r"ENGINE = (\w*MergeTree)\b", canonical):
                    assert engine.startswith("Replicated"), f"{where}: {canonical}"
    assert count > (60 if cluster else 30)


@pytest.mark.clickhouse
def test_the_parser_sees_views_over_distributed_and_materialized_views_over_local_tables(store):
    seen = {"view": 0, "materialized": 0}
    for where, statements in _scripts(CLUSTER):
        for statement in statements:
            if not re.match(r"CREATE (MATERIALIZED )?VIEW", statement):
                continue
            ast = "\n".join(row[0] for row in store.query(f"EXPLAIN AST {statement}").rows)
            tables = set(re.findall(r"TableIdentifier (\w+)", ast))
            if "MATERIALIZED" in statement:
                seen["materialized"] += 1
                canonical = store.query("SELECT formatQuerySingleLine({s:String})", {"s": statement}).scalar()
                assert " TO classifications_hourly_local AS " in canonical, where
                assert tables == {"classifications_local"}, f"{where}: reads {tables}"
            else:
                seen["view"] += 1
                assert tables == {"classifications"}, f"{where}: reads {tables}"
    # views: latest_classifications (0003 up), classifications_hourly (0005 up); the hourly MV: 0003 up, 0005 down
    assert seen == {"view": 2, "materialized": 2}


@pytest.mark.clickhouse
def test_the_rendered_schema_runs_on_a_one_shard_cluster(tmp_path):
    result = subprocess.run([sys.executable, __file__, str(tmp_path)], capture_output=True, text=True, timeout=300,
                            cwd=ROOT, env=os.environ | {"PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])

    assert seen["migrated"] == [1, 2, 3, 4, 5, 6, 7]
    for table in ("tweets", "classifications", "dead_letters", "labels", "holdout", "adapters", "adapter_runs",
                  "replay_runs", "label_shares", "drift"):  # under the names the code uses: a Distributed table over the local one
        assert seen["engines"][table].startswith(f"Distributed('{CLUSTER}', 'default', '{table}_local', "), table
        assert "MergeTree" in seen["engines"][f"{table}_local"], table
    assert seen["engines"]["classifications"].endswith("cityHash64(tweet_id))")
    # redeliveries and a second adapter version: deduplicated through the Distributed table, views exact
    assert (seen["written"], seen["final"], seen["hourly_view"], seen["latest"]) == (22, 15, 15, 10)
    assert seen["live"] == 10 and seen["dead_letters"] == 3

    assert seen["rolled_back"] == [7, 6, 5, 4]
    assert seen["hourly_engine_after_rollback"].startswith(f"Distributed('{CLUSTER}', 'default', "
                                                           "'classifications_hourly_local'")
    assert seen["hourly_rebuilt"] == 15  # from classifications FINAL, through both Distributed tables
    assert seen["hourly_after_rollback"] == 22  # the materialized view on the local table counted the 7 new rows
    assert seen["dead_letters_after_rollback"] == 3  # copied through the EXCHANGE of the local tables
    assert seen["rolled_back_further"] == [3]
    assert seen["replay_run_after_rollback"] == []  # dropped from the local and the Distributed table
    assert seen["reapplied"] == [3, 4, 5, 6, 7]
    # the old key could not keep the feeder's origin (l:1, offset -1 -> 0): what 0004 down says it loses
    assert seen["dead_letters_reapplied"] == [["kafka:tweets.raw:0:0"], ["kafka:tweets.raw:0:1"],
                                              ["kafka:tweets.raw:0:2"]]
    assert seen["final_reapplied"] == 22 and seen["hourly_view_reapplied"] == 22

    assert seen["healed"] == [1]  # the Distributed `tweets` was dropped: re-created over the data still there
    assert seen["tweets_after_heal"] == 10


# --- the one-shard run, in a process of its own: chDB opens one engine (and one config) per process ------------
def _one_shard_run(root: Path) -> dict:
    import clickhouse_connect

    from shared.store.clickhouse import ClickHouseStore
    from shared.store.migrations import migrate, rollback
    from shared.store.queries.feeds import StoredFeedOutcomes
    from shared.store.sinks import CLASSIFICATION_COLUMNS, DEAD_LETTER_COLUMNS, TWEET_COLUMNS

    config = root / "config.xml"
    # is_local: the one replica is this process (localhost at the configured tcp_port), so no network is needed.
    config.write_text(f"<clickhouse><tcp_port>9000</tcp_port><remote_servers><{CLUSTER}><shard><replica>"
                      f"<host>localhost</host><port>9000</port></replica></shard></{CLUSTER}></remote_servers>"
                      "</clickhouse>")
    client = clickhouse_connect.get_client(interface="chdb", path=str(root / "data"),
                                           chdb_options={"config-file": str(config)})
    real = ClickHouseStore(client, "one-shard cluster")

    class Node:
        """What a node's DDL worker runs for each ON CLUSTER statement, minus replication (see the docstring)."""

        def command(self, sql, params=None):
            sql = re.sub(rf"\s+ON CLUSTER {CLUSTER}\b", "", sql)
            real.command(re.sub(r"Replicated(\w*MergeTree)\('[^']*', '[^']*'(?:, )?", r"\1(", sql), params)

        def query(self, sql, params=None):
            return real.query(sql, params)

        def insert(self, table, rows, columns):
            real.insert(table, rows, columns)

        def close(self):
            real.close()

    node = Node()
    seen: dict = {}

    def scalar(sql):
        return real.query(sql).scalar()

    def engines():
        return dict(real.query("SELECT name, engine_full FROM system.tables WHERE database = currentDatabase()").rows)

    t0 = datetime(2026, 11, 5, 9, 10, tzinfo=timezone.utc)

    def classifications(ids, version, at, run=None):
        row = lambda n, i: (i, version, "tiny@0", "en", 0.9, "immigration", "anti", "anti-immigration", 0.1, 0.7, 0.1,
                            0.1, t0 + timedelta(minutes=40 * n), at, 12.0) + (() if run is None else (run,))
        columns = CLASSIFICATION_COLUMNS if run is not None else CLASSIFICATION_COLUMNS[:-1]
        node.insert("classifications", [row(n, i) for n, i in enumerate(ids)], columns)

    seen["migrated"] = [m.number for m in migrate(node, cluster=CLUSTER)]
    seen["engines"] = engines()
    ids = [f"r{i}" for i in range(10)]
    node.insert("tweets", [(i, f"text {i}", t0, "en", None, None, None, t0) for i in ids], TWEET_COLUMNS)
    classifications(ids, "v1", t0, run="")
    classifications(ids[3:], "v1", t0 + timedelta(hours=1), run="")  # a redelivered batch
    classifications(ids[:5], "v2", t0 + timedelta(hours=2), run="rp")  # a replay with another version
    letters = [("tweets.raw", 0, n, "bad", "{", t0, origin, 1, "x") for n, origin in
               ((1, "kafka:tweets.raw:0:1"), (2, "kafka:tweets.raw:0:2"), (-1, "l:1"), (2, "kafka:tweets.raw:0:2"))]
    node.insert("dead_letters", letters, DEAD_LETTER_COLUMNS)
    seen["written"] = scalar("SELECT count() FROM classifications")
    seen["final"] = scalar("SELECT count() FROM classifications FINAL")
    seen["hourly_view"] = scalar("SELECT sum(tweets) FROM classifications_hourly")
    seen["latest"] = scalar("SELECT count() FROM latest_classifications")
    seen["live"] = len(StoredFeedOutcomes(real).live_texts(ids))  # an IN subquery over two Distributed tables
    seen["dead_letters"] = scalar("SELECT count() FROM dead_letters FINAL")

    seen["rolled_back"] = [m.number for m in rollback(node, 3, cluster=CLUSTER)]
    seen["hourly_engine_after_rollback"] = engines()["classifications_hourly"]
    seen["hourly_rebuilt"] = scalar("SELECT sum(tweets) FROM classifications_hourly")  # 0005 down's INSERT
    classifications(ids[:7], "v3", t0 + timedelta(hours=3), run="")
    seen["hourly_after_rollback"] = scalar("SELECT sum(tweets) FROM classifications_hourly")
    seen["dead_letters_after_rollback"] = scalar("SELECT count() FROM dead_letters FINAL")
    seen["rolled_back_further"] = [m.number for m in rollback(node, 2, cluster=CLUSTER)]
    seen["replay_run_after_rollback"] = [r[0] for r in real.query(
        "SELECT table FROM system.columns WHERE database = currentDatabase() AND name = 'replay_run'").rows]

    seen["reapplied"] = [m.number for m in migrate(node, cluster=CLUSTER)]
    seen["dead_letters_reapplied"] = [list(r) for r in real.query(
        "SELECT origin FROM dead_letters FINAL ORDER BY origin").rows]
    seen["final_reapplied"] = scalar("SELECT count() FROM classifications FINAL")
    seen["hourly_view_reapplied"] = scalar("SELECT sum(tweets) FROM classifications_hourly")

    real.command("DROP TABLE tweets SYNC")  # the Distributed table only: the rows stay in tweets_local
    seen["healed"] = [m.number for m in migrate(node, cluster=CLUSTER)]
    seen["tweets_after_heal"] = scalar("SELECT count() FROM tweets FINAL")
    return seen


if __name__ == "__main__":
    print(json.dumps(_one_shard_run(Path(sys.argv[1])), default=str))
