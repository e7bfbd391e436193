"""How the services are wired, once: the store opened and migrated, the adapter registry on it, the broker of a
running stack found, adapter activations announced, and Ctrl-C / SIGTERM turned into a clean stop."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Callable

from shared.messages import AdapterEvent
from shared.settings import Settings
from shared.store import Store, open_store
from shared.store.gateway_client import advertised_stack
from shared.store.migrations import migrate
from shared.streaming.hotswap import publish_adapter_event
from shared.training.registry import AdapterRegistry

log = logging.getLogger(__name__)


def open_migrated_store(settings: Settings, *, prefer_gateway: bool = True) -> Store:
    """The configured store, its schema up to date; embedded, through a running stack's gateway if one runs and
    ``prefer_gateway``."""
    store = open_store(settings, prefer_gateway=prefer_gateway)
    migrate(store, cluster=settings.clickhouse_cluster)
    return store


def open_registry(settings: Settings, store: Store | None = None, *, seed: bool = True) -> AdapterRegistry:
    """The adapter registry on ``store`` (default: the migrated configured store); ``seed``: register the
    configured adapter as the active ``v1`` on first use."""
    registry = AdapterRegistry(store or open_migrated_store(settings), settings.adapters_dir)
    if seed:
        registry.seed(settings.adapter)
    return registry


def kafka_bootstrap(settings: Settings) -> str | None:
    """``KAFKA_BOOTSTRAP``, or the broker of the stack running on this data directory, or None."""
    return settings.kafka_bootstrap or (advertised_stack(settings.data_dir) or {}).get("kafka_bootstrap")


def announcer(settings: Settings) -> Callable[[AdapterEvent], None]:
    """A blocking ``announce(event)`` for callers without a running event loop: the trainer's cycle thread (in
    the stack or its own service) and the ``adapters promote|rollback`` commands.

    It publishes to ``KAFKA_BOOTSTRAP`` or to the broker of the stack running on this data directory; with
    neither, no worker is running and there is nobody to tell: a worker reads the registry when it starts.
    """
    def announce(event: AdapterEvent) -> None:
        bootstrap = kafka_bootstrap(settings)
        if bootstrap is None:
            log.warning("no broker configured or running: workers will load %s when they start", event.version)
            return
        asyncio.run(publish_adapter_event(settings.model_copy(update={"kafka_bootstrap": bootstrap}), event))

    return announce


def on_stop_signals(callback: Callable[[], None]) -> None:
    """Call ``callback`` on SIGINT and SIGTERM, from the running event loop (a service's graceful stop)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, callback)
