"""What every store is: the ``Store`` protocol, a query's ``QueryResult``, and the store's errors.

Two stores implement it: ``ClickHouseStore`` (a server, or embedded chDB opened by this process) and
``GatewayStore`` (a running stack's embedded chDB, through its loopback gateway); ``open_store`` picks one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol, Sequence

from shared.errors import StancestreamError


class StoreError(StancestreamError):
    """ClickHouse could not be reached or refused a statement."""


class QueryRefused(StoreError):
    """The ad-hoc SQL policy (``shared.store.sqlpolicy``) refused a statement; the message says why, in one line."""


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


def as_utc_datetime(value: datetime | str | None) -> datetime | None:
    """A UTC datetime from chDB (naive) or the query gateway (ISO text); None for max() over no rows."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.year < 1971:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
