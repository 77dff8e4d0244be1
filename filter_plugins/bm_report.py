# SPDX-License-Identifier: Apache-2.0
"""The manual's checklists over a run's checks, and the small history of their
figures that the reports draw trends from: pure functions.

``bm_checklist``: the items of the manual's checklist (§1.1 daily, §1.2 weekly), in
the manual's order, each with the checks that measure it, its worst status and the
one figure a person reads (and a trend is drawn from); the other checks follow as
``rest``. Texts are catalogue ids (``<kind>.item.<id>``, ``.method.``, ``.criterion.``):
the templates translate them.

``bm_history_append``: the figures of this run appended to the history kept beside
the reports (bounded, oldest first); ``bm_series`` (filter_plugins/bm_trend.py) reads
one figure back out of it.
"""

from __future__ import annotations

import json

STATUS_ORDER = {'ok': 0, 'warn': 1, 'breach': 2}

# item id, the metrics that measure it, how its figure is made of their values
CHECKLISTS = {
    'daily': [
        ('health_ready', ('health_ready_status',), 'first'),
        ('job_success_rate', ('job_success_rate',), 'first'),
        ('failed_jobs', ('failed_jobs',), 'first'),
        ('storage_usage', ('storage_used_percent', 'filesystem_used_percent'), 'max'),
        ('error_logs', ('error_log_lines',), 'sum'),
    ],
    'weekly': [
        ('performance', ('longest_query_seconds', 'cache_hit_percent',
                         'connections_used_percent', 'pg_stat_statements_available'), None),
        ('db_size', ('pg_stats', 'dead_tuple_percent', 'xid_age', 'unused_indexes',
                     'missing_index_candidates'), None),
        ('security', ('security_updates',), 'sum'),
        ('certificates', ('certificate_days_left',), 'min'),
    ],
}
# each storage check's own figure is kept too (storage:<item>), for the forecast
STORAGE_METRICS = dict((i, m) for i, m, _ in CHECKLISTS['daily'])['storage_usage']


def _number(value):
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _figure(checks, how):
    values = [_number(c.get('value')) for c in checks]
    values = [v for v in values if v is not None]
    if not values or how is None:
        return None
    if how == 'first':
        return values[0]
    if how == 'sum':
        return sum(values)
    return max(values) if how == 'max' else min(values)


def _shown(checks, how, figure):
    """The figure as people read it: the check's own display when it is one check's
    value (the first, the largest, the smallest), else the number."""
    if figure is None:
        return None
    if how in ('first', 'max', 'min'):
        for check in checks:
            if _number(check.get('value')) == figure and check.get('shown'):
                return check['shown']
    return str(int(figure)) if float(figure).is_integer() else f'{figure:.1f}'


def checklist(checks, kind='daily'):
    """{items: [{id, status, figure, shown, unit, limit, checks, bad}], rest: [checks]} for
    the checklist KIND (daily, weekly); an unknown KIND has no items."""
    checks = list(checks or [])
    items, used = [], set()
    for item_id, metrics, how in CHECKLISTS.get(kind, []):
        mine = [c for c in checks if c.get('metric') in metrics]
        used.update(id(c) for c in mine)
        status = max((c['status'] for c in mine), key=STATUS_ORDER.get, default=None)
        first = mine[0] if mine else {}
        figure = _figure(mine, how)
        items.append(dict(
            id=item_id, status=status, checks=mine, figure=figure,
            shown=_shown(mine, how, figure),
            unit=first.get('unit', ''), limit=first.get('limit'),
            bad=[c for c in mine if c['status'] != 'ok']))
    rest = [c for c in checks if id(c) not in used]
    return dict(items=items, rest=rest)


def history_append(history, checks, at, kind='daily', keep=60):
    """HISTORY (a list of {at, figures}) with this run's figures appended, the oldest
    dropped beyond KEEP entries. Figures: each checklist item's, and each storage
    target's used percent (``storage:<item>``)."""
    figures = {}
    for item in checklist(checks, kind)['items']:
        if item['figure'] is not None:
            figures[item['id']] = item['figure']
    for c in checks or []:
        if c.get('metric') in STORAGE_METRICS and _number(c.get('value')) is not None:
            figures[f"storage:{c.get('item')}"] = c['value']
    entries = [h for h in (history if isinstance(history, list) else [])
               if isinstance(h, dict) and 'at' in h and isinstance(h.get('figures'), dict)]
    entries.append({'at': at, 'figures': figures})
    keep = max(int(keep), 1)
    return entries[-keep:]


def history_parse(text):
    """The history file's content (JSON) as a list; [] when it is missing or unreadable
    (a damaged history starts again rather than stopping the check)."""
    try:
        data = json.loads(text or '[]')
    except ValueError:
        return []
    return data if isinstance(data, list) else []


class FilterModule:
    def filters(self):
        return {
            'bm_checklist': checklist,
            'bm_history_append': history_append,
            'bm_history_parse': history_parse,
        }
