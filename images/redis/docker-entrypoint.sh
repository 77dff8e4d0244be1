#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Entrypoint of bmops/redis:7, following the official redis image:
# - first argument a flag or a *.conf file: run redis-server with it;
# - redis-server started as root: own /data, drop to redis (uid/gid 999);
# - the image defaults (protected mode off, bind all) come first, so a config
#   file or --options given by the user override them.
set -e

if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
    set -- redis-server "$@"
fi

if [ "$1" = 'redis-server' ] && [ "$(id -u)" = '0' ]; then
    find . \! -user redis -exec chown redis '{}' +
    exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi

case "${2:-}" in
    -v | --version | -h | --help | --test-memory | --check-system) ;; # informational: pass through
    *) inject_defaults=1 ;;
esac

if [ "$1" = 'redis-server' ] && [ -n "${inject_defaults:-}" ]; then
    shift
    if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
        # a config file: load the image defaults first, then include the
        # user's file so its settings win (redis applies directives in order)
        conf=$(readlink -f "$1")
        shift
        wrapper=$(mktemp /tmp/redis-bmops.XXXXXX.conf)
        printf 'include /etc/bmops-redis/default.conf\ninclude %s\n' "$conf" >"$wrapper"
        set -- redis-server "$wrapper" "$@"
    else
        set -- redis-server /etc/bmops-redis/default.conf "$@"
    fi
fi

# like the official image: RDB/AOF files not world-readable
if [ "$(umask)" = '0022' ]; then
    umask 0077
fi
exec "$@"
