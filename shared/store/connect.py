"""Opening the configured ClickHouse: a server (``CLICKHOUSE_URL``) or the embedded chDB engine under ``data_dir``.

chDB allows one process per data directory. The process that opens it (the ``run`` stack, or a lone command
when nothing runs) is its *owner*; while it runs it serves a loopback query gateway (``shared.store.gateway``)
and writes its address to ``<data_dir>/gateway.json``, so ``stancestream sql`` and other readers go through it.
"""

from __future__ import annotations

import os
from pathlib import Path

from shared.settings import Settings
from shared.store.base import Store, StoreError
from shared.store.clickhouse import ClickHouseStore
from shared.store.gateway_client import GatewayStore, advertised_stack

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
        return ClickHouseStore(client, f"ClickHouse server {_redact(url)}", dsn=url,
                               adhoc_timeout_s=settings.query_timeout_s)

    chdb_dir = settings.chdb_dir.resolve()
    if chdb_dir in _OWNED_CHDB:  # chDB allows one session per process: share it
        return _OWNED_CHDB[chdb_dir]
    if prefer_gateway:
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
    store = ClickHouseStore(client, f"embedded chDB in {chdb_dir}", dsn=f"chdb://{chdb_dir}",
                            adhoc_timeout_s=settings.query_timeout_s)
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
