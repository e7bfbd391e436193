"""Cluster mode: the numbered migrations rendered for a ClickHouse cluster (``STANCESTREAM_CLICKHOUSE_CLUSTER``).

The files under ``schemas/migrations`` are written for one server, and that is how they run when no cluster is
set: this module is then never used. For a cluster (a ``remote_servers`` name) each statement is rendered, in
order, by :class:`ClusterRenderer`, which keeps track of what the earlier statements created:

* ``CREATE TABLE t … ENGINE = XMergeTree(args)`` becomes two statements, both ``ON CLUSTER``:
  ``t_local`` with ``ReplicatedXMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}', args)``
  (the same columns, keys and settings; the engine's own arguments, e.g. a version column, kept last), and
  ``t AS t_local ENGINE = Distributed(cluster, currentDatabase(), t_local, <sharding key>)`` under the name the
  code and the analysts use. Every node holds both; reads of ``t`` fan out to every shard, inserts into ``t``
  go to the shard the key picks. (ON CLUSTER replaces ``currentDatabase()`` by the initiator's database.)
* ``CREATE MATERIALIZED VIEW`` reads the *local* tables and writes ``TO`` the target's local table: a
  Distributed insert lands in the local table of one shard, and that insert is what fires the view there.
  Readers use the target's Distributed table.
* ``CREATE VIEW`` is created ON CLUSTER unchanged: it reads the Distributed names, so it sees every shard.
* ``ALTER TABLE t`` of a sharded table: column changes go to ``t_local`` and to ``t`` (a Distributed table has
  its own column list), additions to the local table first, removals to the Distributed table first, so
  ``t`` never names a column its shards lack; every other command (mutations, indexes, TTL, settings) goes
  to ``t_local`` only.
* ``DROP`` drops the Distributed table, then the local one (``SYNC``: a dropped replicated table frees its
  Keeper path at once, so a later migration, or a rollback and re-apply, can create the same name again).
* ``EXCHANGE TABLES a AND b`` exchanges ``a_local`` and ``b_local``, then re-creates the Distributed ``a`` and
  ``b`` (``CREATE OR REPLACE``, atomic) over them: a Distributed table names its local table, so exchanging
  the Distributed tables too would leave ``a`` reading ``b_local``. ``RENAME TABLE a TO b`` likewise renames
  ``a_local`` and re-creates the Distributed table as ``b``.
* ``INSERT INTO t … SELECT`` into a sharded table waits until every shard has its rows
  (``distributed_foreground_insert = 1``): the next statement of a migration (an EXCHANGE) must see them.
* ``TRUNCATE``, ``OPTIMIZE`` and ``DELETE FROM`` of a sharded table go to its local table.

A statement it cannot render safely (a table without ENGINE, CREATE … AS SELECT, a materialized view with an
inner MergeTree table, an ALTER that mixes column and other commands, a statement that already says ON
CLUSTER, a kind not listed above) is refused with :class:`ClusterRenderError` naming it: the test suite renders
every migration in both modes, so a new migration that needs more is caught there, not on a production cluster.

Rendering is a pure function of the statements and the cluster name: the same files always give the same SQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from shared.errors import StancestreamError

#: Where each replicated table keeps its replication log in Keeper: one path per shard and table; the replicas of
#: a shard share it. ClickHouse expands {database} and {table} when the table is created (and stores the result),
#: so a later EXCHANGE or RENAME keeps the path; {shard} and {replica} come from each node's <macros>.
ZOOKEEPER_PATH = "/clickhouse/tables/{shard}/{database}/{table}"
REPLICA_NAME = "{replica}"
LOCAL_SUFFIX = "_local"

#: Sharding keys that differ from the default, which is ``cityHash64(<the table's whole sorting key>)``.
#: The default is always safe for deduplication and aggregation: ReplacingMergeTree (and Summing-, Aggregating-,
#: Collapsing-) merges only rows that are equal on the sorting key, and only within one shard, so rows with equal
#: keys must land on the same shard, and hashing the whole key guarantees it. That gives ``tweets`` cityHash64(id),
#: ``labels`` and ``holdout`` cityHash64(tweet_id), ``adapters`` cityHash64(version), ``replay_runs``
#: cityHash64(run_id), ``dead_letters`` cityHash64(source_topic, origin). An override must be a *prefix* of the
#: sorting key (checked): coarser groups keep every equal key together, too.
#:
#: ``classifications`` (key: tweet_id, adapter_version) is sharded by the tweet id alone, so every adapter
#: version's row of a tweet sits on the shard that also holds the tweet, its labels and its holdout entry (the
#: same cityHash64 of the same id): ``latest_classifications`` (GROUP BY tweet_id over all versions) and the
#: per-tweet version comparisons of docs/queries.md then find all their rows within one shard (so ClickHouse can
#: aggregate shard by shard: optimize_distributed_group_by_sharding_key), and a join on the tweet id could run
#: shard by shard (distributed_product_mode = 'local'; the compose cluster uses 'global', right for any key).
SHARDING_KEY_PREFIXES: dict[str, tuple[str, ...]] = {"classifications": ("tweet_id",)}

_IDENT = r"[`\"]?\w+[`\"]?"
_NAME = rf"(?P<name>(?:{_IDENT}\.)?{_IDENT})"
_CLUSTER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MERGE_TREE = re.compile(r"^(?P<replicated>Replicated)?(?P<kind>\w*)MergeTree$")
_CLAUSES = r"\b(?:PARTITION\s+BY|PRIMARY\s+KEY|ORDER\s+BY|SAMPLE\s+BY|TTL|SETTINGS|COMMENT)\b"
_COLUMN_COMMAND = re.compile(r"^(?P<verb>ADD|DROP|MODIFY|RENAME|COMMENT)\s+COLUMN\b", re.IGNORECASE)

_CREATE_TABLE = re.compile(r"^CREATE\s+(?P<replace>OR\s+REPLACE\s+)?TABLE\s+(?P<ine>IF\s+NOT\s+EXISTS\s+)?" + _NAME,
                           re.IGNORECASE)
_CREATE_MV = re.compile(r"^CREATE\s+MATERIALIZED\s+VIEW\s+(?P<ine>IF\s+NOT\s+EXISTS\s+)?" + _NAME, re.IGNORECASE)
_CREATE_VIEW = re.compile(r"^CREATE\s+(?:OR\s+REPLACE\s+)?VIEW\s+(?:IF\s+NOT\s+EXISTS\s+)?" + _NAME, re.IGNORECASE)
_CREATE_DICTIONARY = re.compile(r"^CREATE\s+(?:OR\s+REPLACE\s+)?DICTIONARY\s+(?:IF\s+NOT\s+EXISTS\s+)?" + _NAME,
                                re.IGNORECASE)
_ALTER = re.compile(r"^ALTER\s+TABLE\s+" + _NAME + r"\s+", re.IGNORECASE)
_DROP = re.compile(r"^DROP\s+(?P<kind>TABLE|VIEW|DICTIONARY)\s+(?P<ie>IF\s+EXISTS\s+)?" + _NAME
                   + r"(?:\s+SYNC)?\s*$", re.IGNORECASE)
_EXCHANGE = re.compile(r"^EXCHANGE\s+TABLES\s+(?P<a>(?:\w+\.)?" + _IDENT + r")\s+AND\s+(?P<b>(?:\w+\.)?" + _IDENT
                       + r")\s*$", re.IGNORECASE)
_RENAME = re.compile(r"^RENAME\s+TABLE\s+(?P<pairs>.+)$", re.IGNORECASE | re.DOTALL)
_RENAME_PAIR = re.compile(r"^\s*(?P<old>(?:\w+\.)?" + _IDENT + r")\s+TO\s+(?P<new>(?:\w+\.)?" + _IDENT + r")\s*$",
                          re.IGNORECASE)
_INSERT = re.compile(r"^INSERT\s+INTO\s+(?:TABLE\s+)?" + _NAME, re.IGNORECASE)
_TRUNCATE = re.compile(r"^TRUNCATE\s+(?:TABLE\s+)?(?:IF\s+EXISTS\s+)?" + _NAME + r"\s*$", re.IGNORECASE)
_OPTIMIZE = re.compile(r"^OPTIMIZE\s+TABLE\s+" + _NAME, re.IGNORECASE)
_DELETE = re.compile(r"^DELETE\s+FROM\s+" + _NAME + r"\s+(?=WHERE\b)", re.IGNORECASE)
_READS = re.compile(r"\b(?:FROM|JOIN)\s+" + _NAME, re.IGNORECASE)


class ClusterRenderError(StancestreamError):
    """A statement of a migration that cluster mode cannot render safely."""


@dataclass(frozen=True)
class _Object:
    kind: str  # "sharded" (local replicated table + Distributed table), "view", "materialized view", "node"
    sharding_key: str = ""


class ClusterRenderer:
    """Renders single-server DDL for ``cluster``, statement by statement, remembering what earlier statements made.

    Feed it every earlier statement first (:meth:`replay`), then :meth:`render` the ones to run: an ALTER or a
    materialized view needs to know which names are sharded tables."""

    def __init__(self, cluster: str):
        if not _CLUSTER_NAME.match(cluster or ""):
            raise ClusterRenderError(f"not a ClickHouse cluster name: {cluster!r} (letters, digits and _)")
        self.cluster = cluster
        self.on_cluster = f"ON CLUSTER {cluster}"
        self.objects: dict[str, _Object] = {}

    # --- state ------------------------------------------------------------------------------------------------
    def replay(self, statements: Iterable[str]) -> None:
        """Learn what ``statements`` (already applied) left behind; the rendered SQL is thrown away."""
        for statement in statements:
            self.render(statement)

    def is_sharded(self, name: str) -> bool:
        return _bare(name) in self.objects and self.objects[_bare(name)].kind == "sharded"

    def physical_names(self, name: str) -> list[str]:
        """The tables a node holds for the table or view ``name``: a sharded table is two."""
        return [_bare(name), _bare(name) + LOCAL_SUFFIX] if self.is_sharded(name) else [_bare(name)]

    # --- rendering --------------------------------------------------------------------------------------------
    def render_all(self, statements: Iterable[str]) -> list[str]:
        return [rendered for statement in statements for rendered in self.render(statement)]

    def render(self, statement: str) -> list[str]:
        """The statements a cluster runs for one single-server ``statement`` (comments stripped, no ``;``)."""
        statement = statement.strip()
        if re.search(r"\bON\s+CLUSTER\b", _mask(statement), re.IGNORECASE):
            raise self._refuse(statement, "it already says ON CLUSTER; migrations are written for one server")
        head = statement[:40].upper()
        for prefix, method in (("CREATE MATERIALIZED VIEW", self._materialized_view), ("ALTER", self._alter),
                               ("DROP", self._drop), ("EXCHANGE", self._exchange), ("RENAME", self._rename),
                               ("INSERT", self._insert), ("TRUNCATE", self._truncate), ("OPTIMIZE", self._optimize),
                               ("DELETE", self._delete)):
            if re.match(prefix.replace(" ", r"\s+"), head):
                return method(statement)
        if _CREATE_TABLE.match(statement):
            return self._table(statement)
        if match := _CREATE_VIEW.match(statement):
            self.objects[_bare(match["name"])] = _Object("view")
            return [_after(statement, match, self.on_cluster)]
        if match := _CREATE_DICTIONARY.match(statement):
            self.objects[_bare(match["name"])] = _Object("node")
            return [_after(statement, match, self.on_cluster)]
        raise self._refuse(statement, "this kind of statement has no cluster rendering")

    def _table(self, statement: str) -> list[str]:
        match = _CREATE_TABLE.match(statement)
        name, rest = match["name"], statement[match.end():]
        masked = _mask(rest)
        engine = re.search(r"\bENGINE\s*=\s*(?P<engine>\w+)", masked, re.IGNORECASE)
        if engine is None:
            raise self._refuse(statement, "a table needs an explicit ENGINE in cluster mode")
        if re.search(r"\bAS\b", masked, re.IGNORECASE):
            raise self._refuse(statement, "CREATE TABLE … AS is not rendered; list the columns")
        kind = _MERGE_TREE.match(engine["engine"])
        if kind is None:  # Memory, Null, Log, …: one per node, created on every node
            self.objects[_bare(name)] = _Object("node")
            return [_after(statement, match, self.on_cluster)]
        start, end = engine.start(), engine.end()
        args = ""
        if masked[end:].lstrip().startswith("("):
            opening = masked.index("(", end)
            closing = masked.index(")", opening)
            args, end = rest[opening + 1:closing].strip(), closing + 1
        if kind["replicated"]:
            replicated = rest[start:end].split("=", 1)[1].strip()
        else:
            replicated = (f"Replicated{kind['kind']}MergeTree('{ZOOKEEPER_PATH}', '{REPLICA_NAME}'"
                          + (f", {args}" if args else "") + ")")
        key = self._sharding_key(statement, _bare(name), rest, masked)
        local = _local(name)
        head = statement[:match.start("name")]
        self.objects[_bare(name)] = _Object("sharded", key)
        return [
            f"{head}{local} {self.on_cluster}{rest[:start]}ENGINE = {replicated}{rest[end:]}",
            f"{head}{name} {self.on_cluster} AS {local} ENGINE = {self._distributed(name, key)}",
        ]

    def _sharding_key(self, statement: str, table: str, rest: str, masked: str) -> str:
        clause = re.search(r"\bORDER\s+BY\b", masked, re.IGNORECASE) or re.search(r"\bPRIMARY\s+KEY\b", masked,
                                                                                 re.IGNORECASE)
        columns: list[str] = []
        if clause:
            following = re.compile(_CLAUSES, re.IGNORECASE).search(masked, clause.end())
            expression = rest[clause.end():following.start() if following else len(rest)].strip()
            if expression.startswith("(") and _mask(expression).index(")") == len(expression) - 1:  # a tuple
                expression = expression[1:-1]
            inner = _mask(expression)
            cuts = [i for i, c in enumerate(inner) if c == ","]
            columns = [expression[a + 1:b].strip() for a, b in zip([-1] + cuts, cuts + [len(expression)])]
            columns = [c for c in columns if c and c.lower() != "tuple()"]
        prefix = SHARDING_KEY_PREFIXES.get(table)
        if prefix is not None:
            if tuple(columns[:len(prefix)]) != prefix:
                raise self._refuse(statement, f"its sharding key {prefix} is not a prefix of its sorting key {columns}")
            columns = list(prefix)
        return f"cityHash64({', '.join(columns)})" if columns else "rand()"

    def _distributed(self, name: str, key: str) -> str:
        database = "'" + _bare(name.split(".")[0]) + "'" if "." in name else "currentDatabase()"
        return f"Distributed({self.cluster}, {database}, {_bare(name) + LOCAL_SUFFIX}, {key})"

    def _materialized_view(self, statement: str) -> list[str]:
        match = _CREATE_MV.match(statement)
        if match is None:
            raise self._refuse(statement, "unexpected materialized view syntax")
        rest = statement[match.end():]
        masked = _mask(rest)
        select = re.search(r"\bAS\s+(?=SELECT\b|WITH\b|\()", masked, re.IGNORECASE)
        if select is None:
            raise self._refuse(statement, "a materialized view needs AS SELECT")
        target = re.match(r"\s*TO\s+" + _NAME, rest, re.IGNORECASE)
        if target is None and re.search(r"\bENGINE\s*=\s*\w*MergeTree\b", masked[:select.start()], re.IGNORECASE):
            raise self._refuse(statement, "give the materialized view a TO table: its inner MergeTree table would be "
                                          "neither replicated nor sharded")
        middle = rest[:select.start()]
        if target is not None and self.is_sharded(target["name"]):
            middle = middle[:target.start("name")] + _local(target["name"]) + middle[target.end("name"):]
        self.objects[_bare(match["name"])] = _Object("materialized view")
        head = statement[:match.end()]
        return [f"{head} {self.on_cluster}{middle}{rest[select.start():select.end()]}"
                f"{self._localized(rest[select.end():])}"]

    def _localized(self, select: str) -> str:
        """``select`` reading the local table of every sharded table it names after FROM or JOIN."""
        masked = _mask(select, parens=False)
        out, last = [], 0
        for match in _READS.finditer(masked):
            if self.is_sharded(select[match.start("name"):match.end("name")]):
                out += [select[last:match.start("name")], _local(select[match.start("name"):match.end("name")])]
                last = match.end("name")
        return "".join(out) + select[last:]

    def _alter(self, statement: str) -> list[str]:
        match = _ALTER.match(statement)
        if match is None:
            raise self._refuse(statement, "unexpected ALTER syntax")
        name, commands = match["name"], statement[match.end():]
        if not self.is_sharded(name):
            return [_after(statement, match, self.on_cluster, "name")]
        masked = _mask(commands)
        cuts = [i for i, c in enumerate(masked) if c == ","]
        parts = [commands[a + 1:b].strip() for a, b in zip([-1] + cuts, cuts + [len(commands)])]
        verbs = [m["verb"].upper() if (m := _COLUMN_COMMAND.match(p)) else None for p in parts]
        local = f"ALTER TABLE {_local(name)} {self.on_cluster} {commands}"
        if not any(verbs):
            return [local]
        if not all(verbs):
            raise self._refuse(statement, "split it: column changes go to the local and the Distributed table, "
                                          "other commands to the local table only")
        distributed = f"ALTER TABLE {name} {self.on_cluster} {commands}"
        return [distributed, local] if {"DROP", "RENAME"} & set(verbs) else [local, distributed]

    def _drop(self, statement: str) -> list[str]:
        match = _DROP.match(statement)
        if match is None:
            raise self._refuse(statement, "drop one object per statement")
        name, bare = match["name"], _bare(match["name"])
        head = statement[:match.start("name")]
        known = self.objects.pop(bare, None)
        # An unknown name under IF EXISTS is the leftover of an interrupted run of the same migration (0004 drops
        # dead_letters_0004 before creating it): clear both tables such a run could have left.
        if (known is not None and known.kind == "sharded") or (
                known is None and match["ie"] and match["kind"].upper() == "TABLE"):
            return [f"{head}{name} {self.on_cluster} SYNC", f"{head}{_local(name)} {self.on_cluster} SYNC"]
        return [f"{head}{name} {self.on_cluster}" + (" SYNC" if match["kind"].upper() == "TABLE" else "")]

    def _exchange(self, statement: str) -> list[str]:
        match = _EXCHANGE.match(statement)
        if match is None:
            raise self._refuse(statement, "unexpected EXCHANGE syntax")
        a, b = match["a"], match["b"]
        sharded = self.is_sharded(a), self.is_sharded(b)
        if not any(sharded):
            return [f"EXCHANGE TABLES {a} AND {b} {self.on_cluster}"]
        if not all(sharded):
            raise self._refuse(statement, "it exchanges a sharded table with one that is not")
        first, second = self.objects[_bare(a)], self.objects[_bare(b)]
        self.objects[_bare(a)], self.objects[_bare(b)] = second, first
        return [f"EXCHANGE TABLES {_local(a)} AND {_local(b)} {self.on_cluster}",
                f"CREATE OR REPLACE TABLE {a} {self.on_cluster} AS {_local(a)} "
                f"ENGINE = {self._distributed(a, second.sharding_key)}",
                f"CREATE OR REPLACE TABLE {b} {self.on_cluster} AS {_local(b)} "
                f"ENGINE = {self._distributed(b, first.sharding_key)}"]

    def _rename(self, statement: str) -> list[str]:
        pairs_text = _RENAME.match(statement)["pairs"]
        masked = _mask(pairs_text)
        cuts = [i for i, c in enumerate(masked) if c == ","]
        rendered = []
        for a, b in zip([-1] + cuts, cuts + [len(pairs_text)]):
            pair = _RENAME_PAIR.match(pairs_text[a + 1:b])
            if pair is None:
                raise self._refuse(statement, "unexpected RENAME syntax")
            old, new = pair["old"], pair["new"]
            known = self.objects.pop(_bare(old), None)
            if known is not None:
                self.objects[_bare(new)] = known
            if known is not None and known.kind == "sharded":
                rendered += [f"RENAME TABLE {_local(old)} TO {_local(new)} {self.on_cluster}",
                             f"DROP TABLE {old} {self.on_cluster} SYNC",
                             f"CREATE TABLE {new} {self.on_cluster} AS {_local(new)} "
                             f"ENGINE = {self._distributed(new, known.sharding_key)}"]
            else:
                rendered.append(f"RENAME TABLE {old} TO {new} {self.on_cluster}")
        return rendered

    def _insert(self, statement: str) -> list[str]:
        match = _INSERT.match(statement)
        if match is None:
            raise self._refuse(statement, "unexpected INSERT syntax")
        if not self.is_sharded(match["name"]):
            return [statement]
        rest = statement[match.end():]
        masked = _mask(rest)
        at = masked.index(")") + 1 if masked.lstrip().startswith("(") else 0  # after the column list
        if re.match(r"\s*SETTINGS\b", rest[at:], re.IGNORECASE):
            raise self._refuse(statement, "an INSERT into a sharded table gets its own SETTINGS; drop these")
        return [f"{statement[:match.end()]}{rest[:at]} SETTINGS distributed_foreground_insert = 1{rest[at:]}"]

    def _truncate(self, statement: str) -> list[str]:
        match = _TRUNCATE.match(statement)
        if match is None:
            raise self._refuse(statement, "unexpected TRUNCATE syntax")
        return [self._on_local(statement, match)]

    def _optimize(self, statement: str) -> list[str]:
        match = _OPTIMIZE.match(statement)
        if match is None:
            raise self._refuse(statement, "unexpected OPTIMIZE syntax")
        return [self._on_local(statement, match)]

    def _delete(self, statement: str) -> list[str]:
        match = _DELETE.match(statement)
        if match is None:
            raise self._refuse(statement, "unexpected DELETE syntax")
        return [self._on_local(statement, match)]

    def _on_local(self, statement: str, match: re.Match) -> str:
        """``statement`` aimed at the local table of its sharded table, ON CLUSTER (a Distributed table has no
        parts to truncate, optimize or delete from)."""
        name = match["name"]
        target = _local(name) if self.is_sharded(name) else name
        return f"{statement[:match.start('name')]}{target} {self.on_cluster}{statement[match.end('name'):]}"

    def _refuse(self, statement: str, why: str) -> ClusterRenderError:
        return ClusterRenderError(f"cannot render for cluster {self.cluster}: {why}: {' '.join(statement.split())[:120]}")


def schema_migrations_ddl(cluster: str) -> str:
    """The bookkeeping table in cluster mode: one ReplicatedMergeTree whose replicas are *every* node of the
    cluster (a Keeper path without {shard}, a replica name unique across shards). Per-node tables would let a
    ``migrate`` pointed at another node see nothing applied and run a migration twice (0004's rebuild of
    dead_letters is not idempotent); a Distributed table would spread the records over the shards for nothing.
    So each node reads the full record locally, and a rollback's DELETE replicates like an insert."""
    ClusterRenderer(cluster)  # validates the name
    return ("CREATE TABLE IF NOT EXISTS schema_migrations ON CLUSTER " + cluster
            + " (number UInt32, name String, applied_at DateTime DEFAULT now())"
            " ENGINE = ReplicatedMergeTree('/clickhouse/tables/all/{database}/{table}', '{shard}-{replica}')"
            " ORDER BY number")


