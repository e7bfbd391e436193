"""Numbered, reversible DDL migrations from ``schemas/migrations`` (``NNNN_name.up.sql`` / ``.down.sql``).

Applied in order at start-up; ``schema_migrations`` records what ran, so applying is idempotent. A table or
view that an applied migration created but that is gone (``DROP TABLE dead_letters``) is re-created: its
CREATE and the later ALTERs of it run again, with a warning. When everything is in place, ``migrate`` runs
no DDL at all, so a user with only SELECT and INSERT rights (the compose workers) can call it.

With a ``cluster`` (``STANCESTREAM_CLICKHOUSE_CLUSTER``) the same files are rendered for it by
``shared.store.cluster`` (replicated local tables and Distributed tables, all ON CLUSTER); without one, the
statements run exactly as written.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from shared.errors import StancestreamError
from shared.store.base import Store
from shared.store.cluster import ClusterRenderer, schema_migrations_ddl

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "schemas" / "migrations"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.(up|down)\.sql$")
_OBJECT = r"(?:IF\s+(?:NOT\s+)?EXISTS\s+)?((?:[`\"]?\w+[`\"]?\.)?[`\"]?\w+[`\"]?)"
_CREATES = re.compile(r"^CREATE\s+(?:OR\s+REPLACE\s+)?(?:TABLE|VIEW|MATERIALIZED\s+VIEW|DICTIONARY)\s+" + _OBJECT,
                      re.IGNORECASE)
_DROPS = re.compile(r"^DROP\s+(?:TABLE|VIEW|DICTIONARY)\s+" + _OBJECT, re.IGNORECASE)
_ALTERS = re.compile(r"^ALTER\s+TABLE\s+" + _OBJECT, re.IGNORECASE)
_EXCHANGES = re.compile(r"^EXCHANGE\s+TABLES\s+" + _OBJECT + r"\s+AND\s+" + _OBJECT, re.IGNORECASE)
_RENAMES = re.compile(r"^RENAME\s+TABLE\s+(.+)$", re.IGNORECASE | re.DOTALL)
_SCHEMA_MIGRATIONS = ("CREATE TABLE IF NOT EXISTS schema_migrations (number UInt32, name String, applied_at DateTime"
                      " DEFAULT now()) ENGINE = MergeTree ORDER BY number")
log = logging.getLogger(__name__)


class MigrationError(StancestreamError):
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


def applied(store: Store, cluster: str | None = None) -> set[int]:
    if not store.query("EXISTS TABLE schema_migrations").scalar():  # no DDL when it exists: see the docstring
        store.command(schema_migrations_ddl(cluster) if cluster else _SCHEMA_MIGRATIONS)
    return {row[0] for row in store.query("SELECT number FROM schema_migrations").rows}


def migrate(store: Store, directory: Path = MIGRATIONS_DIR, cluster: str | None = None) -> list[Migration]:
    """Re-create what applied migrations created but is missing, then apply every migration not yet recorded.

    Returns the migrations that ran now, in full or to re-create something."""
    done = applied(store, cluster)
    migrations = discover(directory)
    ran = _heal(store, [m for m in migrations if m.number in done], cluster)
    for migration in migrations:
        if migration.number in done:
            continue
        for statement in rendered(migration, "up", cluster, migrations):
            store.command(statement)
        store.insert("schema_migrations", [(migration.number, migration.name)], ["number", "name"])
        ran.append(migration)
    return ran


def rendered(migration: Migration, direction: str = "up", cluster: str | None = None,
             migrations: list[Migration] | None = None) -> list[str]:
    """The statements ``migration`` runs going ``direction``: as written, or rendered for ``cluster`` knowing what
    the migrations before it (going down: and it itself) created. ``migrations``: the whole sequence (default:
    the project's)."""
    if cluster is None:
        return migration.statements(direction)
    renderer = ClusterRenderer(cluster)
    for earlier in discover() if migrations is None else migrations:
        if earlier.number < migration.number or (direction == "down" and earlier.number == migration.number):
            renderer.replay(earlier.statements("up"))
    return renderer.render_all(migration.statements(direction))


def schema_objects(migrations: list[Migration] | None = None) -> dict[str, list[tuple[Migration, str]]]:
    """The tables and views ``migrations`` (default: all) leave behind, each with the statements that shape it
    now: its CREATE and the ALTERs after it, under the name it has now. DROP, RENAME and EXCHANGE are followed
    (a table rebuilt as ``t_new`` and exchanged with ``t`` is re-created from ``t_new``'s CREATE)."""
    objects: dict[str, list[tuple[Migration, str]]] = {}
    for migration in discover() if migrations is None else migrations:
        for statement in migration.statements("up"):
            if match := _CREATES.match(statement):
                objects[_bare(match[1])] = [(migration, statement)]
            elif match := _ALTERS.match(statement):
                objects.get(_bare(match[1]), []).append((migration, statement))
            elif match := _DROPS.match(statement):
                objects.pop(_bare(match[1]), None)
            elif match := _EXCHANGES.match(statement):
                a, b = _bare(match[1]), _bare(match[2])
                objects[a], objects[b] = objects.get(b, []), objects.get(a, [])
            elif match := _RENAMES.match(statement):
                for pair in match[1].split(","):
                    old, _, new = pair.partition(" TO ")
                    objects[_bare(new.strip())] = objects.pop(_bare(old.strip()), [])
    return {name: steps for name, steps in objects.items() if steps}


def _heal(store: Store, done: list[Migration], cluster: str | None = None) -> list[Migration]:
    """Re-create each missing object from its statements, renamed to the name it has now.

    In cluster mode a sharded table is missing when either of its tables is missing on the node ``store`` talks
    to; its statements are rendered (CREATE … IF NOT EXISTS, ON CLUSTER), so only what is missing is made."""
    expected = schema_objects(done)
    existing = {row[0] for row in store.query("SELECT name FROM system.tables WHERE database = currentDatabase()").rows}
    renderer = None
    if cluster is not None:
        renderer = ClusterRenderer(cluster)
        for migration in done:
            renderer.replay(migration.statements("up"))
    missing = sorted(name for name in expected
                     if any(table not in existing for table in (renderer.physical_names(name) if renderer else [name])))
    if not missing:
        return []
    healed: list[Migration] = []
    for name in missing:
        for migration, statement in expected[name]:
            for command in renderer.render(_renamed(statement, name)) if renderer else [_renamed(statement, name)]:
                store.command(command)
            if migration not in healed:
                healed.append(migration)
    log.warning("re-created %s: missing although migrations %s had created them", ", ".join(missing),
                ", ".join(f"{m.number:04d}_{m.name}" for m in sorted(healed, key=lambda m: m.number)))
    return sorted(healed, key=lambda m: m.number)


def _renamed(statement: str, name: str) -> str:
    """``statement`` (a CREATE or an ALTER) aimed at ``name``; a CREATE also gets IF NOT EXISTS."""
    match = _CREATES.match(statement) or _ALTERS.match(statement)
    head = statement[:match.start(1)]
    if statement.upper().startswith("CREATE") and not re.search(r"IF\s+NOT\s+EXISTS\s*$", head, re.IGNORECASE):
        head += "IF NOT EXISTS "
    return head + name + statement[match.end(1):]


def _bare(name: str) -> str:
    return name.split(".")[-1].strip("`\"")


def rollback(store: Store, to: int, directory: Path = MIGRATIONS_DIR, cluster: str | None = None) -> list[Migration]:
    """Revert applied migrations numbered above ``to``, newest first."""
    done = applied(store, cluster)
    reverted = []
    migrations = discover(directory)
    for migration in reversed(migrations):
        if migration.number > to and migration.number in done:
            for statement in rendered(migration, "down", cluster, migrations):
                store.command(statement)
            store.command("DELETE FROM schema_migrations WHERE number = {n:UInt32}", {"n": migration.number})
            reverted.append(migration)
    return reverted
