"""The loopback query gateway of the embedded store.

chDB lets one process open a data directory. The process that owns it serves queries over HTTP on 127.0.0.1
so that ``stancestream sql`` (and, later, monitors and dashboards) can read while the stack runs. The protocol
is deliberately tiny: ``POST /query`` with ``{"sql": ..., "params": {...}}`` returns columns, types and rows;
``POST /insert`` with ``{"table", "columns", "types", "rows"}`` writes rows (the adapter registry and the
trainer in another process). ``gateway.json`` also names the stack's broker, so such commands find it.
"""

from __future__ import annotations

import json
import os
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from shared.store.clickhouse import QueryResult, Store, StoreError

_FILE = "gateway.json"


def advertised_stack(data_dir: Path) -> dict | None:
    """``{"address", "pid", "kafka_bootstrap"}`` of a live stack serving this data directory, if one runs."""
    path = data_dir / _FILE
    try:
        info = json.loads(path.read_text())
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError):
        return None
    return info


def advertised_gateway(data_dir: Path) -> str | None:
    """The address of a live gateway for this data directory, if one is running."""
    info = advertised_stack(data_dir)
    return info["address"] if info else None


class QueryGateway:
    """Serves ``store`` on a loopback port for as long as it runs; advertises itself in ``data_dir``."""

    def __init__(self, store: Store, data_dir: Path, host: str = "127.0.0.1", kafka_bootstrap: str | None = None):
        self._store = store
        self._data_dir = data_dir
        self._kafka_bootstrap = kafka_bootstrap
        store_ref = store

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                if self.path not in ("/query", "/insert"):
                    self.send_error(404)
                    return
                try:
                    body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                    if self.path == "/insert":
                        store_ref.insert(body["table"], _decode_rows(body["rows"], body["types"]), body["columns"])
                        payload = {"inserted": len(body["rows"])}
                    else:
                        result = store_ref.query(body["sql"], body.get("params"))
                        payload = {"columns": result.columns, "types": result.types, "rows": result.rows}
                    status = 200
                except StoreError as exc:
                    payload, status = {"error": str(exc)}, 400
                except (ValueError, KeyError) as exc:
                    payload, status = {"error": f"bad request: {exc}"}, 400
                data = json.dumps(payload, default=str, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer((host, 0), Handler)
        self.address = f"http://{host}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="query-gateway", daemon=True)

    def start(self) -> "QueryGateway":
        self._thread.start()
        self._data_dir.mkdir(parents=True, exist_ok=True)
        (self._data_dir / _FILE).write_text(json.dumps({"address": self.address, "pid": os.getpid(),
                                                         "kafka_bootstrap": self._kafka_bootstrap}))
        return self

    def stop(self) -> None:
        (self._data_dir / _FILE).unlink(missing_ok=True)
        self._server.shutdown()
        self._server.server_close()


def _decode_rows(rows: list[list[Any]], types: list[str]) -> list[list[Any]]:
    """Rows as sent by ``GatewayStore.insert``: datetimes travel as ISO text."""
    return [[datetime.fromisoformat(v) if kind == "datetime" and v is not None else v for v, kind in zip(row, types)]
            for row in rows]


def _param(value: Any) -> Any:
    """Query parameters travel as JSON: datetimes as ClickHouse's own UTC text, which it parses back."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    return value


class GatewayStore:
    """A Store that talks to a running stack's gateway (loopback only)."""

    def __init__(self, address: str):
        self.address = address
        self.description = f"embedded chDB through the running stack's gateway at {address}"

    def query(self, sql: str, params: dict[str, Any] | None = None) -> QueryResult:
        params = {k: _param(v) for k, v in (params or {}).items()}
        body = self._post("/query", {"sql": sql, "params": params})
        return QueryResult(body["columns"], body["types"], [tuple(r) for r in body["rows"]])

    def _post(self, path: str, payload: dict) -> dict:
        request = urllib.request.Request(
            f"{self.address}{path}",
            data=json.dumps(payload, default=str).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise StoreError(json.loads(exc.read()).get("error", str(exc))) from exc
        except OSError as exc:
            raise StoreError(f"the stack's query gateway at {self.address} did not answer: {exc}") from exc
        return body

    def command(self, sql: str, params: dict[str, Any] | None = None) -> None:
        self.query(sql, params)

    def insert(self, table: str, rows: Sequence[Sequence[Any]], columns: Sequence[str]) -> None:
        if not rows:
            return
        types = ["datetime" if isinstance(v, datetime) else "" for v in rows[0]]
        self._post("/insert", {"table": table, "columns": list(columns), "types": types,
                               "rows": [[v.isoformat() if isinstance(v, datetime) else v for v in row]
                                        for row in rows]})

    def close(self) -> None:
        pass
