-- Replays tag their rows with their run id; the live stream leaves it empty.
ALTER TABLE classifications ADD COLUMN IF NOT EXISTS replay_run LowCardinality(String) DEFAULT '';

-- Hourly rollups by when the tweets were posted, per language, topic, label and adapter version. Fed by the
-- materialized view on every insert into classifications: a batch redelivered after a crash is counted again
-- here (the base table absorbs it), so exact counts come from latest_classifications / classifications FINAL.
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

-- Each tweet's most recent classification, whichever adapter version produced it.
CREATE VIEW IF NOT EXISTS latest_classifications AS
SELECT
    tweet_id,
    argMax(adapter_version, classified_at) AS adapter_version,
    argMax(lang, classified_at) AS lang,
    argMax(topic, classified_at) AS topic,
    argMax(stance, classified_at) AS stance,
    argMax(label, classified_at) AS label,
    argMax(greatest(p_pro, p_anti, p_neutral, p_unrelated), classified_at) AS confidence,
    any(tweet_created_at) AS tweet_created_at,
    max(classified_at) AS last_classified_at
FROM classifications FINAL
GROUP BY tweet_id;

-- Replay runs: what was asked, how far it got (resumable from `done`).
CREATE TABLE IF NOT EXISTS replay_runs
(
    run_id          String,
    adapter_version String,
    adapter_path    String,
    source          String,
    since           Nullable(DateTime64(3, 'UTC')),
    until           Nullable(DateTime64(3, 'UTC')),
    langs           Array(String),
    total           UInt64,
    done            UInt64,
    status          Enum8('running' = 1, 'done' = 2, 'interrupted' = 3, 'failed' = 4),
    message         String,
    started_at      DateTime64(3, 'UTC'),
    updated_at      DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY run_id;
