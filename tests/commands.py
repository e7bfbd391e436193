"""Running ``stancestream`` as a user does: its own process, its settings from the environment, the tiny model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def cli_env(tmp_path: Path, tiny_model_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STANCESTREAM_", "KAFKA_", "CLICKHOUSE_"))}
    env |= {"STANCESTREAM_DATA_DIR": str(tmp_path / "var"), "STANCESTREAM_BASE_MODEL": str(tiny_model_dir),
            "STANCESTREAM_ADAPTER": "none",
            "STANCESTREAM_CACHE_DIR": str(tmp_path / "cache"), "STANCESTREAM_DEVICE": "cpu",
            "STANCESTREAM_DTYPE": "fp32", "STANCESTREAM_BATCH_MAX_WAIT_S": "0.2",
            "STANCESTREAM_METRICS_PORT": "0"}
    return env


def run_cli(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "services.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)