def _mask(sql: str, parens: bool = True) -> str:
    """``sql`` with string literals and comments blanked out (and, with ``parens``, everything inside parentheses
    but the outermost ones), same length: a regex on it finds only top-level keywords, at the right offsets."""
    out, depth, i, n = list(sql), 0, 0, len(sql)

    def blank(a: int, b: int) -> None:
        for k in range(a, min(b, n)):
            if out[k] != "\n":
                out[k] = " "

    while i < n:
        c = sql[i]
        if c in "'\"`":
            j = i + 1
            while j < n and sql[j] != c:
                j += 2 if sql[j] == "\\" else 1
            if parens and depth:
                blank(i, j + 1)
            elif c == "'":
                blank(i + 1, j)
            i = j + 1
        elif sql.startswith("--", i) or sql.startswith("/*", i):
            j = sql.find("\n", i) if sql[i] == "-" else sql.find("*/", i + 2)
            j = n if j < 0 else j + (2 if sql[i] == "/" else 0)
            blank(i, j)
            i = j
        else:
            if parens and c == "(":
                depth += 1
            elif parens and c == ")":
                depth -= 1
            if parens and (depth > 1 or (depth == 1 and c != "(")) and c != "\n":
                out[i] = " "
            i += 1
    return "".join(out)


def _after(statement: str, match: re.Match, clause: str, group: str = "name") -> str:
    return f"{statement[:match.end(group)]} {clause}{statement[match.end(group):]}"


def _bare(name: str) -> str:
    return name.split(".")[-1].strip("`\"")


def _local(name: str) -> str:
    """The local table's name, spelled like ``name`` (database prefix and quotes kept)."""
    prefix, _, table = name.rpartition(".")
    quote = table[0] if table[:1] in "`\"" else ""
    local = quote + _bare(table) + LOCAL_SUFFIX + quote
    return f"{prefix}.{local}" if prefix else local
