# SPDX-License-Identifier: Apache-2.0
"""Reference backend for bmops: HTTP health API, Celery worker and beat.

It stands in for the customer's backend image in tests and the demo and honours
the "Backend image contract" of docs/contracts.md. Modules without third-party
imports (config, logs, health, jobs) hold the pure logic and are unit-tested on
the host; db, web and tasks talk to PostgreSQL and Redis.
"""
