"""What ad-hoc SQL may do: the one policy behind ``stancestream sql`` and the query gateway's ``POST /query``.

ClickHouse itself decides what a statement is. ``formatQuerySingleLine`` (the SQL travels as a parameter, so
nothing runs) parses it, refuses a second statement and returns the canonical text, without comments and with
keywords in one spelling; ``EXPLAIN AST`` of that text names the statement kind and every function and table
function in it, however deeply nested (subqueries, WITH, UNION, lambdas, engine clauses). What runs is that
canonical text, so what was checked is what runs.

* Read mode (the default) runs in a second session opened with ``readonly=1``: ClickHouse refuses writes, DDL,
  SET and SETTINGS there on its own, whatever the checks below miss.
* Write mode (``--write`` / ``"write": true``) adds INSERT … SELECT, CREATE TABLE/VIEW, ALTER, DELETE, UPDATE,
  DROP, TRUNCATE, RENAME and OPTIMIZE.
* Both modes refuse whatever reaches outside the database: table functions and table engines other than a
  few local ones (file, url, s3, remote, mysql, executable, python, …), the scalar ``file()``,
  ``INTO OUTFILE``, ``FROM INFILE``, SYSTEM, ATTACH/DETACH, BACKUP/RESTORE, SET/USE, dictionaries, databases,
  users and grants, functions, custom disks; and INSERT with inline data (chDB runs what follows the data as
  another statement: ``VALUES (1); DROP TABLE t``).
* Through the gateway of a running stack, the tables the stack needs are ``protected`` from what cannot be
  undone: DROP, TRUNCATE and ALTERs other than additions, DELETE and UPDATE are refused even in write mode.
  RENAME/EXCHANGE stay allowed (undone by renaming back; fault drills use them), and a table that is gone
  anyway is re-created by the migrations when the stack starts.
"""

from __future__ import annotations

import re
import threading
from typing import Any, Iterable

from shared.store.base import QueryRefused, QueryResult, Store, StoreError
from shared.store.gateway_client import GatewayStore


# Local, side-effect-free table functions and table engines; every other one ClickHouse knows is refused.
SAFE_TABLE_FUNCTIONS = frozenset({
    "numbers", "numbers_mt", "zeros", "zeros_mt", "generate_series", "generateseries", "primes", "values",
    "sqlstandardvalues", "null", "view", "viewifpermitted", "merge", "generaterandom", "format",
    "mergetreeindex", "mergetreeprojection",
})
SAFE_TABLE_ENGINES = frozenset({
    "mergetree", "replacingmergetree", "summingmergetree", "aggregatingmergetree", "collapsingmergetree",
    "versionedcollapsingmergetree", "graphitemergetree", "coalescingmergetree", "memory", "log", "tinylog",
    "stripelog", "null", "set", "join", "buffer", "view", "materializedview", "merge", "generaterandom",
})
# Scalar functions that read outside the database (file('/etc/passwd') returns the file).
UNSAFE_SCALAR_FUNCTIONS = frozenset({"file"})
# Refused even if a ClickHouse version stops listing them.
_KNOWN_UNSAFE = frozenset({
    "file", "filecluster", "filesystem", "url", "urlcluster", "s3", "s3cluster", "gcs", "oss", "cosn", "hdfs",
    "hdfscluster", "remote", "remotesecure", "cluster", "clusterallreplicas", "mysql", "postgresql", "jdbc",
    "odbc", "executable", "executablepool", "input", "azureblobstorage", "azureblobstoragecluster", "deltalake",
    "iceberg", "hudi", "mongodb", "redis", "sqlite", "python", "dictionary", "kafka", "distributed", "paimon",
    "ytsaurus", "arrowstream", "bigquery", "eval", "loop", "prometheusquery", "prometheusqueryrange",
})

_NOT_ACCEPTED = ("is not accepted here: only SELECT, SHOW, DESCRIBE, EXPLAIN and, with --write, INSERT … SELECT, "
                 "CREATE TABLE/VIEW, ALTER, DELETE, UPDATE, DROP, TRUNCATE, RENAME, OPTIMIZE")
