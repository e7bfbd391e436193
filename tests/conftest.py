"""Shared fixtures: a tiny local model, ONE embedded ClickHouse (chDB) and ONE Tansu broker for the whole session;
and the markers that say which tests need them.

chDB opens a single data directory per process, so every test that needs ClickHouse uses ``store`` (migrated
once) or ``clean_store`` (the same store with the data tables emptied).

Tiers by folder: ``unit/`` runs in-process against neither broker nor store (``pytest -m "not integration"``,
the inner loop); ``integration/`` uses the real broker, store or training; ``e2e/`` runs the ``stancestream``
command as a user does (marked ``integration`` and ``e2e``). A test opts in to infrastructure with a marker
(``kafka``, ``clickhouse``, ``model``); using a fixture of that kind without its marker is a collection error.
The helper modules beside this file (``tiny_model``, ``labeled``, ``streams``, ``poison``, ``reliability_log``)
are importable from every folder: pytest puts this folder on ``sys.path`` for its conftest.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.settings import Settings

TESTS = Path(__file__).resolve().parent
#: The markers of each folder's tests.
TIER_MARKERS = {"unit": (), "integration": ("integration",), "e2e": ("integration", "e2e")}
#: The infrastructure a fixture brings: a test that uses it (directly or through another fixture) carries the marker.
FIXTURE_MARKERS = {"broker": "kafka", "store_dir": "clickhouse", "tiny_model_dir": "model"}

DATA_TABLES = ("tweets", "classifications", "dead_letters", "labels", "holdout", "adapters",
               "adapter_runs", "replay_runs", "label_shares", "drift")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", default=False, help="also run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    problems = []
    for item in items:
        tier = item.path.relative_to(TESTS).parts[0]
        if tier not in TIER_MARKERS:
            problems.append(f"{item.nodeid}: put it under one of {', '.join(f'tests/{t}/' for t in TIER_MARKERS)}")
            continue
        for name in TIER_MARKERS[tier]:
            item.add_marker(name)
        marked = {mark.name for mark in item.iter_markers()}
        missing = sorted({FIXTURE_MARKERS[f] for f in item.fixturenames if f in FIXTURE_MARKERS} - marked)
        if missing:
            problems.append(f"{item.nodeid}: uses {' and '.join(missing)}: mark it "
                            + ", ".join(f"pytest.mark.{name}" for name in missing))
        if tier == "unit" and marked & {"kafka", "clickhouse"}:
            problems.append(f"{item.nodeid}: needs a broker or a store: move it to tests/integration/")
    if problems:
        raise pytest.UsageError("test markers:\n" + "\n".join(problems))
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: loads the real base model (use --run-slow)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory):
    from tiny_model import build_tiny_model  # tests/ is on sys.path (rootdir conftest)

    return build_tiny_model(tmp_path_factory.mktemp("tiny-gemma"))


@pytest.fixture(scope="session")
def tiny_settings(tiny_model_dir, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    # infer_batch_size=4 and pass_tokens=512: a handful of texts already spans several training sub-batches, and
    # packed passes of two rows (of 256 tokens) when served.
    return Settings(base_model=str(tiny_model_dir), adapter=None, dtype="fp32", device="cpu",
                    cache_dir=tmp_path_factory.mktemp("model-cache"), infer_batch_size=4, max_tokens=64,
                    pass_tokens=512)


@pytest.fixture(scope="session")
def tiny_classifier(tiny_settings):
    from shared.classifier.model import StanceClassifier

    return StanceClassifier.load(tiny_settings)


@pytest.fixture(scope="session")
def store_dir(tmp_path_factory: pytest.TempPathFactory):
    """The session's one embedded-store data_dir: Settings(data_dir=store_dir) reuses the open chDB."""
    return tmp_path_factory.mktemp("store")


@pytest.fixture(scope="session")
def store(store_dir):
    from shared.store import open_store
    from shared.store.migrations import migrate

    store = open_store(Settings(data_dir=store_dir), prefer_gateway=False)
    migrate(store)
    return store


@pytest.fixture
def clean_store(store):
    for table in DATA_TABLES:
        store.command(f"TRUNCATE TABLE IF EXISTS {table}")
    return store


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory):
    """A real Tansu broker (in-memory storage) on a free loopback port, for the whole session."""
    from shared.streaming.broker import EmbeddedBroker

    with EmbeddedBroker(log_file=tmp_path_factory.mktemp("broker") / "tansu.log") as running:
        yield running


@pytest.fixture(scope="session")
def tiny_adapter(tiny_settings, tmp_path_factory: pytest.TempPathFactory):
    """A LoRA adapter of the tiny model, trained by ``train`` on the tests' own labeled rows."""
    from labeled import TINY_RECIPE, write_labeled_csv
    from shared.training.config import TrainConfig
    from shared.training.data import read_labeled
    from shared.training.loop import train

    root = tmp_path_factory.mktemp("tiny-adapter")
    data = write_labeled_csv(root / "labels.csv", n_per_cell=5)
    return train(tiny_settings, read_labeled([data]), root / "run", TrainConfig(**TINY_RECIPE), version="v1",
                 progress=False).adapter_dir
