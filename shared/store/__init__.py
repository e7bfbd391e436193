"""ClickHouse: the store protocol and its two implementations (a server or embedded chDB; a running stack's
gateway), the migrations, the ad-hoc SQL policy, the sinks the stream writes through, and every query the
library runs (``shared.store.queries``). It knows rows and messages, not the stream, training or the model."""

from shared.store.base import QueryRefused, QueryResult, Store, StoreError
from shared.store.connect import open_store

__all__ = ["QueryRefused", "QueryResult", "Store", "StoreError", "open_store"]