_FIRST_WORDS = {"SELECT", "WITH", "(", "FROM", "SHOW", "DESCRIBE", "DESC", "EXISTS", "EXPLAIN", "INSERT", "CREATE",
                "REPLACE", "ALTER", "DELETE", "UPDATE", "DROP", "TRUNCATE", "RENAME", "EXCHANGE", "OPTIMIZE"}
_READ_KINDS = {"SelectWithUnionQuery", "SelectIntersectExceptQuery", "SelectQuery", "DescribeQuery"}
_WRITE_KINDS = {"InsertQuery", "CreateQuery", "AlterQuery", "DeleteQuery", "UpdateQuery", "DropQuery",
                "TruncateQuery", "Rename", "OptimizeQuery"}
_CREATABLE = re.compile(r"^(CREATE (OR REPLACE )?|REPLACE )(TEMPORARY )?(TABLE|VIEW|MATERIALIZED VIEW) ")
_WHOLE_DATABASE = re.compile(r"^\w+ (DATABASE|ALL TABLES)\b")
_CUSTOM_STORAGE = re.compile(r"\b(disk|storage_policy)\s*=|\bTO (DISK|VOLUME)\b", re.IGNORECASE)
_OUTFILE = re.compile(r"\bINTO OUTFILE\b", re.IGNORECASE)
_INFILE = re.compile(r"\bFROM INFILE\b", re.IGNORECASE)
_UNSAFE_ALTERS = ("FETCH_", "FREEZE", "UNFREEZE")
# ALTERs of the running stack's tables that destroy nothing it needs: additions and row changes.
_PROTECTED_TABLE_ALTERS = {"ADD_COLUMN", "DELETE", "UPDATE", "ADD_INDEX", "MATERIALIZE_INDEX", "COMMENT_COLUMN",
                           "MODIFY_COMMENT"}

_unsafe_names: frozenset[str] | None = None
_unsafe_lock = threading.Lock()


def run_adhoc(store: Store, sql: str, params: dict[str, Any] | None = None, *, write: bool = False,
              protected: Iterable[str] = ()) -> QueryResult:
    """Run SQL that a person (or another process through the gateway) typed, under the policy above.

    Through a running stack's gateway the stack's process applies it; on a store opened here, it applies here.
    """
    if isinstance(store, GatewayStore):
        return store.query(sql, params, write=write)
    reader = store.read_only()  # type: ignore[attr-defined]
    statement = checked_statement(store if write else reader, sql, params, write=write,
                                  protected=frozenset(protected))
    return (store if write else reader).query(statement, params)


def checked_statement(store: Store, sql: str, params: dict[str, Any] | None, *, write: bool,
                      protected: frozenset[str] = frozenset()) -> str:
    """ClickHouse's canonical text of ``sql`` if the policy allows it; QueryRefused (or StoreError) otherwise."""
    try:
        canonical = store.query("SELECT formatQuerySingleLine({sql:String})", {"sql": sql}).scalar()
    except StoreError as exc:
        if "Multi-statements" in str(exc):
            raise QueryRefused("one statement at a time: remove the ';' and what follows it") from exc
        raise StoreError(_first_line(str(exc))) from exc
    if _OUTFILE.search(canonical):
        raise QueryRefused("INTO OUTFILE writes a file on the store's machine: not accepted here; "
                           "use --format csv and redirect the output instead")
    if _INFILE.search(canonical):
        raise QueryRefused("FROM INFILE reads a file on the store's machine: not accepted here")
    first_word = re.match(r"\(|\w*", canonical)[0].upper()
    if first_word not in _FIRST_WORDS:  # e.g. SYSTEM, SET, USE, KILL, GRANT, ATTACH, BACKUP: never parsed further
        raise QueryRefused(f"{_verb(canonical)} {_NOT_ACCEPTED}")
    lines = [row[0] for row in store.query(f"EXPLAIN AST {canonical}", params).rows]
    _check_kind(lines, canonical, write, protected)
    _check_functions(store, lines)
    return canonical


