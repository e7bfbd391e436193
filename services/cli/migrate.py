"""Apply the numbered ClickHouse migrations under schemas/migrations/ that are not applied yet, or revert them down to one."""

from __future__ import annotations

HELP = "apply (or roll back) the ClickHouse migrations"


def arguments(parser) -> None:
    parser.add_argument("--rollback-to", type=int, metavar="N", help="revert migrations numbered above N")


def run(args, settings) -> int:
    from shared.store import open_store
    from shared.store.migrations import migrate, rollback

    store = open_store(settings)
    cluster = settings.clickhouse_cluster  # ON CLUSTER objects (STANCESTREAM_CLICKHOUSE_CLUSTER), else one server
    done = (rollback(store, args.rollback_to, cluster=cluster) if args.rollback_to is not None
            else migrate(store, cluster=cluster))
    verb = "reverted" if args.rollback_to is not None else "applied"
    print("\n".join(f"{verb} {m.number:04d}_{m.name}" for m in done) or "nothing to do")
    return 0
