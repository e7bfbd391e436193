-- Back to the (source_topic, partition, offset) key. Rows refused by the feeder (partition -1) get 0, and rows
-- that differ only by origin collapse into one: what the old key could not tell apart.
DROP TABLE IF EXISTS dead_letters_0003;
CREATE TABLE dead_letters_0003
(
    source_topic LowCardinality(String),
    partition    UInt32,
    offset       UInt64,
    reason       String,
    payload      String,
    failed_at    DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(failed_at)
ORDER BY (source_topic, partition, offset);
INSERT INTO dead_letters_0003 (source_topic, partition, offset, reason, payload, failed_at)
SELECT source_topic, toUInt32(greatest(partition, 0)), toUInt64(greatest(offset, 0)), reason, payload, failed_at
FROM dead_letters;
EXCHANGE TABLES dead_letters AND dead_letters_0003;
DROP TABLE dead_letters_0003;
