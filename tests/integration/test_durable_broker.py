"""The embedded broker's durable storage, against a real Tansu and its real object store: what a restarted broker
keeps, and what a write interrupted by a kill leaves behind."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from nanio.auth.sigv4 import build_canonical_request, build_string_to_sign, compute_signature, derive_signing_key

from shared.streaming.broker import EmbeddedBroker, _await_listening, free_port
from shared.streaming.topics import create_topic

pytestmark = pytest.mark.kafka  # a real Tansu process (durable storage: each test starts its own)

TOPIC = "durable.check"
WRITERS = 8


async def _produce(bootstrap: str, values: list[bytes]) -> list[int]:
    """Each value on its own produce request; the offsets the broker answered."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        return [(await producer.send_and_wait(TOPIC, value, partition=0)).offset for value in values]
    finally:
        await producer.stop()


async def _read_all(bootstrap: str, expected: int, timeout_s: float = 20) -> list[tuple[int, bytes]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partition = TopicPartition(TOPIC, 0)
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
        seen: list[tuple[int, bytes]] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while len(seen) < expected and loop.time() < deadline:
            batches = await consumer.getmany(partition, timeout_ms=500)
            seen += [(m.offset, m.value) for m in batches.get(partition, [])]
        return seen
    finally:
        await consumer.stop()


def test_a_restarted_broker_continues_the_offsets_instead_of_overwriting_what_it_kept(tmp_path):
    """The first produce after a restart, before anything has read the partition, must append: Tansu reserves
    offsets by a conditional write of the partition's watermark, which an object store that ignores
    ``If-None-Match``/``If-Match`` turns into an overwrite from offset 0 (the first messages silently replaced)."""
    storage, log = tmp_path / "broker", tmp_path / "tansu.log"
    first, second = [f"first-{i}".encode() for i in range(5)], [f"second-{i}".encode() for i in range(5)]
    with EmbeddedBroker(log_file=log, storage_dir=storage) as broker:
        asyncio.run(create_topic(broker.bootstrap, TOPIC))
        assert asyncio.run(_produce(broker.bootstrap, first)) == [0, 1, 2, 3, 4]
    with EmbeddedBroker(log_file=log, storage_dir=storage) as broker:
        offsets = asyncio.run(_produce(broker.bootstrap, second))
        kept = asyncio.run(_read_all(broker.bootstrap, 10))
    assert offsets == [5, 6, 7, 8, 9], f"the restarted broker reserved {offsets}"
    assert kept == list(enumerate(first + second))


def test_a_write_cut_off_by_a_kill_does_not_wedge_the_partition(tmp_path):
    """A kill -9 of the object store in the middle of a write leaves its staging file beside the records; the
    partition must still be readable and writable after a restart (a listing that showed the staging file made
    every fetch of the partition fail on its name)."""
    storage, log = tmp_path / "broker", tmp_path / "tansu.log"
    with EmbeddedBroker(log_file=log, storage_dir=storage) as broker:
        asyncio.run(create_topic(broker.bootstrap, TOPIC))
        asyncio.run(_produce(broker.bootstrap, [b"kept"]))
        object_store_pid = broker._s3.pid
        records = next(storage.rglob(f"topics/{TOPIC}/partitions/*/records"))
        # What the store's staging leaves when killed mid-write: a partial body under its temporary name.
        (records / ".tmp.0123456789abcdef0123456789abcdef").write_bytes(b"\x00partial")
        os.kill(object_store_pid, signal.SIGKILL)
    with EmbeddedBroker(log_file=log, storage_dir=storage) as broker:
        asyncio.run(_produce(broker.bootstrap, [b"after"]))
        kept = asyncio.run(_read_all(broker.bootstrap, 2))
    assert [value for _, value in kept] == [b"kept", b"after"]


@pytest.mark.parametrize("killed", ["before its metadata", "while writing its metadata"])
def test_a_kill_between_an_objects_body_and_its_metadata_does_not_wedge_the_partition(tmp_path, killed):
    """nanio renames a new body into place, then writes its metadata (size, etag) beside it through an exclusive
    temporary. A kill -9 between the two left the watermark's new body with the old metadata: when the sizes
    differed, every read of it came back cut short and every produce to the partition failed with
    UnknownServerError, for good (CI, stop 42). A kill during the metadata left a temporary that failed every later
    write of the watermark. Here the state each kill leaves is made on disk; a restart must produce on and read
    everything back."""
    storage, log = tmp_path / "broker", tmp_path / "tansu.log"
    with EmbeddedBroker(log_file=log, storage_dir=storage) as broker:
        asyncio.run(create_topic(broker.bootstrap, TOPIC))
        assert asyncio.run(_produce(broker.bootstrap, [f"m{i}".encode() for i in range(9)])) == list(range(9))
        object_store_pid = broker._s3.pid
        watermark = next(storage.rglob(f"topics/{TOPIC}/partitions/*/watermark.json"))
        # The next produce's reservation (offsets 9..10, one digit longer) renamed into place, and the kill before
        # Tansu wrote the batch.
        stored = json.loads(watermark.read_bytes())
        assert stored["high"] == 9
        watermark.write_bytes(json.dumps(stored | {"high": 11}, separators=(",", ":")).encode())
        if killed == "while writing its metadata":
            metadata = storage / "tansu" / ".nanio-meta" / f"{watermark.relative_to(storage / 'tansu')}.json"
            assert metadata.is_file()
            metadata.with_name(metadata.name + ".tmp").write_bytes(b'{"etag":')
        os.kill(object_store_pid, signal.SIGKILL)
    with EmbeddedBroker(log_file=log, storage_dir=storage) as broker:
        offsets = asyncio.run(_produce(broker.bootstrap, [b"after"]))
        offsets += asyncio.run(_produce(broker.bootstrap, [b"after again"]))
        kept = asyncio.run(_read_all(broker.bootstrap, 11))
    assert offsets == [11, 12], "the reserved offsets are skipped, never reused"
    assert "recovered from an interrupted stop" in log.read_text(), "the repair is told in broker.log"
    assert [value for _, value in kept] == [f"m{i}".encode() for i in range(9)] + [b"after", b"after again"]


def _signed(method: str, endpoint: str, path: str, body: bytes, key: str, secret: str) -> dict[str, str]:
    """SigV4 headers for one request to the object store (as Tansu's client signs them)."""
    now = datetime.now(tz=UTC)
    day, scope = now.strftime("%Y%m%d"), f"{now:%Y%m%d}/us-east-1/s3/aws4_request"
    headers = {"host": endpoint.split("//", 1)[1], "x-amz-date": now.strftime("%Y%m%dT%H%M%SZ"),
               "x-amz-content-sha256": hashlib.sha256(body).hexdigest()}
    names = sorted(headers)
    canonical = build_canonical_request(method=method, path=path, query="", headers=headers, signed_headers=names,
                                        payload_hash=headers["x-amz-content-sha256"])
    signature = compute_signature(derive_signing_key(secret, date=day, region="us-east-1"),
                                  build_string_to_sign(amz_date=headers["x-amz-date"], credential_scope=scope,
                                                       canonical_request=canonical))
    return headers | {"authorization": f"AWS4-HMAC-SHA256 Credential={key}/{scope}, SignedHeaders={';'.join(names)}, "
                                       f"Signature={signature}"}


def test_a_read_racing_writes_of_the_same_object_gets_one_whole_version(tmp_path):
    """nanio answers a GET from the object's metadata and opens the body only as it sends it: a write landing in
    between had the reader receive the new body cut to the old size (Tansu, reading a watermark so, failed a produce
    with "EOF while parsing" — `test_concurrent_producers_never_share_an_offset`, once in a loop of CI-like runs).
    32 readers race 120 writes of one object that alternate between two sizes; every read must be a whole version:
    its body's MD5 is the etag it came with. (Before the fix: 1-15 torn reads in every run of this shape.)"""
    (tmp_path / "tansu").mkdir()
    port, key, secret = free_port(), "racer", "a-secret-of-forty-characters-0123456789ab"
    store = subprocess.Popen([sys.executable, "-m", "shared.streaming.object_store", "--port", str(port),
                              "--data-dir", str(tmp_path)], env=os.environ | {"NANIO_ACCESS_KEY": key,
                                                                               "NANIO_SECRET_KEY": secret},
                             stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    endpoint, path = f"http://127.0.0.1:{port}", "/tansu/race/watermark.json"

    async def race() -> tuple[int, list]:
        torn, reads, writing = [], 0, True
        async with httpx.AsyncClient(base_url=endpoint, timeout=30) as client:
            async def write() -> None:
                nonlocal writing
                for n in range(120):
                    body = json.dumps({"high": 7 if n % 2 else 7_000_000_000}).encode()
                    answer = await client.put(path, content=body, headers=_signed("PUT", endpoint, path, body, key,
                                                                                   secret))
                    assert answer.status_code == 200, answer.text
                writing = False

            async def read() -> None:
                nonlocal reads
                while writing:
                    try:
                        answer = await client.get(path, headers=_signed("GET", endpoint, path, b"", key, secret))
                    except httpx.RemoteProtocolError as exc:  # a body shorter than the length announced
                        torn.append(str(exc))
                        continue
                    if answer.status_code == 200:
                        reads += 1
                        if answer.headers["etag"] != f'"{hashlib.md5(answer.content).hexdigest()}"':
                            torn.append(answer.content)

            await asyncio.gather(write(), *(read() for _ in range(32)))
        return reads, torn

    try:
        _await_listening(store, port, "the object store", 15)
        reads, torn = asyncio.run(race())
    finally:
        store.kill()
        store.wait()
    assert reads > 100, "the readers hardly overlapped the writes"
    assert torn == [], f"{len(torn)} of {reads} reads were not one whole version: {torn[:3]}"


def test_concurrent_producers_never_share_an_offset(tmp_path):
    """Producers racing on one partition: every message gets its own offset and is read back (the watermark's
    conditional update is what serialises them)."""
    storage, log = tmp_path / "broker", tmp_path / "tansu.log"

    async def race(bootstrap: str) -> list[int]:
        lists = await asyncio.gather(*(_produce(bootstrap, [f"w{w}-{i}".encode() for i in range(10)])
                                       for w in range(WRITERS)))
        return [o for offsets in lists for o in offsets]

    with EmbeddedBroker(log_file=log, storage_dir=storage) as broker:
        asyncio.run(create_topic(broker.bootstrap, TOPIC))
        offsets = asyncio.run(race(broker.bootstrap))
        kept = asyncio.run(_read_all(broker.bootstrap, WRITERS * 10))
    assert sorted(offsets) == list(range(WRITERS * 10))
    assert sorted(value for _, value in kept) == sorted(f"w{w}-{i}".encode() for w in range(WRITERS)
                                                        for i in range(10))


async def _commit(bootstrap: str, group: str, offset: int) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(TOPIC, 0)])
        await consumer.commit({TopicPartition(TOPIC, 0): offset})
    finally:
        await consumer.stop()


