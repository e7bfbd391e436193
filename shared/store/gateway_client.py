"""The client side of the embedded store's query gateway (``shared.store.gateway``): ``GatewayStore``, and
``advertised_stack``, which finds a running stack — its gateway and its broker — from ``<data_dir>/gateway.json``."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from shared.store.base import QueryRefused, QueryResult, StoreError

#: Where a running stack advertises itself: address, pid, broker and the per-run token (mode 0600).
GATEWAY_FILE = "gateway.json"


def advertised_stack(data_dir: Path) -> dict | None:
    """``{"address", "pid", "kafka_bootstrap", "broker_epoch", "token"}`` of a live stack serving this data
    directory, if one runs."""
    path = data_dir / GATEWAY_FILE
    try:
        info = json.loads(path.read_text())
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError):
        return None
    return info


def _param(value: Any) -> Any:
    """Query parameters travel as JSON: datetimes as ClickHouse's own UTC text, which it parses back."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    return value


class GatewayStore:
    """A Store that talks to a running stack's gateway (loopback only), with the credential from gateway.json."""

    def __init__(self, address: str, token: str | None):
        self.address = address
        self._token = token
        self.description = f"embedded chDB through the running stack's gateway at {address}"

    def query(self, sql: str, params: dict[str, Any] | None = None, *, write: bool = False) -> QueryResult:
        params = {k: _param(v) for k, v in (params or {}).items()}
        body = self._post("/query", {"sql": sql, "params": params, "write": write})
        return QueryResult(body["columns"], body["types"], [tuple(r) for r in body["rows"]])

    def _post(self, path: str, payload: dict) -> dict:
        request = urllib.request.Request(
            f"{self.address}{path}",
            data=json.dumps(payload, default=str).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self._token or ''}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read()).get("error", str(exc))
            except ValueError:
                message = str(exc)
            error = QueryRefused if exc.code in (401, 403, 415) else StoreError
            raise error(message) from exc
        except OSError as exc:
            raise StoreError(f"the stack's query gateway at {self.address} did not answer: {exc}") from exc
        return body

    def command(self, sql: str, params: dict[str, Any] | None = None) -> None:
        self.query(sql, params, write=True)

    def insert(self, table: str, rows: Sequence[Sequence[Any]], columns: Sequence[str]) -> None:
        if not rows:
            return
        types = ["datetime" if isinstance(v, datetime) else "" for v in rows[0]]
        self._post("/insert", {"table": table, "columns": list(columns), "types": types,
                               "rows": [[v.isoformat() if isinstance(v, datetime) else v for v in row]
                                        for row in rows]})

    def close(self) -> None:
        pass
