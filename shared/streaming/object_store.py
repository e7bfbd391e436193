"""The durable broker's object store: nanio (a local S3 server from PyPI) with what Tansu's ``s3://`` engine relies on
and nanio 0.1.7 does not do.

- **Conditional writes.** Tansu reserves a partition's offsets, registers producers and commits group offsets by
  read-modify-write of small JSON objects, sent with ``If-Match: <etag>`` (``If-None-Match: *`` when it believes the
  object new), and writes each record batch with ``If-None-Match: *``. nanio ignored both headers. A restarted
  broker, which knows no etag yet, creates a partition's watermark on its first produce: the create overwrote the
  stored one, offsets began again at 0 and the batches the broker had acknowledged were replaced. Here a
  conditional PUT is checked and carried out under a lock on its key, and answered 412 when its condition fails,
  as S3 does; Tansu then reads the object and tries again.
- **No staging files in listings.** nanio writes an object to ``.tmp.<hex>`` beside it and renames it; a listing in
  between showed that name, and Tansu's fetch, which reads every name in a partition's ``records/`` as an offset,
  failed on it — for good once a ``kill -9`` had left one behind. Listings skip them; a start removes leftovers.

``python -m shared.streaming.object_store --host 127.0.0.1 --port P --data-dir D``, with ``NANIO_ACCESS_KEY`` and
``NANIO_SECRET_KEY`` set (every request is SigV4-authenticated with them).
"""

from __future__ import annotations

import argparse
import asyncio
import zlib
from pathlib import Path

from nanio.app import build_app
from nanio.auth.credentials import EnvCredentialResolver
from nanio.config import Settings
from nanio.errors import NoSuchKey, S3Error
from nanio.etag import unquote_etag
from nanio.storage.filesystem import FilesystemStorage
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.responses import Response

STAGING_PREFIX = ".tmp."  # nanio's name for an object being written (FilesystemStorage.put_object)


class PreconditionFailed(S3Error):
    code = "PreconditionFailed"
    message = "At least one of the pre-conditions you specified did not hold"
    http_status = 412


class StagingHiddenStorage(FilesystemStorage):
    """nanio's storage whose listings leave out objects still being written."""

    def list_objects(self, bucket: str, **kwargs):
        listed = super().list_objects(bucket, **kwargs)
        listed.contents[:] = [info for info in listed.contents
                              if not info.key.rpartition("/")[2].startswith(STAGING_PREFIX)]
        return listed


class ConditionalWrites:
    """ASGI middleware: a PUT with ``If-Match`` or ``If-None-Match`` is checked against the stored object and
    carried out under the same lock, so that two writers holding one etag cannot both succeed. Locks are striped by
    key: bounded memory, and writes to different objects rarely wait on each other."""

    def __init__(self, app, storage: FilesystemStorage, stripes: int = 256):
        self.app = app
        self.storage = storage
        self.locks = [asyncio.Lock() for _ in range(stripes)]

    def _etag(self, bucket: str, key: str) -> str | None:
        try:
            return self.storage.head_object(bucket, key).etag
        except NoSuchKey:
            return None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "PUT":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        if_match, if_none_match = headers.get("if-match"), headers.get("if-none-match")
        bucket, _, key = scope["path"].lstrip("/").partition("/")
        if (if_match is None and if_none_match is None) or not key:
            return await self.app(scope, receive, send)
        async with self.locks[zlib.crc32(f"{bucket}/{key}".encode()) % len(self.locks)]:
            current = self._etag(bucket, key)
            exists_but_must_not = if_none_match is not None and if_none_match.strip() == "*" and current is not None
            changed = if_match is not None and (current is None
                                                or unquote_etag(if_match.strip()) != unquote_etag(current))
            if exists_but_must_not or changed:
                error = PreconditionFailed(resource=f"{bucket}/{key}")
                return await Response(error.to_xml(), status_code=error.http_status,
                                      media_type="application/xml")(scope, receive, send)
            await self.app(scope, receive, send)


def remove_staging_leftovers(data_dir: Path) -> int:
    """Delete what writes cut short by a kill left behind (only safe before the server starts)."""
    removed = 0
    for path in data_dir.rglob(f"{STAGING_PREFIX}*"):
        if path.is_file() and not any(part.startswith(".nanio") for part in path.relative_to(data_dir).parts):
            path.unlink()
            removed += 1
    return removed


def build(data_dir: Path, host: str, port: int) -> Starlette:
    settings = Settings(data_dir=data_dir.resolve(), host=host, port=port, credentials=EnvCredentialResolver(),
                        log_level="warning", access_log=False)
    app = build_app(settings)
    storage = app.state.storage = StagingHiddenStorage(settings.data_dir, chunk_size=settings.chunk_size)
    # Appended, so inside nanio's SigV4 middleware: an unauthenticated request learns nothing about any object.
    app.user_middleware.append(Middleware(ConditionalWrites, storage=storage))
    return app


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    remove_staging_leftovers(args.data_dir)
    uvicorn.run(build(args.data_dir, args.host, args.port), host=args.host, port=args.port, workers=1,
                access_log=False, log_level="warning")


if __name__ == "__main__":
    main()
