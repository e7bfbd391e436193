-- Label shares per time bucket, language and adapter version: counted (classify and count) and corrected for
-- the adapter's measured errors (the served estimator, SLD: shared/quantification), with a 95% bootstrap interval. Written by
-- `stancestream shares` and by the trainer service on its schedule; a recomputation of the same bucket
-- replaces the earlier row (read with FINAL).
CREATE TABLE IF NOT EXISTS label_shares
(
    granularity     LowCardinality(String),
    bucket          DateTime('UTC'),
    lang            LowCardinality(String),
    adapter_version LowCardinality(String),
    label           Enum8('pro-immigration' = 1, 'anti-immigration' = 2, 'neutral' = 3, 'unrelated' = 4),
    tweets          UInt64,
    counted_share   Float32,
    corrected_share Nullable(Float32),
    corrected_low   Nullable(Float32),
    corrected_high  Nullable(Float32),
    estimator       LowCardinality(String),
    calibration     String,
    computed_at     DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(computed_at)
ORDER BY (granularity, adapter_version, lang, bucket, label);
