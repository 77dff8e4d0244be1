# SPDX-License-Identifier: Apache-2.0
"""extensions/eda/rulebooks/bmops.yml in the real ansible-rulebook (issue 22).

Events are posted to its webhook source as Alertmanager posts them; the
playbook the rules run is replaced by one that records what it was given, so
these tests see exactly which action each event caused. (What
playbooks/respond_alert.yml then does is tested live, on the converged stack.)
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
RULEBOOK = ROOT / "extensions" / "eda" / "rulebooks" / "bmops.yml"
TOKEN = secrets.token_urlsafe(24)
RECORDER = """\
- name: Record what the rule passed
  hosts: localhost
  gather_facts: false
  tasks:
    # appended whatever it holds: a duplicate action must show as a second line
    - name: Append one line
      ansible.builtin.shell:
        cmd: printf '%s\\n' {{ line | quote }} >> "@OUT@"
      vars:
        line: >-
          {{ {'action': respond_alert_action, 'fingerprint': ansible_eda.event.fingerprint,
              'severity': ansible_eda.event.labels.severity,
              'starts': ansible_eda.event.startsAt,
              'host': ansible_eda.event.labels.bm_host} | to_json }}
"""

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Rulebook:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.out = workdir / "actions.jsonl"
        self.log = workdir / "rulebook.log"
        self.port = _free_port()
        (workdir / "playbooks").mkdir()
        recorder = RECORDER.replace("@OUT@", str(self.out))
        (workdir / "playbooks" / "respond_alert.yml").write_text(recorder)
        (workdir / "inventory.yml").write_text(
            "all:\n  hosts:\n    localhost:\n      ansible_connection: local\n"
            f"      ansible_python_interpreter: {sys.executable}\n")
        (workdir / "vars.yml").write_text(
            f"bmops_eda_listen_address: 127.0.0.1\nbmops_eda_port: {self.port}\n")
        env = dict(os.environ, BMOPS_EDA_TOKEN=TOKEN, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
                   PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "ansible-rulebook"), "-r", str(RULEBOOK),
             "-i", "inventory.yml", "--vars", "vars.yml", "--env-vars", "BMOPS_EDA_TOKEN", "-v"],
            cwd=workdir, env=env, stdout=self.log.open("wb"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError as exc:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("ansible-rulebook did not listen:\n"
                                         + self.text()[-3000:]) from exc
                time.sleep(0.5)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def post(self, body, token=TOKEN) -> int:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/endpoint", data=data,
                                     headers={"Content-Type": "application/json",
                                              "Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - http://127.0.0.1
                return resp.status
        except urllib.error.HTTPError as exc:
            return exc.code

    def actions(self) -> list[dict]:
        if not self.out.exists():
            return []
        return [json.loads(line) for line in self.out.read_text().splitlines() if line.strip()]

    def wait_for(self, fingerprint: str, timeout: float = 90) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(a["fingerprint"] == fingerprint for a in self.actions()):
                return self.actions()
            assert self.proc.poll() is None, "ansible-rulebook stopped:\n" + self.text()[-3000:]
            time.sleep(0.5)
        raise AssertionError(f"no action for {fingerprint}:\n" + self.text()[-4000:])


def alert(fingerprint, severity="P1", status="firing", starts="2026-12-02T01:00:00Z", **labels):
    return {"status": status, "fingerprint": fingerprint, "startsAt": starts,
            "labels": {"alertname": "BmContainerDown", "severity": severity,
                       "bm_host": "app1", **labels},
            "annotations": {"summary": "Container of service backend on app1 is not running"}}


def group(*alerts, status="firing"):
    return {"version": "4", "receiver": "responder", "status": status,
            "groupKey": '{}:{alertname="BmContainerDown"}', "alerts": list(alerts)}


@pytest.fixture(scope="module")
def rulebook(tmp_path_factory):
    rb = Rulebook(tmp_path_factory.mktemp("rulebook"))
    yield rb
    rb.proc.terminate()
    try:
        rb.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        rb.proc.kill()


def test_each_event_runs_the_action_its_rule_names(rulebook):
    # one group: a P1 and a P3 firing -> the P1 only
    assert rulebook.post(group(alert("p1-a"), alert("p3-a", severity="P3"))) == 200
    # Alertmanager resends the same alert (group change, repeat): throttled
    assert rulebook.post(group(alert("p1-a"))) == 200
    # not an Alertmanager payload, an alert without bm_host, a P4: ignored
    assert rulebook.post({"hello": "world"}) == 200
    no_host = alert("nohost")
    del no_host["labels"]["bm_host"]
    assert rulebook.post(group(no_host)) == 200
    assert rulebook.post(group(alert("p4-a", severity="P4"))) == 200
    # a P2 firing, then the P1 resolved
    assert rulebook.post(group(alert("p2-a", severity="P2"))) == 200
    assert rulebook.post(group(alert("p1-a", status="resolved"), status="resolved")) == 200
    # the same alert firing anew (a new start) is answered again
    assert rulebook.post(group(alert("p1-a", starts="2026-12-02T01:20:00Z"))) == 200
    # rules run in order: when the last action is recorded, every event was handled
    actions = _wait_count(rulebook, 4)
    assert [(a["action"], a["fingerprint"], a["severity"]) for a in actions] == [
        ("firing", "p1-a", "P1"), ("firing", "p2-a", "P2"), ("resolved", "p1-a", "P1"),
        ("firing", "p1-a", "P1")]
    assert all(a["host"] == "app1" for a in actions)
    log = rulebook.text()
    assert "ignored an event that is not an Alertmanager alert" in log
    assert "no first response for a P3/P4 alert" in log


def test_a_malformed_body_or_a_wrong_token_is_refused_and_the_service_keeps_running(rulebook):
    before = len(rulebook.actions())
    assert rulebook.post(b"{not json") == 400
    assert rulebook.post(group(alert("bad-token")), token="wrong") == 401  # noqa: S106
    assert rulebook.proc.poll() is None
    assert rulebook.post(group(alert("after-bad", severity="P2"))) == 200
    actions = rulebook.wait_for("after-bad")
    assert [a["fingerprint"] for a in actions[before:]] == ["after-bad"]


def test_the_token_never_reaches_the_log(rulebook):
    assert TOKEN not in rulebook.text()


def _wait_count(rulebook, n, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        actions = rulebook.actions()
        if len(actions) >= n:
            time.sleep(3)  # nothing more may follow
            return rulebook.actions()
        assert rulebook.proc.poll() is None, "ansible-rulebook stopped:\n" + rulebook.text()[-3000:]
        time.sleep(0.5)
    raise AssertionError(f"{len(rulebook.actions())} actions, not {n}:\n" + rulebook.text()[-4000:])
