"""Access to ClickHouse: a server (``CLICKHOUSE_URL``) or the embedded chDB engine under ``data_dir``.

chDB allows one process per data directory. The process that opens it (the ``run`` stack, or a lone command
when nothing runs) is its *owner*; while it runs it serves a loopback query gateway (``shared.store.gateway``)
and writes its address to ``<data_dir>/gateway.json``, so ``stancestream sql`` and other readers go through it.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol, Sequence

from shared.errors import StancestreamError
from shared.settings import Settings


class StoreError(StancestreamError):
    """ClickHouse could not be reached or refused a statement."""


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    types: list[str]
    rows: list[tuple]

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row)) for row in self.rows]

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None


class Store(Protocol):
    def query(self, sql: str, params: dict[str, Any] | None = None) -> QueryResult: ...
    def command(self, sql: str, params: dict[str, Any] | None = None) -> None: ...
    def insert(self, table: str, rows: Sequence[Sequence[Any]], columns: Sequence[str]) -> None: ...
    def close(self) -> None: ...


class ClickHouseStore:
    """A clickhouse-connect client; calls are serialised because a chDB session is not thread-safe."""

    def __init__(self, client: Any, description: str, dsn: str | None = None, lock: threading.Lock | None = None):
        self._client = client
        self._lock = lock or threading.Lock()
        self._dsn = dsn
        self._reader: ClickHouseStore | None = None
        self.description = description

    def read_only(self) -> "ClickHouseStore":
        """A second session on the same ClickHouse opened with ``readonly=1`` (ClickHouse then refuses writes,
        DDL, SET and file/url table functions itself), for ad-hoc SQL (``shared.store.sqlpolicy``). It shares
        this store's lock: one chDB engine, one call at a time; max_execution_time bounds how long a query can
        hold the worker's writes back."""
        with self._lock:
            if self._reader is None:
                import clickhouse_connect

                if self._dsn is None:
                    raise StoreError("this store cannot open a read-only session")
                # readonly last: it forbids later SETs. A server user that is read-only already (the compose
                # analyst) may not change either setting: its own profile then does the job.
                for settings in ({"max_execution_time": 60, "readonly": 1}, {"readonly": 1}, {}):
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


_OWNED_CHDB: dict[Path, ClickHouseStore] = {}


def open_store(settings: Settings, *, prefer_gateway: bool = True) -> Store:
    """Connect to the configured ClickHouse.

    Embedded mode: through a running stack's gateway when one is advertised (``prefer_gateway``), otherwise
    by opening chDB here, which makes this process the owner until it exits.
    """
    import clickhouse_connect

    if settings.clickhouse_url is not None:
        url = settings.clickhouse_url.get_secret_value()
        try:
            client = clickhouse_connect.get_client(dsn=url)
        except Exception as exc:
            raise StoreError(f"cannot connect to ClickHouse at {_redact(url)}: {exc}") from exc
        return ClickHouseStore(client, f"ClickHouse server {_redact(url)}", dsn=url)

    chdb_dir = settings.chdb_dir.resolve()
    if chdb_dir in _OWNED_CHDB:  # chDB allows one session per process: share it
        return _OWNED_CHDB[chdb_dir]
    if prefer_gateway:
        from shared.store.gateway import GatewayStore, advertised_stack

        stack = advertised_stack(settings.data_dir)
        if stack is not None:
            return GatewayStore(stack["address"], stack.get("token"))
    chdb_dir.mkdir(parents=True, exist_ok=True)
    try:
        client = clickhouse_connect.get_client(dsn=f"chdb://{chdb_dir}")
    except Exception as exc:
        holder = _lock_holder(settings.data_dir)
        raise StoreError(
            f"cannot open the embedded ClickHouse in {chdb_dir}: {str(exc).strip()}"
            + (f" (it is held by process {holder}, which serves no gateway)" if holder else "")
        ) from exc
    store = ClickHouseStore(client, f"embedded chDB in {chdb_dir}", dsn=f"chdb://{chdb_dir}")
    _OWNED_CHDB[chdb_dir] = store
    (settings.data_dir / "owner.pid").write_text(str(os.getpid()))
    return store


def _lock_holder(data_dir: Path) -> int | None:
    try:
        pid = int((data_dir / "owner.pid").read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def _redact(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        parts = parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@"))
    return urlunsplit(parts)


def as_utc_datetime(value: datetime | str | None) -> datetime | None:
    """A UTC datetime from chDB (naive) or the query gateway (ISO text); None for max() over no rows."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.year < 1971:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
