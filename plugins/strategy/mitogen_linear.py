# SPDX-License-Identifier: Apache-2.0
"""Opt-in Mitogen for Ansible: the linear strategy over Mitogen's connections.

    ANSIBLE_STRATEGY=mitogen_linear ansible-playbook playbooks/site.yml

A proxy to the strategy of the ``mitogen`` package (PyPI, ``pip install 'bmops[fast]'``),
so no site has to know where pip put it. Nothing loads this file unless the strategy is
chosen; bmops's default stays ansible-core's ``linear`` (docs/transport.md says why and
what Mitogen gives).
"""

from __future__ import annotations

DOCUMENTATION = r"""
name: mitogen_linear
short_description: Ansible's linear strategy, run over Mitogen (opt-in)
description:
  - Imports the C(mitogen_linear) strategy of the C(mitogen) package under its real name.
  - Tasks run in the same order as with C(linear); Mitogen keeps one Python interpreter per
    host (become user) alive for the whole run instead of sending every module over a new
    SSH exec.
  - Fails with a message that names the package when C(mitogen) is not installed.
author: bmops contributors
requirements:
  - mitogen >= 0.3.54 on the controller (nothing on the managed hosts)
"""

try:
    import ansible_mitogen.loaders
    import ansible_mitogen.strategy
except ImportError as exc:  # pragma: no cover - depends on the controller
    from ansible.errors import AnsibleError

    raise AnsibleError(
        "ANSIBLE_STRATEGY=mitogen_linear needs the 'mitogen' package on the controller: "
        "pip install 'bmops[fast]' (or unset ANSIBLE_STRATEGY for the default linear "
        f"strategy): {exc}") from exc

Base = ansible_mitogen.loaders.strategy_loader.get("linear", class_only=True)


class StrategyModule(ansible_mitogen.strategy.StrategyMixin, Base):
    """Linear, with Mitogen's connection and module execution."""
