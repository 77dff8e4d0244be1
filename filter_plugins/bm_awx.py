# SPDX-License-Identifier: Apache-2.0
"""Filters that shape bmops' AWX objects (pure data, unit-tested)."""

from __future__ import annotations

from typing import Any

_EDGES = {"success": "success_nodes", "failure": "failure_nodes", "always": "always_nodes"}


def bm_awx_workflow_nodes(nodes: list[dict[str, Any]], organization: str) -> list[dict[str, Any]]:
    """Turn the short node list of awx_objects.yml into awx.awx workflow_nodes.

    Each input node: ``identifier``, ``template`` (a job template name) and
    optional ``success`` / ``failure`` / ``always`` lists of identifiers.
    """
    known = {n["identifier"] for n in nodes}
    result = []
    for node in nodes:
        related: dict[str, list[dict[str, str]]] = {}
        for short, key in _EDGES.items():
            targets = node.get(short, [])
            unknown = sorted(set(targets) - known)
            if unknown:
                raise ValueError(
                    f"workflow node {node['identifier']!r} points at unknown node(s) {unknown}"
                )
            related[key] = [{"identifier": t} for t in targets]
        out: dict[str, Any] = {
            "identifier": node["identifier"],
            "unified_job_template": {
                "name": node["template"],
                "type": "job_template",
                "organization": {"name": organization},
            },
            "related": related,
        }
        result.append(out)
    return result


class FilterModule:
    def filters(self):
        return {"bm_awx_workflow_nodes": bm_awx_workflow_nodes}
