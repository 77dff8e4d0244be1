# SPDX-License-Identifier: Apache-2.0
"""`bmops run` end to end on a throw-away project whose one procedure only
templates on the controller (localhost, no module runs)."""

from __future__ import annotations

import pytest

from bmops import cli

PROBE = """\
---
- name: Probe
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Publish what this run was given
      ansible.builtin.set_stats:
        data:
          probe:
            status: "{{ marker | default('unset') }} check={{ ansible_check_mode }}
              cfg={{ ansible_config_file }}
              hostkeys={{ lookup('ansible.builtin.config', 'HOST_KEY_CHECKING') }}"
"""


@pytest.fixture
def projects(tmp_path):
    made = []
    for name in ("one", "two"):
        project = tmp_path / name
        (project / "playbooks").mkdir(parents=True)
        (project / "ansible.cfg").write_text("[defaults]\nretry_files_enabled = false\n")
        (project / "playbooks" / "probe.yml").write_text(PROBE)
        (project / "hosts.yml").write_text(
            "all:\n  hosts:\n    localhost:\n      ansible_connection: local\n")
        made.append(project)
    return made


def probe(capsys, project, artifacts, *extra) -> str:
    rc = cli.main(["run", "probe", "--project-dir", str(project), "-i",
                   str(project / "hosts.yml"), "--artifacts", str(artifacts), *extra])
    out = capsys.readouterr().out
    assert rc == 0, out
    (status,) = [line for line in out.splitlines() if line.startswith("probe: ")]
    return status


def test_runs_sharing_an_artifact_dir_share_nothing_else(projects, tmp_path, capsys):
    """ansible-runner keeps env/extravars, env/cmdline and env/envvars of its
    private data dir when they exist: one run's -e, --check or project must
    not leak into the next."""
    one, two = projects
    artifacts = tmp_path / "artifacts"
    first = probe(capsys, one, artifacts, "-e", "marker=first", "--check")
    # host keys stay checked: ansible-runner would turn it off
    assert first == f"probe: first check=True cfg={one / 'ansible.cfg'} hostkeys=True"
    second = probe(capsys, two, artifacts)
    assert second == f"probe: unset check=False cfg={two / 'ansible.cfg'} hostkeys=True"
    runs = sorted((artifacts / "artifacts").iterdir())
    assert len(runs) == 2
    assert sorted(p.name for p in artifacts.iterdir()) == ["artifacts"], \
        "the per-run private data dir (it holds the -e values) is left behind"


def test_ask_become_pass_answers_the_prompt_and_leaves_no_file(projects, tmp_path, capsys,
                                                                monkeypatch):
    """-K asks once (getpass) and hands the answer to ansible-playbook's BECOME prompt
    through ansible-runner's passwords; the private dir that held it is gone after."""
    one, _ = projects
    asked = []
    monkeypatch.setattr(cli.getpass, "getpass", lambda prompt: asked.append(prompt) or "s3cret-K")
    artifacts = tmp_path / "artifacts"
    status = probe(capsys, one, artifacts, "-K")
    assert asked == ["BECOME password: "]
    assert status.startswith("probe: unset check=False")
    (run,) = (artifacts / "artifacts").iterdir()
    assert "--ask-become-pass" in (run / "command").read_text()
    for path in artifacts.rglob("*"):
        if path.is_file():
            assert "s3cret-K" not in path.read_text(errors="replace"), path
    assert sorted(p.name for p in artifacts.iterdir()) == ["artifacts"]
