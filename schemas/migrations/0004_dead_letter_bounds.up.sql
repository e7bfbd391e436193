-- Dead letters get a durable identity and a bounded payload.
-- The key was (source_topic, partition, offset), but the embedded broker keeps messages in memory and restarts
-- its offsets from 0: a new dead letter then silently replaced an old one, and a re-fed bad line got a new key.
-- The key becomes (source_topic, origin): the feeder's `<feed id>:<line>` (Kafka header stancestream-origin),
-- else `kafka:<topic>:<partition>:<offset>`. A sorting key cannot be altered in place: the table is rebuilt,
-- its rows copied (old rows get the `kafka:` origin; their payload was stored whole, so its size and SHA-256 are
-- computed from it) and the tables swapped. partition/offset become signed: -1 marks a line the feeder refused
-- before it entered the topic. payload now holds at most the first 4 KiB of the message.
DROP TABLE IF EXISTS dead_letters_0004;
CREATE TABLE dead_letters_0004
(
    source_topic   LowCardinality(String),
    partition      Int32,
    offset         Int64,
    reason         String,
    payload        String COMMENT 'the first 4 KiB of the message, decoded as UTF-8 with replacement',
    failed_at      DateTime64(3, 'UTC'),
    origin         String COMMENT 'durable identity: <feed id>:<line>, else kafka:<topic>:<partition>:<offset>',
    payload_bytes  UInt64 COMMENT 'size of the original message',
    payload_sha256 String COMMENT 'SHA-256 (hex) of the original message'
)
ENGINE = ReplacingMergeTree(failed_at)
ORDER BY (source_topic, origin);
INSERT INTO dead_letters_0004
    (source_topic, partition, offset, reason, payload, failed_at, origin, payload_bytes, payload_sha256)
SELECT source_topic, toInt32(partition), toInt64(offset), reason, payload, failed_at,
       concat('kafka:', source_topic, ':', toString(partition), ':', toString(offset)),
       length(payload), lower(hex(SHA256(payload)))
FROM dead_letters;
EXCHANGE TABLES dead_letters AND dead_letters_0004;
DROP TABLE dead_letters_0004;