def _verb(canonical: str) -> str:
    return " ".join(canonical.split()[:2])


def _check_kind(lines: list[str], canonical: str, write: bool, protected: frozenset[str]) -> None:
    kind = lines[0].split()[0] if lines else ""
    verb = _verb(canonical)
    if kind == "Explain":  # EXPLAIN runs nothing; still, only reads may be explained
        inner = lines[1].split()[0] if len(lines) > 1 else ""
        if inner not in _READ_KINDS:
            raise QueryRefused("EXPLAIN is accepted for SELECT only")
        return
    if kind in _READ_KINDS or kind.startswith(("Show", "Exists")):
        return
    if kind not in _WRITE_KINDS:
        raise QueryRefused(f"{verb} {_NOT_ACCEPTED}")
    if not write:
        raise QueryRefused(f"{verb} changes the store; read-only by default: add --write to run it")
    if kind in ("DropQuery", "TruncateQuery", "Rename") and _WHOLE_DATABASE.match(canonical):
        raise QueryRefused(f"{verb} is not accepted here: it names a whole database")
    if kind == "CreateQuery" and not _CREATABLE.match(canonical):
        raise QueryRefused(f"{verb} is not accepted here: only CREATE TABLE and CREATE [MATERIALIZED] VIEW")
    if kind in ("CreateQuery", "AlterQuery") and _CUSTOM_STORAGE.search(canonical):
        raise QueryRefused("custom disks and storage policies are not accepted here")
    if kind == "InsertQuery" and not any(_depth(line) == 1 and line.split()[0].startswith("Select")
                                         for line in lines[1:]):
        raise QueryRefused("INSERT with inline data is not accepted here (data can hide a second statement): "
                           "write INSERT INTO t SELECT … (e.g. FROM values('a UInt8, b String', (1, 'x')))")
    commands = [line.split()[1] for line in lines if line.split()[0] == "AlterCommand"]
    if any(c.startswith(_UNSAFE_ALTERS) for c in commands):
        raise QueryRefused("ALTER … FETCH/FREEZE/UNFREEZE reaches outside the table: not accepted here")
    targets = {_name(line) for line in lines[1:]
               if (_depth(line) == 1 and line.split()[0] == "Identifier") or line.split()[0] == "TableIdentifier"}
    hit = sorted(targets & protected)
    if hit and (kind in ("DropQuery", "TruncateQuery")
                or (kind == "AlterQuery" and not set(commands) <= _PROTECTED_TABLE_ALTERS)):
        raise QueryRefused(f"{verb} of {hit[0]} would destroy data the running stack needs: stop "
                           "`stancestream run` first")


def _check_functions(store: Store, lines: list[str]) -> None:
    unsafe = _unsafe_function_names(store)
    for line in lines:
        parts = line.split()
        if parts[0] in ("Function", "FunctionWithKeyValueArguments") and len(parts) > 1:
            name = parts[1].lower()
            if name in unsafe or parts[0] == "FunctionWithKeyValueArguments":
                raise QueryRefused(f"{parts[1]}() reaches the file system, the network or other servers: "
                                   "not accepted here")


def _unsafe_function_names(store: Store) -> frozenset[str]:
    """Every table function and table engine ClickHouse knows except the local ones, lower-cased (cached)."""
    global _unsafe_names
    with _unsafe_lock:
        if _unsafe_names is None:
            known = {row[0].lower() for row in store.query(
                "SELECT name FROM system.table_functions UNION ALL SELECT name FROM system.table_engines").rows}
            _unsafe_names = frozenset(
                (known | _KNOWN_UNSAFE) - SAFE_TABLE_FUNCTIONS - SAFE_TABLE_ENGINES | UNSAFE_SCALAR_FUNCTIONS)
        return _unsafe_names


def _depth(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _name(line: str) -> str:
    """The table of an ``Identifier db.t`` / ``TableIdentifier t`` line, without database or quotes."""
    return line.split()[1].split(".")[-1].strip("`\"")


def _first_line(message: str) -> str:
    return message.strip().splitlines()[0] if message.strip() else message
