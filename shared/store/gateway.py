"""The loopback query gateway of the embedded store.

chDB lets one process open a data directory. The process that owns it serves queries over HTTP on 127.0.0.1
so that ``stancestream sql`` (and, later, monitors and dashboards) can read while the stack runs. The protocol
is deliberately tiny: ``POST /query`` with ``{"sql": ..., "params": {...}}`` returns columns, types and rows.
"""

from __future__ import annotations

import json
import os
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Sequence

from shared.store.clickhouse import QueryResult, Store, StoreError

_FILE = "gateway.json"


def advertised_gateway(data_dir: Path) -> str | None:
    """The address of a live gateway for this data directory, if one is running."""
    path = data_dir / _FILE
    try:
        info = json.loads(path.read_text())
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError):
        return None
    return info["address"]


class QueryGateway:
    """Serves ``store`` on a loopback port for as long as it runs; advertises itself in ``data_dir``."""

    def __init__(self, store: Store, data_dir: Path, host: str = "127.0.0.1"):
        self._store = store
        self._data_dir = data_dir
        store_ref = store

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                if self.path != "/query":
                    self.send_error(404)
                    return
                try:
                    body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
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
        (self._data_dir / _FILE).write_text(json.dumps({"address": self.address, "pid": os.getpid()}))
        return self

    def stop(self) -> None:
        (self._data_dir / _FILE).unlink(missing_ok=True)
        self._server.shutdown()
        self._server.server_close()


class GatewayStore:
    """A read-only Store that talks to a running stack's gateway."""

    def __init__(self, address: str):
        self.address = address
        self.description = f"embedded chDB through the running stack's gateway at {address}"

    def query(self, sql: str, params: dict[str, Any] | None = None) -> QueryResult:
        request = urllib.request.Request(
            f"{self.address}/query",
            data=json.dumps({"sql": sql, "params": params or {}}, default=str).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise StoreError(json.loads(exc.read()).get("error", str(exc))) from exc
        except OSError as exc:
            raise StoreError(f"the stack's query gateway at {self.address} did not answer: {exc}") from exc
        return QueryResult(body["columns"], body["types"], [tuple(r) for r in body["rows"]])

    def command(self, sql: str, params: dict[str, Any] | None = None) -> None:
        self.query(sql, params)

    def insert(self, table: str, rows: Sequence[Sequence[Any]], columns: Sequence[str]) -> None:
        raise StoreError("the stack's query gateway is read-only: write through the stack's topics")

    def close(self) -> None:
        pass
