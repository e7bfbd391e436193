#!/bin/bash
# The stancestream database and its three least-privilege users, created by the admin (CLICKHOUSE_USER, used
# for nothing else). The clickhouse image runs this from /docker-entrypoint-initdb.d before it reports healthy;
# docker-compose.yml sets CLICKHOUSE_ALWAYS_RUN_INITDB_SCRIPTS, so it runs at every start and a changed password
# takes effect on restart (every statement is idempotent; REVOKE first, so the grants are exactly these).
#
#   stancestream_migrator  one-shot `migrate` service: DDL on the stancestream database only
#   stancestream_writer    workers and trainer: SELECT and INSERT on the stancestream database, no DDL
#   stancestream_analyst   people and dashboards (Grafana): SELECT only, under a readonly = 1 profile
#                          that lets a client set its own query timeout (max_execution_time, 1..600 s) and no other
#                          setting: the Grafana ClickHouse plugin's client sends one with every query, which
#                          readonly = 1 alone refuses ("Cannot modify 'max_execution_time' setting in readonly mode")
#
# Passwords arrive as SHA-256 hashes: no password is ever part of a SQL text (or of the server's query log).
# Runs in a subshell so that, if the entrypoint sources it instead of executing it, nothing leaks into it.
(
set -euo pipefail

database="${STANCESTREAM_DATABASE:-stancestream}"
[[ "$database" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || { echo "STANCESTREAM_DATABASE must be a plain name" >&2; exit 1; }

sha256() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }
migrator=$(sha256 "${STANCESTREAM_MIGRATOR_PASSWORD:?set STANCESTREAM_MIGRATOR_PASSWORD}")
writer=$(sha256 "${STANCESTREAM_WRITER_PASSWORD:?set STANCESTREAM_WRITER_PASSWORD}")
analyst=$(sha256 "${STANCESTREAM_ANALYST_PASSWORD:?set STANCESTREAM_ANALYST_PASSWORD}")

clickhouse client --host 127.0.0.1 --user "${CLICKHOUSE_USER:?}" --password "${CLICKHOUSE_PASSWORD:?}" \
    --multiquery <<SQL
CREATE DATABASE IF NOT EXISTS ${database};
CREATE SETTINGS PROFILE IF NOT EXISTS stancestream_readonly;
ALTER SETTINGS PROFILE stancestream_readonly
    SETTINGS readonly = 1, max_execution_time = 60 MIN 1 MAX 600 CHANGEABLE_IN_READONLY;

CREATE USER IF NOT EXISTS stancestream_migrator;
ALTER USER stancestream_migrator IDENTIFIED WITH sha256_hash BY '${migrator}' DEFAULT DATABASE ${database};
REVOKE ALL ON *.* FROM stancestream_migrator;
GRANT SELECT, INSERT, ALTER, CREATE TABLE, CREATE VIEW, DROP TABLE, DROP VIEW ON ${database}.* TO stancestream_migrator;

CREATE USER IF NOT EXISTS stancestream_writer;
ALTER USER stancestream_writer IDENTIFIED WITH sha256_hash BY '${writer}' DEFAULT DATABASE ${database};
REVOKE ALL ON *.* FROM stancestream_writer;
GRANT SELECT, INSERT ON ${database}.* TO stancestream_writer;

CREATE USER IF NOT EXISTS stancestream_analyst;
ALTER USER stancestream_analyst IDENTIFIED WITH sha256_hash BY '${analyst}' DEFAULT DATABASE ${database}
    SETTINGS PROFILE 'stancestream_readonly';
REVOKE ALL ON *.* FROM stancestream_analyst;
GRANT SELECT ON ${database}.* TO stancestream_analyst;
SQL
)
