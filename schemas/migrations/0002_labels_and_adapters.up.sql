-- Human labels: the latest labeled_at per tweet id wins (query with FINAL).
CREATE TABLE IF NOT EXISTS labels
(
    tweet_id    String,
    text        String,
    lang        LowCardinality(String),
    label       Enum8('pro-immigration' = 1, 'anti-immigration' = 2, 'neutral' = 3, 'unrelated' = 4),
    annotator   LowCardinality(String),
    labeled_at  DateTime64(3, 'UTC'),
    ingested_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(labeled_at)
ORDER BY tweet_id;

-- The trainer's fixed holdout: frozen once created, never trained on. Candidate and active adapter are both
-- scored on exactly these tweets (with their current labels).
CREATE TABLE IF NOT EXISTS holdout
(
    tweet_id   String,
    created_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY tweet_id;

-- The adapter registry: one row per status change; the latest updated_at per version is its current state.
CREATE TABLE IF NOT EXISTS adapters
(
    version    String,
    parent     Nullable(String),
    path       String,
    status     Enum8('candidate' = 1, 'active' = 2, 'retired' = 3, 'rejected' = 4),
    replaced   Nullable(String) COMMENT 'the version this one replaced when it last became active: rollback restores it',
    metrics    String COMMENT 'JSON: holdout (and dev) metrics',
    reason     String,
    created_at DateTime64(3, 'UTC'),
    updated_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY version;

-- Every trainer cycle, whatever it decided.
CREATE TABLE IF NOT EXISTS adapter_runs
(
    run_id            String,
    started_at        DateTime64(3, 'UTC'),
    duration_s        Float64,
    labels            UInt32,
    train_examples    UInt32,
    holdout_examples  UInt32,
    active_version    String,
    candidate_version Nullable(String),
    active_metrics    String COMMENT 'JSON: holdout metrics of the active adapter',
    candidate_metrics String COMMENT 'JSON: holdout metrics of the candidate',
    decision          Enum8('promoted' = 1, 'rejected' = 2, 'skipped' = 3, 'failed' = 4),
    reason            String
)
ENGINE = MergeTree
ORDER BY started_at;
