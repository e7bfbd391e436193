"""The loopback query gateway of the embedded store.

chDB lets one process open a data directory. The process that owns it serves queries over HTTP on 127.0.0.1
so that ``stancestream sql``, ``labels``, ``adapters``, ``trainer --once``, ``monitor`` and ``dashboard`` can
use the store while the stack runs. The protocol is deliberately tiny: ``POST /query`` with
``{"sql": ..., "params": {...}, "write": false}`` returns columns, types and rows; ``POST /insert`` with
``{"table", "columns", "types", "rows"}`` writes rows into one of the tables other processes write (the
adapter registry, the trainer, label imports, replays). ``gateway.json`` also names the stack's broker, so such
commands find it.

Every request needs the per-run credential written to ``gateway.json`` (mode 0600: only this user reads it) as
``Authorization: Bearer <token>`` and ``Content-Type: application/json``. A request with an ``Origin`` header
comes from a web page (browsers add it; our clients never do) and is refused, as is a ``Host`` other than the
gateway's own address (DNS rebinding). ``/query`` applies ``shared.store.sqlpolicy``: read-only unless the
request says ``"write": true``, never files, URLs or other servers, never dropping the stack's own tables.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import secrets
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from shared.store.base import QueryRefused, StoreError
from shared.store.clickhouse import ClickHouseStore
from shared.store.gateway_client import GATEWAY_FILE
from shared.store.migrations import schema_objects
from shared.store.sqlpolicy import run_adhoc

log = logging.getLogger(__name__)

_MAX_BODY = 64 * 1024 * 1024

#: The tables other processes write through ``POST /insert``, and who writes them: labels and their dead
#: letters (``labels import``), the adapter registry (``adapters``, ``trainer``), the trainer's runs, holdout and
#: drift checks, replays (their runs, the tweets and classifications they produce), and migrations run by a newer
#: client.
WRITABLE_TABLES = frozenset({"labels", "dead_letters", "adapters", "adapter_runs", "holdout", "drift", "label_shares",
                             "replay_runs", "tweets", "classifications", "schema_migrations"})


class QueryGateway:
    """Serves ``store`` on a loopback port for as long as it runs; advertises itself in ``data_dir``."""

    def __init__(self, store: ClickHouseStore, data_dir: Path, host: str = "127.0.0.1",
                 kafka_bootstrap: str | None = None, broker_epoch: str = ""):
        self._store = store
        self._data_dir = data_dir
        self._kafka_bootstrap = kafka_bootstrap
        self._broker_epoch = broker_epoch  # attached workers name messages as the stack's own worker does
        self._token = secrets.token_urlsafe(32)
        expected_auth = f"Bearer {self._token}".encode()
        protected = frozenset(schema_objects()) | {"schema_migrations"}
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                refusal = self._refusal()
                if refusal is not None:
                    self._answer(*refusal)
                    return
                try:
                    length = int(self.headers.get("Content-Length") or -1)
                    if not 0 <= length <= _MAX_BODY:
                        raise ValueError(f"send a Content-Length of at most {_MAX_BODY} bytes")
                    body = json.loads(self.rfile.read(length))
                    if not isinstance(body, dict):
                        raise ValueError("send a JSON object")
                    if self.path == "/insert":
                        rows = gateway._insert(body)
                        payload = {"inserted": rows}
                    else:
                        write = body.get("write", False)
                        if not isinstance(write, bool):
                            raise ValueError('"write" must be true or false')
                        result = run_adhoc(store, body["sql"], body.get("params"), write=write, protected=protected)
                        payload = {"columns": result.columns, "types": result.types, "rows": result.rows}
                    status = 200
                except QueryRefused as exc:
                    payload, status = {"error": str(exc)}, 403
                except StoreError as exc:
                    payload, status = {"error": str(exc)}, 400
                except KeyError as exc:
                    payload, status = {"error": f"bad request: the JSON object needs {exc}"}, 400
                except (ValueError, TypeError) as exc:
                    payload, status = {"error": f"bad request: {exc}"}, 400
                self._answer(status, payload)

            def _refusal(self) -> tuple[int, dict] | None:
                """Why this request may not run, as (status, payload); None when it may."""
                if self.path not in ("/query", "/insert"):
                    return 404, {"error": "unknown path: POST /query or /insert"}
                if self.headers.get("Origin") is not None:
                    return 403, {"error": "requests from web pages are refused"}
                if self.headers.get("Host") not in gateway._hosts:
                    return 403, {"error": "unexpected Host header: connect to the address in gateway.json"}
                supplied = (self.headers.get("Authorization") or "").encode()
                if not hmac.compare_digest(supplied, expected_auth):
                    return 401, {"error": "missing or wrong gateway credential: use the token in "
                                          f"{gateway._data_dir / GATEWAY_FILE} (readable by the stack's user only)"}
                if (self.headers.get("Content-Type") or "").split(";")[0].strip().lower() != "application/json":
                    return 415, {"error": "send Content-Type: application/json"}
                return None

            def _answer(self, status: int, payload: dict) -> None:
                data = json.dumps(payload, default=str, ensure_ascii=False).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client died waiting (a killed worker)
                    log.debug("gateway client went away before its answer")

            def log_message(self, *args: object) -> None:
                pass  # quiet, and the Authorization header never reaches a log

        self._server = ThreadingHTTPServer((host, 0), Handler)
        port = self._server.server_address[1]
        self.address = f"http://{host}:{port}"
        self._hosts = {f"{name}:{port}" for name in (host, "127.0.0.1", "localhost", "[::1]")}
        self._thread = threading.Thread(target=self._server.serve_forever, name="query-gateway", daemon=True)

    def start(self) -> "QueryGateway":
        self._thread.start()
        self._data_dir.mkdir(parents=True, exist_ok=True)
        _write_private(self._data_dir / GATEWAY_FILE, json.dumps({
            "address": self.address, "pid": os.getpid(), "kafka_bootstrap": self._kafka_bootstrap,
            "broker_epoch": self._broker_epoch, "token": self._token}))
        return self

    def stop(self) -> None:
        (self._data_dir / GATEWAY_FILE).unlink(missing_ok=True)
        self._server.shutdown()
        self._server.server_close()

    def _insert(self, body: dict) -> int:
        """``POST /insert``: rows into an allowed table, columns checked against the table's own."""
        table, columns, types, rows = body["table"], body["columns"], body["types"], body["rows"]
        if table not in WRITABLE_TABLES:
            raise QueryRefused(f"inserts into {table!r} are not accepted through the gateway "
                               f"(only {', '.join(sorted(WRITABLE_TABLES))})")
        known = {r[0] for r in self._store.query(
            "SELECT name FROM system.columns WHERE database = currentDatabase() AND table = {t:String}",
            {"t": table}).rows}
        unknown = [c for c in columns if not isinstance(c, str) or c not in known]
        if unknown or not columns or len(set(columns)) != len(columns):
            raise QueryRefused(f"columns {unknown or columns} do not name distinct columns of {table}")
        if len(types) != len(columns) or any(len(row) != len(columns) for row in rows):
            raise ValueError("send as many types, and values per row, as columns")
        self._store.insert(table, _decode_rows(rows, types), columns)
        return len(rows)


def _write_private(path: Path, text: str) -> None:
    """Write ``path`` readable by this user only: created 0600, never widened, then renamed into place."""
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    staging.unlink(missing_ok=True)
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(staging, path)


def _decode_rows(rows: list[list[Any]], types: list[str]) -> list[list[Any]]:
    """Rows as sent by ``GatewayStore.insert``: datetimes travel as ISO text."""
    return [[datetime.fromisoformat(v) if kind == "datetime" and v is not None else v for v, kind in zip(row, types)]
            for row in rows]