async def _resume(bootstrap: str, group: str, expected: int, commit: int | None = None,
                  timeout_s: float = 20) -> list[int]:
    """The offsets a member of ``group`` reads from where the group committed (earliest if it never did); then it
    commits ``commit`` if given."""
    consumer = AIOKafkaConsumer(TOPIC, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        seen: list[int] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while len(seen) < expected and loop.time() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            seen += [m.offset for messages in batches.values() for m in messages]
        if commit is not None:
            await consumer.commit({TopicPartition(TOPIC, 0): commit})
        return seen
    finally:
        await consumer.stop()


def _batches_settled(records, timeout_s: float = 10) -> list[int]:
    """The base offsets of the batches on disk, once the object store's trimming has stopped changing them."""
    deadline, previous = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        current = sorted(int(path.name[:20]) for path in records.glob("*.batch"))
        if current == previous:
            return current
        previous = current
        time.sleep(0.3)
    return previous


def test_batches_every_group_has_committed_past_are_deleted_and_every_group_still_reads_on(tmp_path):
    """Retention keeps what the slowest group has not consumed: a group behind the others pins the batches it has
    still to read, each group resumes exactly at its committed offset, and after a restart the offsets continue."""
    storage, log = tmp_path / "broker", tmp_path / "tansu.log"
    with EmbeddedBroker(log_file=log, storage_dir=storage) as broker:
        asyncio.run(create_topic(broker.bootstrap, TOPIC))
        asyncio.run(_produce(broker.bootstrap, [f"m{i}".encode() for i in range(40)]))
        records = next(storage.rglob(f"topics/{TOPIC}/partitions/*/records"))
        assert _batches_settled(records) == list(range(40))  # no group has committed: nothing may go
        asyncio.run(_commit(broker.bootstrap, "behind", 10))
        asyncio.run(_commit(broker.bootstrap, "ahead", 30))
        assert _batches_settled(records) == list(range(10, 40))
        assert asyncio.run(_resume(broker.bootstrap, "behind", 30, commit=35)) == list(range(10, 40))
        assert _batches_settled(records) == list(range(30, 40))
        assert asyncio.run(_resume(broker.bootstrap, "ahead", 10)) == list(range(30, 40))
    with EmbeddedBroker(log_file=log, storage_dir=storage) as broker:
        assert asyncio.run(_produce(broker.bootstrap, [b"after"])) == [40]
        assert asyncio.run(_resume(broker.bootstrap, "behind", 6)) == list(range(35, 41))
        # A new group starts at the oldest batch still kept: what every group had consumed is gone.
        assert asyncio.run(_resume(broker.bootstrap, "new", 11)) == list(range(30, 41))


def test_a_partition_fed_one_batch_per_message_keeps_answering_a_consumer_that_commits(tmp_path):
    """A live feed writes about one batch per tweet. Tansu lists every batch of a partition on each fetch and
    gave up at the consumer's fetch wait: without retention a consumer waiting 100 ms received nothing more once
    the partition held about 1,200 batches (benchmarks/durable_fetch_growth.py)."""
    storage, log = tmp_path / "broker", tmp_path / "tansu.log"
    produced = 1_500

    async def feed_and_consume(bootstrap: str) -> tuple[list[int], float | None]:
        consumer = AIOKafkaConsumer(TOPIC, bootstrap_servers=bootstrap, group_id="live", enable_auto_commit=False,
                                    auto_offset_reset="earliest", fetch_max_wait_ms=100)
        await consumer.start()
        seen: list[int] = []

        async def consume(until: int) -> None:
            while len(seen) < until:
                batches = await consumer.getmany(timeout_ms=500)
                seen.extend(m.offset for messages in batches.values() for m in messages)
                if batches:
                    await consumer.commit()  # what it has finished with, as the worker does after its write

        try:
            reader = asyncio.create_task(consume(produced))
            await _produce(bootstrap, [f"m{i}".encode() for i in range(produced)])
            await asyncio.wait_for(reader, 30)
            sent = time.monotonic()
            await _produce(bootstrap, [b"probe"])
            await asyncio.wait_for(consume(produced + 1), 10)
            return seen, time.monotonic() - sent
        finally:
            await consumer.stop()

    with EmbeddedBroker(log_file=log, storage_dir=storage) as broker:
        asyncio.run(create_topic(broker.bootstrap, TOPIC))
        seen, probe_s = asyncio.run(feed_and_consume(broker.bootstrap))
        records = next(storage.rglob(f"topics/{TOPIC}/partitions/*/records"))
        kept = _batches_settled(records)
    assert seen == list(range(produced + 1))
    assert len(kept) <= 50, f"{len(kept)} batches kept after the group committed everything"
    assert probe_s < 5
