"""Schema migrations against the session's embedded ClickHouse."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.store.migrations import applied, discover, migrate, rollback

pytestmark = pytest.mark.clickhouse

TMP_NUMBER = 9001  # far above the project's migrations: schema_migrations is shared with them
TMP_TABLE = "test_mig_tmp"


def table_exists(store, name: str) -> bool:
    return bool(store.query("EXISTS TABLE {name:Identifier}", {"name": name}).scalar())


def test_core_tables_exist(store):
    for table in ("tweets", "classifications", "dead_letters", "schema_migrations"):
        assert table_exists(store, table), table


def test_migrate_is_idempotent_and_records_every_migration(store):
    before = store.query("SELECT count() FROM schema_migrations").scalar()
    assert migrate(store) == []
    assert store.query("SELECT count() FROM schema_migrations").scalar() == before
    recorded = dict(store.query("SELECT number, any(name) FROM schema_migrations GROUP BY number").rows)
    counts = dict(store.query("SELECT number, count() FROM schema_migrations GROUP BY number").rows)
    for migration in discover():
        assert recorded.get(migration.number) == migration.name
        assert counts[migration.number] == 1


def write(directory: Path, name: str, sql: str) -> None:
    directory.mkdir(exist_ok=True)
    (directory / name).write_text(sql)


def test_apply_and_roll_back_a_migration(store, tmp_path):
    write(tmp_path, f"{TMP_NUMBER}_{TMP_TABLE}.up.sql",
          f"-- a temporary table\nCREATE TABLE {TMP_TABLE} (id UInt32, note String) ENGINE = MergeTree ORDER BY id;\n"
          f"INSERT INTO {TMP_TABLE} VALUES (1, 'one'), (2, 'two');\n")
    write(tmp_path, f"{TMP_NUMBER}_{TMP_TABLE}.down.sql", f"DROP TABLE {TMP_TABLE};\n")
    try:
        ran = migrate(store, tmp_path)
        assert [(m.number, m.name) for m in ran] == [(TMP_NUMBER, TMP_TABLE)]
        assert TMP_NUMBER in applied(store)
        assert store.query(f"SELECT count() FROM {TMP_TABLE}").scalar() == 2
        assert migrate(store, tmp_path) == []  # recorded: not applied twice
        assert store.query(f"SELECT count() FROM {TMP_TABLE}").scalar() == 2

        assert rollback(store, TMP_NUMBER, tmp_path) == []  # nothing above its own number
        reverted = rollback(store, TMP_NUMBER - 1, tmp_path)
        assert [m.number for m in reverted] == [TMP_NUMBER]
        assert not table_exists(store, TMP_TABLE)
        assert TMP_NUMBER not in applied(store)
        assert {m.number for m in discover()} <= applied(store)  # the project's migrations are untouched
        assert table_exists(store, "classifications")
    finally:
        store.command(f"DROP TABLE IF EXISTS {TMP_TABLE}")
        store.command("DELETE FROM schema_migrations WHERE number = {n:UInt32}", {"n": TMP_NUMBER})
