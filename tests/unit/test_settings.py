from pathlib import Path

from shared.settings import SHIPPED_ADAPTER, Settings


def test_adapter_can_be_switched_off_and_defaults_to_the_shipped_one(monkeypatch):
    monkeypatch.setenv("STANCESTREAM_ADAPTER", "none")
    assert Settings().adapter is None
    monkeypatch.setenv("STANCESTREAM_ADAPTER", "/some/where")
    assert Settings().adapter == Path("/some/where")
    monkeypatch.delenv("STANCESTREAM_ADAPTER")
    expected = SHIPPED_ADAPTER if (SHIPPED_ADAPTER / "adapter_config.json").exists() else None
    assert Settings().adapter == expected


def test_conventional_variables_are_read(monkeypatch):
    monkeypatch.setenv("KAFKA_BOOTSTRAP", "k1:9092")
    monkeypatch.setenv("CLICKHOUSE_URL", "http://u:secret@ch:8123/db")
    settings = Settings()
    assert settings.kafka_bootstrap == "k1:9092"
    assert "secret" not in repr(settings)  # the URL is a secret
    assert settings.clickhouse_url.get_secret_value().endswith("@ch:8123/db")
