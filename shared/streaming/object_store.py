"""The durable broker's object store: nanio (a local S3 server from PyPI) with what Tansu's ``s3://`` engine relies on
and nanio 0.1.7 does not do.

- **Conditional writes.** Tansu reserves a partition's offsets, registers producers and commits group offsets by
  read-modify-write of small JSON objects, sent with ``If-Match: <etag>`` (``If-None-Match: *`` when it believes the
  object new), and writes each record batch with ``If-None-Match: *``. nanio ignored both headers. A restarted
  broker, which knows no etag yet, creates a partition's watermark on its first produce: the create overwrote the
  stored one, offsets began again at 0 and the batches the broker had acknowledged were replaced. Here a
  conditional PUT is checked and carried out under a lock on its key, and answered 412 when its condition fails,
  as S3 does; Tansu then reads the object and tries again.
- **Whole reads.** nanio answers a GET from an object's metadata and opens its body later; a write in between
  served the new body cut to the old size. Requests for one object run one at a time (``OneRequestPerObject``).
- **No staging files in listings.** nanio writes an object to ``.tmp.<hex>`` beside it and renames it; a listing in
  between showed that name, and Tansu's fetch, which reads every name in a partition's ``records/`` as an offset,
  failed on it — for good once a ``kill -9`` had left one behind. Listings skip them.
- **Recovery from a kill.** A kill can also leave a body with the metadata of the one before it, or a metadata
  temporary that blocks every later write of its object: a start removes leftovers and rewrites stale metadata
  (``recover_from_kill``).
- **Retention of what every group has consumed.** Tansu 0.6 deletes nothing (its ``DeleteRecords`` is
  unimplemented) and answers a fetch by listing every batch object of the partition, so a partition fed one batch
  per tweet stopped answering fetches after about a thousand batches. Whenever a group commits an offset, the
  batches below the lowest offset any group has committed on that partition are deleted (docs/reliability.md).

``python -m shared.streaming.object_store --host 127.0.0.1 --port P --data-dir D``, with ``NANIO_ACCESS_KEY`` and
``NANIO_SECRET_KEY`` set (every request is SigV4-authenticated with them).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import os
import re
import zlib
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from nanio.app import build_app
from nanio.auth.credentials import EnvCredentialResolver
from nanio.config import Settings
from nanio.errors import NoSuchKey, S3Error
from nanio.etag import quote_etag, unquote_etag
from nanio.storage.backend import ListResult, ObjectInfo
from nanio.storage.filesystem import FilesystemStorage, _decode_token, _encode_token
from nanio.storage.metadata import read_metadata, write_metadata
from nanio.storage.paths import META_DIR_NAME, is_internal_name
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.responses import Response

STAGING_PREFIX = ".tmp."  # nanio's name for an object being written (FilesystemStorage.put_object)
# Where Tansu's s3 engine keeps a group's committed offset and a partition's batches (tansu-storage dynostore.rs).
COMMITTED_OFFSET_KEY = re.compile(
    r"clusters/(?P<cluster>[^/]+)/groups/consumers/[^/]+/offsets/(?P<topic>[^/]+)"
    r"/partitions/(?P<partition>\d{10})\.json")
BATCH_SUFFIX = ".batch"  # records/<base offset, 20 digits>.batch

log = logging.getLogger(__name__)


class PreconditionFailed(S3Error):
    code = "PreconditionFailed"
    message = "At least one of the pre-conditions you specified did not hold"
    http_status = 412


class StagingHiddenStorage(FilesystemStorage):
    """nanio's storage whose listings leave out objects still being written, and list a folder of objects fast.

    Tansu lists a partition's ``records/`` folder on every fetch, and gives the fetch up when the listing outlasts
    the consumer's fetch wait. nanio spent 0.1 ms per key, three quarters of it re-validating paths it had just
    read from the disk, so a consumer with 100 ms to wait could not get past a backlog of about 1,000 batches."""

    def list_objects(self, bucket: str, *, prefix: str = "", delimiter: str | None = None, max_keys: int = 1000,
                     continuation_token: str | None = None, start_after: str | None = None) -> ListResult:
        listed = self._list_folder(bucket, prefix, delimiter, max_keys, continuation_token, start_after)
        if listed is None:
            listed = super().list_objects(bucket, prefix=prefix, delimiter=delimiter, max_keys=max_keys,
                                          continuation_token=continuation_token, start_after=start_after)
        listed.contents[:] = [info for info in listed.contents
                              if not info.key.rpartition("/")[2].startswith(STAGING_PREFIX)]
        return listed

    def _list_folder(self, bucket: str, prefix: str, delimiter: str | None, max_keys: int,
                     continuation_token: str | None, start_after: str | None) -> ListResult | None:
        """The same listing as nanio's for a prefix that names a folder holding only objects (what Tansu asks for);
        None for anything else, which nanio lists."""
        segments = prefix[:-1].split("/")
        if (delimiter is not None or not prefix.endswith("/") or not 0 < max_keys <= 1000
                or any(not segment or segment in (".", "..") or segment.startswith(".") for segment in segments)):
            return None
        bucket_root = str(self._require_bucket_dir(bucket))  # nanio's checks of the bucket name, as its listing
        try:
            with os.scandir(os.path.join(bucket_root, *segments)) as entries:
                entries = list(entries)
        except (OSError, ValueError):  # absent, not a folder, a NUL in the name: nanio answers as it does
            return None
        if any(entry.is_dir(follow_symlinks=False) or entry.is_symlink() for entry in entries):
            return None
        resume_after = _decode_token(continuation_token) if continuation_token else start_after
        keys = sorted(prefix + entry.name for entry in entries if not is_internal_name(entry.name))
        contents, truncated = [], False
        for key in keys:
            if resume_after is not None and key <= resume_after:
                continue
            if len(contents) == max_keys:
                truncated = True
                break
            try:
                contents.append(read_metadata(os.path.join(bucket_root, META_DIR_NAME, key + ".json"), key))
            except FileNotFoundError:
                continue  # deleted since the scan, or still being written (its sidecar comes last)
            except (ValueError, KeyError, OSError):
                return None  # nanio's listing copes with an unreadable sidecar
        return ListResult(contents=contents, common_prefixes=[], is_truncated=truncated,
                          next_continuation_token=_encode_token(contents[-1].key) if truncated else None)


class OneRequestPerObject:
    """ASGI middleware: the requests that read or write one object run one at a time, and a PUT with ``If-Match``
    or ``If-None-Match`` is checked against the stored object under the same lock.

    - Two writers holding one etag cannot both succeed.
    - A read sees one whole version: nanio answers a GET from the object's metadata, then opens its body only when
      it sends it, so a write landing in between had a reader receive the new body cut to the old size (a
      watermark read so failed a produce with "EOF while parsing", in one CI-like run of racing producers).

    Locks are striped by key: bounded memory, and requests for different objects rarely wait on each other."""

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
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD", "PUT", "DELETE"):
            return await self.app(scope, receive, send)
        bucket, _, key = scope["path"].lstrip("/").partition("/")
        if not key:  # a bucket's listing or the bucket itself
            return await self.app(scope, receive, send)
        async with self.locks[zlib.crc32(f"{bucket}/{key}".encode()) % len(self.locks)]:
            if scope["method"] == "PUT" and not self._precondition_holds(Headers(scope=scope), bucket, key):
                error = PreconditionFailed(resource=f"{bucket}/{key}")
                return await Response(error.to_xml(), status_code=error.http_status,
                                      media_type="application/xml")(scope, receive, send)
            await self.app(scope, receive, send)

    def _precondition_holds(self, headers: Headers, bucket: str, key: str) -> bool:
        if_match, if_none_match = headers.get("if-match"), headers.get("if-none-match")
        if if_match is None and if_none_match is None:
            return True
        current = self._etag(bucket, key)
        if if_none_match is not None and if_none_match.strip() == "*" and current is not None:
            return False
        return if_match is None or (current is not None and unquote_etag(if_match.strip()) == unquote_etag(current))


class ConsumedRetention:
    """Deletes a partition's record batches that every consumer group with an offset on it has committed past.

    A batch goes only when the *next* batch's base offset is at or below the lowest committed offset, so no record
    anyone may still read is deleted, whatever a batch holds; the newest batch always stays (Tansu answers
    "latest" from it). Groups commit only what they have finished with (the worker: after the ClickHouse write), so
    a crash loses nothing. A partition no group has committed on keeps everything; a group that stopped for good
    holds its partitions' batches until its offsets are deleted. Trims run one at a time in a thread, each
    partition at most once per wave of commits."""

    def __init__(self, storage: FilesystemStorage):
        self.storage = storage
        self._pending: dict[tuple[str, str, str, str], None] = {}
        self._running: asyncio.Task | None = None

    @staticmethod
    def partition_of(bucket: str, key: str) -> tuple[str, str, str, str] | None:
        """(bucket, cluster, topic, partition) when ``key`` is a group's committed offset, else None."""
        match = COMMITTED_OFFSET_KEY.fullmatch(key)
        return None if match is None else (bucket, match["cluster"], match["topic"], match["partition"])

    def committed(self, partition: tuple[str, str, str, str]) -> None:
        """A group's committed offset on ``partition`` was written: trim it soon."""
        self._pending[partition] = None
        if self._running is None or self._running.done():
            self._running = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        while self._pending:
            partition = next(iter(self._pending))
            del self._pending[partition]
            await asyncio.to_thread(self._trim_or_warn, *partition)

    def _trim_or_warn(self, bucket: str, cluster: str, topic: str, partition: str) -> int:
        try:
            return self.trim(bucket, cluster, topic, partition)
        except (OSError, ValueError, KeyError) as exc:  # the next commit tries again; serving goes on
            log.warning("retention of %s/%s/%s failed: %s", cluster, topic, partition, exc)
            return 0

    def trim(self, bucket: str, cluster: str, topic: str, partition: str) -> int:
        """Delete what every group has consumed of one partition; how many batches went."""
        cluster_dir = self.storage.data_dir / bucket / "clusters" / cluster
        floors = []
        for group in _subdirs(cluster_dir / "groups" / "consumers"):
            try:
                floors.append(json.loads((Path(group) / "offsets" / topic / "partitions" / f"{partition}.json")
                                         .read_bytes())["offset"])
            except FileNotFoundError:
                continue  # this group has not committed on this partition
        if not floors:
            return 0
        floor = min(floors)
        records = cluster_dir / "topics" / topic / "partitions" / partition / "records"
        try:
            bases = sorted(int(name[:-len(BATCH_SUFFIX)]) for name in os.listdir(records)
                           if name.endswith(BATCH_SUFFIX) and not name.startswith(STAGING_PREFIX))
        except FileNotFoundError:
            return 0
        removed = 0
        for base, following in zip(bases, bases[1:]):
            if following > floor:
                break
            self.storage.delete_object(bucket, (records / f"{base:0>20}{BATCH_SUFFIX}")
                                       .relative_to(self.storage.data_dir / bucket).as_posix())
            removed += 1
        return removed

    def trim_all(self) -> int:
        """Trim every partition some group has committed on (at start: a restart trims what was committed)."""
        partitions = {self.partition_of(Path(bucket).name, offset_file.relative_to(bucket).as_posix())
                      for bucket in _subdirs(self.storage.data_dir)
                      for offset_file in Path(bucket).glob("clusters/*/groups/consumers/*/offsets/*/partitions/*.json")}
        return sum(self._trim_or_warn(*partition) for partition in partitions - {None})


