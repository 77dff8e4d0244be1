#!/bin/sh
# Entry point of the reference backend: refapp backend|worker|beat|healthcheck [ROLE]
exec python3 -m refapp "$@"
