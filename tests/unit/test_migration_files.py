"""Migration files: discovery, numbering and statement splitting (no ClickHouse needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.store.migrations import MigrationError, discover


def test_project_migrations_are_reversible():
    migrations = discover()
    assert migrations, "no migrations found"
    for migration in migrations:
        assert migration.down is not None, f"{migration.number:04d}_{migration.name} has no down script"
        assert migration.statements("up") and migration.statements("down")


def write(directory: Path, name: str, sql: str) -> None:
    directory.mkdir(exist_ok=True)
    (directory / name).write_text(sql)


def test_duplicate_numbers_are_rejected(tmp_path):
    write(tmp_path, "0001_first.up.sql", "SELECT 1;")
    write(tmp_path, "0001_second.up.sql", "SELECT 2;")
    with pytest.raises(MigrationError, match="duplicate"):
        discover(tmp_path)


def test_unexpected_file_name_is_rejected(tmp_path):
    write(tmp_path, "1_no_padding.up.sql", "SELECT 1;")
    with pytest.raises(MigrationError, match="unexpected"):
        discover(tmp_path)


def test_down_without_up_is_rejected(tmp_path):
    write(tmp_path, "0002_orphan.down.sql", "SELECT 1;")
    with pytest.raises(MigrationError, match="up"):
        discover(tmp_path)


def test_statements_skip_comments_and_split_on_semicolons(tmp_path):
    write(tmp_path, "0003_multi.up.sql", "-- a comment; with a semicolon\nSELECT 1;\n\n  SELECT 2 ;\n;\n")
    (migration,) = discover(tmp_path)
    assert migration.statements("up") == ["SELECT 1", "SELECT 2"]
    with pytest.raises(MigrationError, match="no down"):
        migration.statements("down")