class RetentionOnCommit:
    """ASGI middleware: after a PUT of a group's committed offset succeeded, hand its partition to
    :class:`ConsumedRetention`."""

    def __init__(self, app, retention: ConsumedRetention):
        self.app = app
        self.retention = retention

    async def __call__(self, scope, receive, send) -> None:
        partition = None
        if scope["type"] == "http" and scope["method"] == "PUT":
            bucket, _, key = scope["path"].lstrip("/").partition("/")
            partition = self.retention.partition_of(bucket, key)
        if partition is None:  # batches and watermarks pass straight through
            return await self.app(scope, receive, send)
        status = []

        async def send_noting_status(message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        await self.app(scope, receive, send_noting_status)
        if status == [200]:
            self.retention.committed(partition)


def _subdirs(path: Path) -> list[str]:
    try:
        return [entry.path for entry in os.scandir(path)
                if entry.is_dir(follow_symlinks=False) and not entry.name.startswith(".")]
    except FileNotFoundError:
        return []


def recover_from_kill(data_dir: Path) -> tuple[int, int]:
    """Undo what writes cut short by a kill left behind (only safe before the server starts); how many staging
    files went and how many objects' metadata was rewritten.

    nanio writes a body to a staging file, renames it into place, then writes the object's metadata (size, etag)
    through a temporary of its own, opened exclusively. A kill before the rename leaves a staging file; between the
    rename and the metadata, a new body with the old metadata, which nanio then serves cut to the old size (Tansu
    failed every produce to a partition whose watermark was left so); during the metadata, a temporary that makes
    every later write of that object fail. Staging files and temporaries are removed, and an object whose metadata
    is missing, of another size or not written after its body gets it again from the body itself."""
    removed = repaired = 0
    for bucket in map(Path, _subdirs(data_dir)):
        meta_root = bucket / META_DIR_NAME
        for leftover in meta_root.rglob("*.json.tmp"):
            leftover.unlink()
            removed += 1
        for folder, subfolders, names in os.walk(bucket):
            subfolders[:] = [name for name in subfolders if not is_internal_name(name)]
            for name in names:
                body = Path(folder) / name
                if name.startswith(STAGING_PREFIX):
                    body.unlink()
                    removed += 1
                elif not is_internal_name(name) and not body.is_symlink():  # nanio serves no links either
                    key = body.relative_to(bucket).as_posix()
                    repaired += _rewrite_stale_metadata(body, meta_root / f"{key}.json", key)
    return removed, repaired


def _rewrite_stale_metadata(body: Path, sidecar: Path, key: str) -> bool:
    """Rewrite ``sidecar`` from ``body`` unless it describes it: the same size, and written after the body or
    holding its MD5 (file times are coarse: a body and its metadata often share one)."""
    stat = body.stat()
    try:
        info = read_metadata(sidecar, key)
        if info.size == stat.st_size and sidecar.stat().st_mtime_ns > stat.st_mtime_ns:
            return False
    except (OSError, ValueError, KeyError):
        info = ObjectInfo(key=key, size=0, etag="", last_modified=datetime.now(tz=UTC))
    etag = quote_etag(hashlib.md5(body.read_bytes(), usedforsecurity=False).hexdigest())
    if info.size == stat.st_size and info.etag == etag:
        return False
    write_metadata(sidecar, replace(info, size=stat.st_size, etag=etag,
                                    last_modified=datetime.fromtimestamp(stat.st_mtime, tz=UTC)))
    return True


def build(data_dir: Path, host: str, port: int) -> Starlette:
    settings = Settings(data_dir=data_dir.resolve(), host=host, port=port, credentials=EnvCredentialResolver(),
                        log_level="warning", access_log=False)
    app = build_app(settings)
    storage = app.state.storage = StagingHiddenStorage(settings.data_dir, chunk_size=settings.chunk_size)
    # Appended, so inside nanio's SigV4 middleware: an unauthenticated request learns nothing about any object.
    app.user_middleware.append(Middleware(RetentionOnCommit, retention=ConsumedRetention(storage)))
    app.user_middleware.append(Middleware(OneRequestPerObject, storage=storage))
    return app


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    removed, repaired = recover_from_kill(args.data_dir)
    if removed or repaired:  # lands in broker.log: what the last stop cut short
        log.warning("recovered from an interrupted stop: %d unfinished writes removed, %d objects' metadata "
                    "rewritten from their bodies", removed, repaired)
    ConsumedRetention(StagingHiddenStorage(args.data_dir.resolve())).trim_all()
    uvicorn.run(build(args.data_dir, args.host, args.port), host=args.host, port=args.port, workers=1,
                access_log=False, log_level="warning")


if __name__ == "__main__":
    main()
