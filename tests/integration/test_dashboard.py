"""The web dashboard in real headless Chromium against known data: the drawn numbers, and a screenshot."""

from __future__ import annotations

import shutil
import subprocess
import threading
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path

import pytest

from services.views.dashboard import make_server
from shared.store.sinks import CLASSIFICATION_COLUMNS

pytestmark = pytest.mark.clickhouse

ARTIFACTS = Path(__file__).resolve().parents[2] / "out" / "test-artifacts"
NOW = datetime.now(timezone.utc).replace(microsecond=0)
DAY1, DAY2 = NOW - timedelta(days=2), NOW - timedelta(days=1)
LABELS = {"pro": "pro-immigration", "anti": "anti-immigration", "neutral": "neutral", "unrelated": "unrelated"}
# (lang, posted, label, confidence, how many)
KNOWN = [("en", DAY1, "pro", 0.95, 3), ("en", DAY1, "anti", 0.55, 1), ("en", DAY2, "anti", 0.85, 2),
         ("en", DAY2, "neutral", 0.35, 2), ("es", DAY1, "anti", 0.75, 4), ("es", DAY2, "unrelated", 0.95, 5),
         ("de", DAY2, "pro", 0.65, 1)]


class _Elements(HTMLParser):
    def __init__(self):
        super().__init__()
        self.found: list[dict] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("class") in ("point", "volume-bar", "confidence-bar", "adapter") or "data-ready" in attrs:
            self.found.append(attrs)


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("headless Chromium is not installed: run `make setup` (Debian package chromium)")
    return exe


def _load(clean_store):
    rows, n = [], 0
    for lang, posted, label, confidence, count in KNOWN:
        for _ in range(count):
            rest = (1 - confidence) / 3
            probs = [confidence if LABELS[label] == full else rest for full in LABELS.values()]
            rows.append((f"t{n}", "v1", "tiny@0", lang, 0.99, "unrelated" if label == "unrelated" else "immigration",
                         None if label == "unrelated" else label, LABELS[label], *probs, posted, NOW, 10.0, ""))
            n += 1
    clean_store.insert("classifications", rows, CLASSIFICATION_COLUMNS)
    clean_store.insert("adapters", [("v1", None, "/r/v1", "retired", None, "{}", "", NOW - timedelta(days=3),
                                     NOW - timedelta(days=1)),
                                    ("v2", "v1", "/r/v2", "active", "v1", "{}", "", NOW - timedelta(days=1),
                                     NOW - timedelta(days=1) + timedelta(seconds=1))],
                       ("version", "parent", "path", "status", "replaced", "metrics", "reason", "created_at",
                        "updated_at"))


def test_dashboard_in_headless_chromium_draws_the_known_data(clean_store):
    exe = _chromium()
    _load(clean_store)
    server = make_server(clean_store, "127.0.0.1", 0, days=14, refresh_s=60)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    flags = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--no-first-run", "--virtual-time-budget=10000"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        dom = subprocess.run(flags + ["--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
        shot = ARTIFACTS / "dashboard.png"
        shot.unlink(missing_ok=True)
        subprocess.run(flags + [f"--screenshot={shot}", "--window-size=1200,1000", url], capture_output=True,
                       timeout=120)
    finally:
        server.shutdown()
        server.server_close()
    parser = _Elements()
    parser.feed(dom)
    assert any(e.get("data-ready") == "1" for e in parser.found), dom[-2000:]
    points = {(e["data-lang"], e["data-day"], e["data-stance"]): float(e["data-value"])
              for e in parser.found if e.get("class") == "point"}
    d1, d2 = str(DAY1.date()), str(DAY2.date())
    assert points == {("en", d1, "pro"): 0.75, ("en", d1, "anti"): 0.25, ("en", d1, "neutral"): 0.0,
                      ("en", d2, "pro"): 0.0, ("en", d2, "anti"): 0.5, ("en", d2, "neutral"): 0.5,
                      ("es", d1, "pro"): 0.0, ("es", d1, "anti"): 1.0, ("es", d1, "neutral"): 0.0,
                      ("de", d2, "pro"): 1.0, ("de", d2, "anti"): 0.0, ("de", d2, "neutral"): 0.0}
    volume = [(e["data-key"], int(e["data-value"])) for e in parser.found if e.get("class") == "volume-bar"]
    assert volume == [("es", 9), ("en", 8), ("de", 1)]
    confidence = {e["data-key"]: int(e["data-value"]) for e in parser.found if e.get("class") == "confidence-bar"}
    assert confidence == {"0.3": 2, "0.5": 1, "0.6": 1, "0.7": 4, "0.8": 2, "0.9": 8}
    adapters = [(e["data-version"], e["data-status"]) for e in parser.found if e.get("class") == "adapter"]
    assert adapters == [("v1", "retired"), ("v2", "active")]
    assert shot.exists() and shot.stat().st_size > 20_000  # a page with charts, not a blank one
