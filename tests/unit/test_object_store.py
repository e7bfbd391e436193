"""The durable broker's object store lists a folder of batches its own way, for speed: it must list exactly what
nanio lists, page by page, and leave to nanio what it does not handle; after a kill it repairs what nanio left."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from nanio.storage.filesystem import FilesystemStorage

from shared.streaming.object_store import STAGING_PREFIX, StagingHiddenStorage, recover_from_kill

BUCKET = "tansu"
RECORDS = "clusters/c/topics/t/partitions/0000000000/records/"


async def _body(data: bytes):
    yield data


def _filled(root, batches: int) -> tuple[StagingHiddenStorage, FilesystemStorage]:
    ours, nanios = StagingHiddenStorage(root), FilesystemStorage(root)
    ours.create_bucket(BUCKET)

    async def fill() -> None:
        for offset in range(batches):
            await ours.put_object(BUCKET, f"{RECORDS}{offset:0>20}.batch", _body(b"x" * (offset % 7 + 1)))
        await ours.put_object(BUCKET, "clusters/c/topics/t/partitions/0000000000/watermark.json", _body(b"{}"))

    asyncio.run(fill())
    return ours, nanios


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    return _filled(tmp_path_factory.mktemp("store"), 1_100)


def _pages(store, prefix: str, max_keys: int = 1000) -> list[list]:
    pages, token = [], None
    while True:
        listed = store.list_objects(BUCKET, prefix=prefix, max_keys=max_keys, continuation_token=token)
        pages.append(listed.contents)
        if not listed.is_truncated:
            return pages
        token = listed.next_continuation_token


def test_a_folder_of_batches_lists_as_nanio_lists_it_page_by_page(stores):
    ours, nanios = stores
    assert _pages(ours, RECORDS) == _pages(nanios, RECORDS)
    assert [len(page) for page in _pages(ours, RECORDS)] == [1000, 100]
    assert _pages(ours, RECORDS, max_keys=7)[:3] == _pages(nanios, RECORDS, max_keys=7)[:3]
    after = f"{RECORDS}{1_234:0>20}.batch"
    assert (ours.list_objects(BUCKET, prefix=RECORDS, start_after=after).contents
            == nanios.list_objects(BUCKET, prefix=RECORDS, start_after=after).contents)


def test_what_the_folder_listing_does_not_handle_is_listed_by_nanio(stores):
    ours, nanios = stores
    for prefix in ("clusters/c/", "clusters/c/topics/t/partitions/0000000000/", "clusters/c/topics/t/partitions/0",
                   RECORDS[:-1], "clusters/absent/"):
        assert _pages(ours, prefix) == _pages(nanios, prefix), prefix


def test_a_batch_still_being_written_is_not_listed(tmp_path):
    ours, _ = _filled(tmp_path, 3)
    (tmp_path / BUCKET / RECORDS / f"{STAGING_PREFIX}0123abcd").write_bytes(b"partial")
    keys = [info.key for page in _pages(ours, RECORDS) for info in page]
    assert keys == [f"{RECORDS}{offset:0>20}.batch" for offset in range(3)]


def test_recovery_after_a_kill_rewrites_only_metadata_that_no_longer_describes_its_object(tmp_path):
    """A start after a kill must leave sound metadata alone (it runs over every object before serving) and give a
    body whose metadata is stale or missing its own size and MD5 etag, as nanio would have written them."""
    ours, _ = _filled(tmp_path, 50)
    bodies = [f"{RECORDS}{offset:0>20}.batch" for offset in range(50)]
    sound = {key: ours.head_object(BUCKET, key) for key in bodies}
    assert recover_from_kill(tmp_path) == (0, 0)

    stale, unrecorded = bodies[3], bodies[7]
    (tmp_path / BUCKET / stale).write_bytes(b"a longer body than before")
    (tmp_path / BUCKET / ".nanio-meta" / f"{unrecorded}.json").unlink()
    assert recover_from_kill(tmp_path) == (0, 2)
    for key in (stale, unrecorded):
        body, info = (tmp_path / BUCKET / key).read_bytes(), ours.head_object(BUCKET, key)
        assert (info.size, info.etag) == (len(body), f'"{hashlib.md5(body).hexdigest()}"'), key
    assert all(ours.head_object(BUCKET, key) == sound[key] for key in bodies if key not in (stale, unrecorded))
