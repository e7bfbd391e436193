"""Works while `stancestream run` is running (through its query gateway) and after it stopped (opening the embedded
store directly). Read-only unless --write; files, URLs and other servers are never reachable (file(), url(), s3(),
remote(), INTO OUTFILE, …)."""

from __future__ import annotations

HELP = "run a query against the configured ClickHouse and print the result"


def arguments(parser) -> None:
    parser.add_argument("query", help='e.g. "SELECT lang, count() FROM classifications FINAL GROUP BY lang"')
    parser.add_argument("--write", action="store_true",
                        help="also allow statements that change the store: INSERT … SELECT, CREATE TABLE/VIEW, ALTER, "
                             "DELETE, UPDATE, DROP, TRUNCATE, RENAME, OPTIMIZE (the running stack's own tables cannot "
                             "be dropped, truncated or renamed)")
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="a query parameter, used in the SQL as {NAME:Type} (repeatable; see docs/queries.md)")


def run(args, settings) -> int:
    from services.cli.render import print_result
    from shared.store import open_store
    from shared.store.sqlpolicy import run_adhoc

    params = {}
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--param wants NAME=VALUE, got {item!r}")
        params[name] = value
    print_result(run_adhoc(open_store(settings), args.query, params, write=args.write), args.format)
    return 0
