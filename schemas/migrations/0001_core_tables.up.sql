-- The tweet archive: one row per tweet id (re-ingesting the same tweet replaces it).
CREATE TABLE IF NOT EXISTS tweets
(
    id            String,
    text          String,
    created_at    DateTime64(3, 'UTC'),
    platform_lang LowCardinality(Nullable(String)),
    author_id     Nullable(String),
    country       LowCardinality(Nullable(String)),
    source        LowCardinality(Nullable(String)),
    ingested_at   DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(ingested_at)
ORDER BY id;

-- One row per (tweet, adapter version): a redelivered batch replaces its rows instead of double-counting.
-- Query with FINAL (or argMax) to see each key once before background merges have run.
CREATE TABLE IF NOT EXISTS classifications
(
    tweet_id         String,
    adapter_version  LowCardinality(String),
    model_id         LowCardinality(String),
    lang             LowCardinality(String),
    lang_confidence  Float32,
    topic            Enum8('immigration' = 1, 'unrelated' = 2),
    stance           Nullable(Enum8('pro' = 1, 'anti' = 2, 'neutral' = 3)),
    label            Enum8('pro-immigration' = 1, 'anti-immigration' = 2, 'neutral' = 3, 'unrelated' = 4),
    p_pro            Float32,
    p_anti           Float32,
    p_neutral        Float32,
    p_unrelated      Float32,
    tweet_created_at DateTime64(3, 'UTC'),
    classified_at    DateTime64(3, 'UTC'),
    latency_ms       Float32
)
ENGINE = ReplacingMergeTree(classified_at)
ORDER BY (tweet_id, adapter_version);

-- Messages the worker refused, keyed by where they were read so a redelivery replaces, not duplicates.
CREATE TABLE IF NOT EXISTS dead_letters
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
