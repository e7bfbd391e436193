"""A local web page with stance share over time per language, volume per language, the confidence distribution and the
adapter versions timeline, refreshed automatically. Read-only: it only runs its own SELECTs."""

from __future__ import annotations

HELP = "serve the read-only web dashboard (charts, auto-refresh) on 127.0.0.1"


def arguments(parser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8050, help="default 8050; 0 picks a free port")
    parser.add_argument("--days", type=int, default=14, help="how far back the charts go (default 14 days)")
    parser.add_argument("--refresh", type=int, default=10, metavar="S", help="page refresh period (default 10 s)")


def run(args, settings) -> int:
    from services.views.dashboard import serve_dashboard
    from shared.store import open_store

    serve_dashboard(open_store(settings), args.host, args.port, args.days, args.refresh)
    return 0
