#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# bmops bench shim, installed on the benchmark host as /usr/local/bin/pg_dump and
# /usr/local/bin/psql.  community.postgresql.postgresql_db runs pg_dump / psql on the
# managed host; the host (Debian 13) only packages PostgreSQL 17 clients, whose dumps
# do not load cleanly into the PostgreSQL 15 server.  The shim runs the db container's
# own client instead, exactly as bmops-backup and the manual do, so all three arms of
# the benchmark use the same pg_dump / psql binaries and differ only in orchestration,
# format and codec.  The password, if any, is passed by name (-e VAR), never as a value.
prog=$(basename "$0")
if [ -n "${PGPASSWORD:-}" ]; then
  exec /usr/bin/docker compose -p backup-mgmt --project-directory /opt/backup-mgmt \
    exec -T -e PGPASSWORD db "$prog" "$@"
fi
exec /usr/bin/docker compose -p backup-mgmt --project-directory /opt/backup-mgmt \
  exec -T db "$prog" "$@"
