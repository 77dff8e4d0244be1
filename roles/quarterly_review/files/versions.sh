#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Print the versions the quarterly review holds against its end-of-life
# table, one "name=version" line each (empty when not found). Read-only.
# Usage: versions.sh PROJECT_DIR PROJECT_NAME DB_SERVICE DB_USER REDIS_SERVICE BACKEND_SERVICE
set -u
dir=$1 name=$2 db=$3 dbuser=$4 redis=$5 backend=$6
compose() { docker compose --project-directory "$dir" --project-name "$name" "$@"; }
v() { printf '%s=%s\n' "$1" "$2"; }

v docker "$(docker version --format '{{.Server.Version}}' 2>/dev/null)"
v compose "$(docker compose version --short 2>/dev/null)"
v nginx "$(nginx -v 2>&1 | sed -n 's#^nginx version: nginx/##p')"
v certbot "$(certbot --version 2>/dev/null | sed -n 's/^certbot //p')"
v postgresql "$(compose exec -T "$db" psql -U "$dbuser" -tAc 'SHOW server_version' 2>/dev/null | cut -d' ' -f1)"
v redis "$(compose exec -T "$redis" redis-server --version 2>/dev/null | sed -n 's/.* v=\([^ ]*\).*/\1/p')"
py='import json, platform
try:
    import importlib.metadata as m
    pk = sorted({d.metadata["Name"]: d.version for d in m.distributions() if d.metadata["Name"]}.items())
except Exception:
    pk = []
print(platform.python_version())
print(json.dumps(pk))'
out=$(compose exec -T "$backend" python3 -c "$py" 2>/dev/null)
v python "$(printf '%s\n' "$out" | sed -n 1p)"
v backend_packages "$(printf '%s\n' "$out" | sed -n 2p)"
