#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Entrypoint of bmops/postgres:15, following the official postgres image:
# - `docker-entrypoint.sh postgres [-c k=v ...]` (or just flags) runs the server;
#   any other command runs as given (psql, pg_dump, bash, ...).
# - started as root: fix PGDATA ownership, then re-exec as postgres (uid 999).
# - empty PGDATA: initdb (scram-sha-256, listen on *), create POSTGRES_DB,
#   run /docker-entrypoint-initdb.d/*.sh|*.sql|*.sql.gz|*.sql.xz|*.sql.zst once.
set -Eeo pipefail

# file_env VAR [DEFAULT]: VAR or VAR_FILE (not both)
file_env() {
    local var="$1" fileVar="${1}_FILE" def="${2:-}" val
    if [ "${!var:-}" ] && [ "${!fileVar:-}" ]; then
        echo >&2 "error: both $var and $fileVar are set (but are exclusive)"
        exit 1
    fi
    val="$def"
    if [ "${!var:-}" ]; then
        val="${!var}"
    elif [ "${!fileVar:-}" ]; then
        val="$(<"${!fileVar}")"
    fi
    export "$var"="$val"
    unset "$fileVar"
}

docker_setup_env() {
    file_env POSTGRES_PASSWORD
    file_env POSTGRES_USER postgres
    file_env POSTGRES_DB "$POSTGRES_USER"
    file_env POSTGRES_INITDB_ARGS
    : "${POSTGRES_HOST_AUTH_METHOD:=}"
    DATABASE_ALREADY_EXISTS=
    if [ -s "$PGDATA/PG_VERSION" ]; then
        DATABASE_ALREADY_EXISTS=true
    fi
}

docker_create_db_directories() {
    mkdir -p "$PGDATA"
    chmod 00700 "$PGDATA" || :
    mkdir -p /var/run/postgresql || :
    chmod 03775 /var/run/postgresql || :
    if [ "$(id -u)" = '0' ]; then
        find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
        find /var/run/postgresql \! -user postgres -exec chown postgres:postgres '{}' +
    fi
}

docker_verify_minimum_env() {
    if [ -z "$POSTGRES_PASSWORD" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != 'trust' ]; then
        cat >&2 <<-'EOM'
		Error: Database is uninitialized and superuser password is not specified.
		       You must specify POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE) to a
		       non-empty value for the superuser, or set
		       POSTGRES_HOST_AUTH_METHOD=trust to allow all connections without a
		       password (never do that outside a throw-away test).
		EOM
        exit 1
    fi
}

docker_init_database_dir() {
    local pwfile
    pwfile="$(mktemp)"
    # the password goes through a file, never on a command line
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    # shellcheck disable=SC2086
    initdb --username="$POSTGRES_USER" --pwfile="$pwfile" --auth-local=trust \
        --auth-host=scram-sha-256 $POSTGRES_INITDB_ARGS -D "$PGDATA"
    rm -f "$pwfile"
}

pg_setup_hba_conf() {
    local auth="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
    {
        echo
        echo "# bmops/postgres: allow connections from anywhere ($auth), as postgres:15 does"
        echo "host all all all $auth"
    } >>"$PGDATA/pg_hba.conf"
}

docker_temp_server_start() {
    # unix socket only, so nothing outside sees a half-initialised server
    PGUSER="$POSTGRES_USER" pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w start
}

docker_temp_server_stop() {
    PGUSER="$POSTGRES_USER" pg_ctl -D "$PGDATA" -m fast -w stop
}

docker_process_sql() {
    local query_runner=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc)
    if [ -n "$POSTGRES_DB" ]; then
        query_runner+=(--dbname "$POSTGRES_DB")
    fi
    PGHOST= PGHOSTADDR= "${query_runner[@]}" "$@"
}

docker_setup_db() {
    local exists
    exists="$(POSTGRES_DB='postgres' docker_process_sql --dbname postgres --set db="$POSTGRES_DB" --tuples-only <<-'EOSQL'
		SELECT 1 FROM pg_database WHERE datname = :'db' ;
	EOSQL
    )"
    if [ -z "$exists" ]; then
        POSTGRES_DB='postgres' docker_process_sql --dbname postgres --set db="$POSTGRES_DB" <<-'EOSQL'
			CREATE DATABASE :"db" ;
		EOSQL
        echo
    fi
}

docker_process_init_files() {
    local f
    echo
    for f; do
        case "$f" in
            *.sh)
                if [ -x "$f" ]; then
                    echo "$0: running $f"; "$f"
                else
                    echo "$0: sourcing $f"; . "$f"
                fi
                ;;
            *.sql) echo "$0: running $f"; docker_process_sql -f "$f"; echo ;;
            *.sql.gz) echo "$0: running $f"; gunzip -c "$f" | docker_process_sql; echo ;;
            *.sql.xz) echo "$0: running $f"; xzcat "$f" | docker_process_sql; echo ;;
            *.sql.zst) echo "$0: running $f"; zstd -dc "$f" | docker_process_sql; echo ;;
            *) echo "$0: ignoring $f" ;;
        esac
        echo
    done
}

_main() {
    # first argument is a flag: run postgres with it
    if [ "${1:0:1}" = '-' ]; then
        set -- postgres "$@"
    fi

    if [ "$1" = 'postgres' ]; then
        docker_setup_env
        docker_create_db_directories
        if [ "$(id -u)" = '0' ]; then
            # drop to postgres (uid/gid 999) and start this script again
            exec setpriv --reuid=postgres --regid=postgres --init-groups "$BASH_SOURCE" "$@"
        fi

        if [ -z "$DATABASE_ALREADY_EXISTS" ]; then
            docker_verify_minimum_env
            docker_init_database_dir
            pg_setup_hba_conf
            export PGPASSWORD="${PGPASSWORD:-$POSTGRES_PASSWORD}"
            docker_temp_server_start "$@"
            docker_setup_db
            docker_process_init_files /docker-entrypoint-initdb.d/*
            docker_temp_server_stop
            unset PGPASSWORD
            echo
            echo 'PostgreSQL init process complete; ready for start up.'
            echo
        else
            echo
            echo 'PostgreSQL Database directory appears to contain a database; Skipping initialization'
            echo
        fi
    fi

    exec "$@"
}

_main "$@"
