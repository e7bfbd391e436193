#!/bin/bash
# Cluster nodes only (docker-compose.yml, profile `cluster`), after 10-stancestream-users.sh: the migrator's
# ON CLUSTER DDL needs the CLUSTER privilege (access_control_improvements.on_cluster_queries_require_cluster_grant),
# which exists only as a global grant. 10-stancestream-users.sh revokes everything at every start, so this
# grants it again each time. Runs in a subshell for the same reason as that script.
(
set -euo pipefail
clickhouse client --host 127.0.0.1 --user "${CLICKHOUSE_USER:?}" --password "${CLICKHOUSE_PASSWORD:?}" \
    --query "GRANT CLUSTER ON *.* TO stancestream_migrator"
)
