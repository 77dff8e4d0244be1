# SPDX-License-Identifier: Apache-2.0
"""Shared helpers for the bmops modules: PostgreSQL connection arguments,
the psycopg import guard and JSON-safe result shaping."""

from __future__ import annotations

import datetime
import decimal
import re
import traceback

PSYCOPG_IMPORT_ERROR = None
try:
    import psycopg
    from psycopg.rows import dict_row
    HAS_PSYCOPG = True
except ImportError:  # pragma: no cover - exercised on hosts without psycopg
    psycopg = None
    dict_row = None
    HAS_PSYCOPG = False
    PSYCOPG_IMPORT_ERROR = traceback.format_exc()


def pg_argument_spec():
    """Connection options shared by every bmops module that reads PostgreSQL."""
    return dict(
        db_host=dict(type='str', default='127.0.0.1'),
        db_port=dict(type='int', default=5432),
        db_name=dict(type='str', default='backup_mgmt'),
        db_user=dict(type='str', default='postgres'),
        db_password=dict(type='str', no_log=True),
        connect_timeout=dict(type='int', default=5),
    )


def require_psycopg(module):
    """fail_json with the standard 'missing library' message when psycopg is absent."""
    if not HAS_PSYCOPG:
        from ansible.module_utils.basic import missing_required_lib
        module.fail_json(msg=missing_required_lib('psycopg (python3-psycopg, version 3)'),
                         exception=PSYCOPG_IMPORT_ERROR)


# Session limits of every fact-gathering connection.
LOCK_TIMEOUT = '2s'
STATEMENT_TIMEOUT = '30s'


def connection_kwargs(params, application_name='bmops'):
    """psycopg.connect() keyword arguments from module params (no password in a DSN string)."""
    kwargs = dict(
        host=params['db_host'],
        port=params['db_port'],
        dbname=params['db_name'],
        user=params['db_user'],
        connect_timeout=params['connect_timeout'],
        application_name=application_name,
        autocommit=True,
    )
    if params.get('db_password'):
        kwargs['password'] = params['db_password']
    return kwargs


def connect_error_message(params, exc):
    """A sentence an admin understands, with no password in it."""
    # psycopg: 'connection failed: connection to server at "h", port p failed: <reason>\n<hint>'
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    reason = lines[0] if lines else exc.__class__.__name__
    reason = re.sub(r'^connection failed:\s*', '', reason)
    reason = re.sub(r'^connection to server at .*?, port \d+ failed:\s*', '', reason)
    reason = reason.rstrip('.') or exc.__class__.__name__
    password = params.get('db_password')
    if password:
        reason = reason.replace(password, '********')
    host, port, user = params['db_host'], params['db_port'], params['db_user']
    return (f'Cannot connect to PostgreSQL at {host}:{port} as {user}: {reason}. '
            'Check bm_db_password, that the db container is running and that port '
            f'{port} is published on the host.')


def pg_connect(params, application_name='bmops'):
    """Open an autocommit, read-only connection with dict rows. Raises psycopg errors."""
    conn = psycopg.connect(row_factory=dict_row, **connection_kwargs(params, application_name))
    # Belt and braces for *_info modules: nothing we run may write.
    conn.execute('SET default_transaction_read_only = on')
    # A check must answer even when the database is in trouble: never queue
    # behind a lock held by the problem being diagnosed, never run for long.
    conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
    conn.execute(f"SET statement_timeout = '{STATEMENT_TIMEOUT}'")
    return conn


def jsonable(value):
    """Convert database / SDK values into JSON-serialisable ones, recursively."""
    if isinstance(value, dict):
        return dict((str(k), jsonable(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        return value.isoformat()
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, bytearray)):
        return value.decode('utf-8', 'replace')
    return value


def percent(part, whole, digits=None):
    """part/whole in percent, None when whole is 0 or unknown. Unrounded by default:
    thresholds compare the exact value (94.995 % is below 95 %); reports round for
    display only."""
    if part is None or not whole:
        return None
    value = 100.0 * float(part) / float(whole)
    return value if digits is None else round(value, digits)


def short_error(exc, limit=500):
    """One-line error text for result sections."""
    text = ' '.join(str(exc).split()) or exc.__class__.__name__
    return text[:limit]
