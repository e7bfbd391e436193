from shared.store.clickhouse import QueryResult, Store, StoreError, open_store

__all__ = ["QueryResult", "Store", "StoreError", "open_store"]
