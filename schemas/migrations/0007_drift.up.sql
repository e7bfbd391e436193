-- The drift alarm's judgements (shared/quantification/drift.py), written by the trainer service every
-- STANCESTREAM_DRIFT_INTERVAL_S: per language and measure (label_psi, confidence_js, low_confidence_rise), how far
-- the last window of live tweets moved from the reference window, the threshold, and whether the alarm is on;
-- lang 'all' holds unseen_language_share (the window's share of tweets in languages the adapter never saw).
-- A (language, measure) gets a row when it is judged (enough tweets in both windows) and when its alarm clears
-- because it no longer can be (value NULL). Its latest row is its current state.
CREATE TABLE IF NOT EXISTS drift
(
    computed_at      DateTime64(3, 'UTC'),
    lang             LowCardinality(String),
    measure          LowCardinality(String),
    value            Nullable(Float64),
    threshold        Float64,
    alarm            UInt8,
    window_tweets    UInt64,
    reference_tweets UInt64,
    adapter_version  LowCardinality(String) COMMENT 'the active adapter whose live tweets the window holds',
    reference_start  Nullable(DateTime64(3, 'UTC')),
    reference_end    Nullable(DateTime64(3, 'UTC'))
)
ENGINE = ReplacingMergeTree
ORDER BY (lang, measure, computed_at);
