#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Entry point of the reference backend: refapp backend|worker|beat|healthcheck [ROLE]
exec python3 -m refapp "$@"
