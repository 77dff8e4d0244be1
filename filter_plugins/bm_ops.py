# SPDX-License-Identifier: Apache-2.0
"""Pure helpers of the operations playbooks (log level, maintenance reports).

- ``log_level_readback(lines)``: the level the backend says it logs at, from the
  lines it writes after SIGUSR1 (``log level changed to X`` / ``log level unchanged: X``).
- ``vacuum_report(before, after)``: dead tuples and sizes per table before and after
  VACUUM ANALYZE, from two ``bm_pg_stats_info`` results.
- ``docker_log_config_issues(inspect, expected)``: containers whose Docker LogConfig
  differs from the expected driver and options.
"""

from __future__ import annotations

import re

LEVEL_RE = re.compile(r'log level (?:changed to|unchanged:) ([A-Z]+)')
LEVEL_WARN_RE = re.compile(r'(unknown log level .*|cannot read log level file .*)')


def log_level_readback(lines):
    """{level, line, warning} from the newest level line of LINES (None when absent)."""
    level = line_found = warning = None
    for line in lines or []:
        match = LEVEL_RE.search(line)
        if match:
            level, line_found, warning = match.group(1), line, None
            continue
        match = LEVEL_WARN_RE.search(line)
        if match:
            warning, line_found = match.group(1), line
            level = None
    return dict(level=level, line=line_found, warning=warning)


def _table_key(row):
    return f"{row.get('schema')}.{row.get('table')}"


def vacuum_report(before, after):
    """Per table: dead tuples and total bytes before/after, and the totals."""
    old = {_table_key(t): t for t in (before or {}).get('tables') or []}
    rows = []
    for table in (after or {}).get('tables') or []:
        key = _table_key(table)
        prev = old.get(key, {})
        rows.append(dict(
            table=key,
            dead_before=prev.get('dead_tuples'),
            dead_after=table.get('dead_tuples'),
            live_after=table.get('live_tuples'),
            bytes_before=prev.get('total_bytes'),
            bytes_after=table.get('total_bytes'),
            last_vacuum=table.get('last_vacuum'),
            last_analyze=table.get('last_analyze'),
        ))
    rows.sort(key=lambda r: -(r['dead_before'] or 0))

    def total(key):
        return sum(r[key] or 0 for r in rows)

    db_before = {d.get('name'): d.get('size_bytes') for d in (before or {}).get('databases') or []}
    db_after = {d.get('name'): d.get('size_bytes') for d in (after or {}).get('databases') or []}
    name = ((after or {}).get('server') or {}).get('database')
    return dict(
        tables=rows,
        dead_tuples_before=total('dead_before'),
        dead_tuples_after=total('dead_after'),
        database=name,
        database_bytes_before=db_before.get(name),
        database_bytes_after=db_after.get(name),
    )


def docker_log_config_issues(inspect, expected):
    """Containers (docker inspect output) whose LogConfig differs from EXPECTED.

    EXPECTED: {type: json-file, config: {max-size: 10m, ...}}; only the keys named
    there are compared.
    """
    issues = []
    want_type = (expected or {}).get('type')
    want_config = {k: str(v) for k, v in ((expected or {}).get('config') or {}).items()}
    for item in inspect or []:
        name = (item.get('Name') or '').lstrip('/')
        log = (item.get('HostConfig') or {}).get('LogConfig') or {}
        if want_type and log.get('Type') != want_type:
            issues.append(f'{name}: log driver {log.get("Type")}, expected {want_type}')
        config = log.get('Config') or {}
        for key, value in sorted(want_config.items()):
            if str(config.get(key)) != value:
                issues.append(f'{name}: log option {key}={config.get(key)}, expected {value}')
    return issues


class FilterModule:
    """bmops operations filters."""

    def filters(self):
        return {
            'bm_log_level_readback': log_level_readback,
            'bm_vacuum_report': vacuum_report,
            'bm_docker_log_config_issues': docker_log_config_issues,
        }
