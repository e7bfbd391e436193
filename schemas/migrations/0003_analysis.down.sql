DROP TABLE IF EXISTS replay_runs;
DROP VIEW IF EXISTS latest_classifications;
DROP VIEW IF EXISTS classifications_hourly_mv;
DROP TABLE IF EXISTS classifications_hourly;
ALTER TABLE classifications DROP COLUMN IF EXISTS replay_run;
