DROP VIEW IF EXISTS classifications_hourly;
CREATE TABLE IF NOT EXISTS classifications_hourly
(
    hour            DateTime('UTC'),
    lang            LowCardinality(String),
    adapter_version LowCardinality(String),
    topic           Enum8('immigration' = 1, 'unrelated' = 2),
    label           Enum8('pro-immigration' = 1, 'anti-immigration' = 2, 'neutral' = 3, 'unrelated' = 4),
    tweets          UInt64,
    sum_confidence  Float64,
    sum_latency_ms  Float64
)
ENGINE = SummingMergeTree
ORDER BY (hour, lang, adapter_version, topic, label);
INSERT INTO classifications_hourly
SELECT toStartOfHour(tweet_created_at), lang, adapter_version, topic, label, count(),
       sum(greatest(p_pro, p_anti, p_neutral, p_unrelated)), sum(latency_ms)
FROM classifications FINAL
GROUP BY 1, 2, 3, 4, 5;
CREATE MATERIALIZED VIEW IF NOT EXISTS classifications_hourly_mv TO classifications_hourly AS
SELECT
    toStartOfHour(tweet_created_at) AS hour,
    lang,
    adapter_version,
    topic,
    label,
    count() AS tweets,
    sum(greatest(p_pro, p_anti, p_neutral, p_unrelated)) AS sum_confidence,
    sum(latency_ms) AS sum_latency_ms
FROM classifications
GROUP BY hour, lang, adapter_version, topic, label;
