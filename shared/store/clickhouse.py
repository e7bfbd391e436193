"""A ClickHouse session through clickhouse-connect: a server (``CLICKHOUSE_URL``) or the embedded chDB engine."""

from __future__ import annotations

import threading
from typing import Any, Sequence

from shared.store.base import QueryResult, StoreError


class ClickHouseStore:
    """A clickhouse-connect client; calls are serialised because a chDB session is not thread-safe."""

    def __init__(self, client: Any, description: str, dsn: str | None = None, lock: threading.Lock | None = None,
                 adhoc_timeout_s: float = 10):
        self._client = client
        self._adhoc_timeout_s = adhoc_timeout_s
        self._lock = lock or threading.Lock()
        self._dsn = dsn
        self._reader: ClickHouseStore | None = None
        self.description = description

    def read_only(self) -> "ClickHouseStore":
        """A second session on the same ClickHouse opened with ``readonly=1`` (ClickHouse then refuses writes,
        DDL, SET and file/url table functions itself), for ad-hoc SQL (``shared.store.sqlpolicy``). It shares
        this store's lock: one chDB engine, one call at a time; ``max_execution_time`` (the store's ad-hoc
        timeout, ``STANCESTREAM_QUERY_TIMEOUT_S``) bounds how long a query can hold the worker's writes back."""
        with self._lock:
            if self._reader is None:
                import clickhouse_connect

                if self._dsn is None:
                    raise StoreError("this store cannot open a read-only session")
                # readonly last: it forbids later SETs. A server user that is read-only already (the compose
                # analyst) may not change either setting: its own profile then does the job.
                for settings in ({"max_execution_time": self._adhoc_timeout_s, "readonly": 1}, {"readonly": 1}, {}):
                    try:
                        client = clickhouse_connect.get_client(dsn=self._dsn, settings=settings)
                        break
                    except Exception as exc:
                        failure = exc
                else:
                    raise StoreError(f"cannot open a read-only session: {str(failure).strip()}")
                self._reader = ClickHouseStore(client, f"{self.description} (read-only)", lock=self._lock)
            return self._reader

    def query(self, sql: str, params: dict[str, Any] | None = None) -> QueryResult:
        with self._lock:
            try:
                result = self._client.query(sql, parameters=params or {})
            except Exception as exc:
                raise StoreError(str(exc).strip()) from exc
        return QueryResult(
            list(result.column_names), [t.name for t in result.column_types], [tuple(r) for r in result.result_rows]
        )

    def command(self, sql: str, params: dict[str, Any] | None = None) -> None:
        with self._lock:
            try:
                self._client.command(sql, parameters=params or {})
            except Exception as exc:
                raise StoreError(str(exc).strip()) from exc

    def insert(self, table: str, rows: Sequence[Sequence[Any]], columns: Sequence[str]) -> None:
        if not rows:
            return
        with self._lock:
            try:
                self._client.insert(table, rows, column_names=list(columns))
            except Exception as exc:
                raise StoreError(f"insert into {table} failed: {str(exc).strip()}") from exc

    def close(self) -> None:
        with self._lock:
            if self._reader is not None:
                self._reader._client.close()
            self._client.close()
