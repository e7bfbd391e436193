"""Running ``stancestream`` as a user does: its own process, its settings from the environment, the tiny model."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def cli_env(tmp_path: Path, tiny_model_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STANCESTREAM_", "KAFKA_", "CLICKHOUSE_"))}
    env |= {"STANCESTREAM_DATA_DIR": str(tmp_path / "var"), "STANCESTREAM_BASE_MODEL": str(tiny_model_dir),
            "STANCESTREAM_ADAPTER": "none",
            "STANCESTREAM_CACHE_DIR": str(tmp_path / "cache"), "STANCESTREAM_DEVICE": "cpu",
            "STANCESTREAM_DTYPE": "fp32",
            "STANCESTREAM_METRICS_PORT": "0"}
    return env


def run_cli(*args: str, env: dict[str, str], timeout: float = 120, input: str | None = None
            ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "services.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout, input=input)


@contextmanager
def spawn_cli(*args: str, env: dict[str, str], stdin=None, output: Path | None = None
              ) -> Iterator[subprocess.Popen]:
    """`stancestream ARGS` running in the background for the block, its stdout and stderr together in
    ``proc.stdout`` (``stdin=subprocess.PIPE``: a pipe the test writes to) or in the file ``output`` (for a
    long-running, talkative process: a pipe nobody reads would block it when full); however the block ends (a
    failed assertion, a timeout), it is killed if still running and reaped."""
    sink = open(output, "w") if output else subprocess.PIPE
    proc = subprocess.Popen([sys.executable, "-m", "services.cli", *args], cwd=REPO, env=env, text=True,
                            stdin=stdin, stdout=sink, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        (sink if output else proc.stdout).close()


def stop(proc: subprocess.Popen, *signals: signal.Signals, timeout: float) -> str:
    """Send ``signals`` to ``proc`` in turn, half a second apart, and return its output once it exits; if it has
    not exited within ``timeout`` seconds, ``subprocess.TimeoutExpired`` is raised (and `spawn_cli` kills it)."""
    for i, sig in enumerate(signals):
        if i:
            time.sleep(0.5)
        proc.send_signal(sig)
    return proc.communicate(timeout=timeout)[0]
