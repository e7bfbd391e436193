"""Numbered, reversible DDL migrations from ``schemas/migrations`` (``NNNN_name.up.sql`` / ``.down.sql``).

Applied in order at start-up; ``schema_migrations`` records what ran, so applying is idempotent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from shared.store.clickhouse import Store

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "schemas" / "migrations"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.(up|down)\.sql$")


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    number: int
    name: str
    up: Path
    down: Path | None

    def statements(self, direction: str = "up") -> list[str]:
        path = self.up if direction == "up" else self.down
        if path is None:
            raise MigrationError(f"migration {self.number:04d}_{self.name} has no down script")
        text = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("--"))
        return [s.strip() for s in text.split(";") if s.strip()]


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found: dict[int, dict[str, object]] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f"unexpected file in migrations: {path.name}")
        number, name, direction = int(match[1]), match[2], match[3]
        entry = found.setdefault(number, {"name": name})
        if entry["name"] != name or direction in entry:
            raise MigrationError(f"duplicate migration number {number:04d}")
        entry[direction] = path
    if any("up" not in e for e in found.values()):
        raise MigrationError("every migration needs an .up.sql")
    return [Migration(n, e["name"], e["up"], e.get("down")) for n, e in sorted(found.items())]  # type: ignore[arg-type]


def applied(store: Store) -> set[int]:
    store.command(
        "CREATE TABLE IF NOT EXISTS schema_migrations (number UInt32, name String, applied_at DateTime DEFAULT now())"
        " ENGINE = MergeTree ORDER BY number"
    )
    return {row[0] for row in store.query("SELECT number FROM schema_migrations").rows}


def migrate(store: Store, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Apply every migration not yet recorded; return the ones applied now."""
    done = applied(store)
    ran = []
    for migration in discover(directory):
        if migration.number in done:
            continue
        for statement in migration.statements("up"):
            store.command(statement)
        store.insert("schema_migrations", [(migration.number, migration.name)], ["number", "name"])
        ran.append(migration)
    return ran


def rollback(store: Store, to: int, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Revert applied migrations numbered above ``to``, newest first."""
    done = applied(store)
    reverted = []
    for migration in reversed(discover(directory)):
        if migration.number > to and migration.number in done:
            for statement in migration.statements("down"):
                store.command(statement)
            store.command("DELETE FROM schema_migrations WHERE number = {n:UInt32}", {"n": migration.number})
            reverted.append(migration)
    return reverted
