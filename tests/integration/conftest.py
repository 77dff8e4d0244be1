# SPDX-License-Identifier: Apache-2.0
"""Fixtures for integration tests against real servers.

``stack``: one managed host container (Debian 13, systemd, inner Docker), made
the way the demo and Molecule make it (tests/harness/hosts.py), converged with
``playbooks/site.yml`` through ansible-runner (as AWX runs it), shared by every
test of the session. ``smtp_sink``: a real SMTP server that keeps each mail.

Set BMOPS_KEEP=1 to keep the containers after the run (for debugging).
BMOPS_IT_HOST and BMOPS_IT_NETWORK name the stack host and the test network, so
two sessions can run side by side (tests/harness/live.sh does).
"""

from __future__ import annotations

import email
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "harness"))

import hosts  # noqa: E402

STACK_HOST = os.environ.get("BMOPS_IT_HOST", "bmops-it-stack")
NETWORK = os.environ.get("BMOPS_IT_NETWORK", "bmops-it")
SMTP_NAME = f"{STACK_HOST}-smtp"
KEEP = os.environ.get("BMOPS_KEEP") == "1"
DEMO_VAULT = ROOT / "inventory" / "demo" / "group_vars" / "bm_app" / "vault.yml"


docker = hosts.docker  # one helper: its errors say what docker printed


def require_image(image: str) -> None:
    if docker("image", "inspect", image, check=False).returncode != 0:
        pytest.fail(f"image {image} is missing: run `make images` first", pytrace=False)


@dataclass
class RunResult:
    """What one playbook run through ansible-runner produced."""

    rc: int
    status: str
    events: list[dict[str, Any]]
    stdout: str
    artifact_data: dict[str, Any] = field(default_factory=dict)

    def failed_tasks(self) -> list[dict[str, Any]]:
        return [e["event_data"] for e in self.events
                if e.get("event") in ("runner_on_failed", "runner_on_unreachable")
                and not e["event_data"].get("ignore_errors")]

    def changed_tasks(self) -> list[str]:
        return [e["event_data"].get("task", "") for e in self.events
                if e.get("event") == "runner_on_ok"
                and (e["event_data"].get("res") or {}).get("changed")]


def run_playbook(playbook: str, inventory: Path, private_dir: Path,
                 extravars: dict[str, Any] | None = None, verbosity: int = 0,
                 cmdline: str | None = None, tags: str | None = None,
                 passwords: dict[str, str] | None = None,
                 env: dict[str, str] | None = None) -> RunResult:
    """Run playbooks/<playbook>.yml the way AWX does and collect everything.

    PASSWORDS answers ansible-playbook's prompts ({regex: answer}), as AWX gives a
    machine credential's become password (with --ask-become-pass in CMDLINE). ENV adds
    environment variables (e.g. ANSIBLE_STRATEGY)."""
    import ansible_runner

    from bmops.cli import ensure_tools_on_path

    ensure_tools_on_path()
    private_dir.mkdir(parents=True, exist_ok=True)
    result = ansible_runner.run(
        private_data_dir=str(private_dir),
        project_dir=str(ROOT),
        playbook=f"playbooks/{playbook}.yml",
        inventory=str(inventory),
        extravars=extravars or {},
        verbosity=verbosity,
        cmdline=cmdline,
        tags=tags,
        passwords=passwords or {},
        # ansible-runner turns host key checking off unless told (bmops run keeps it on)
        envvars={"ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
                 "ANSIBLE_HOST_KEY_CHECKING": "True", **(env or {})},
        quiet=True,
        rotate_artifacts=0,
    )
    events = list(result.events)
    artifact_data: dict[str, Any] = {}
    for ev in events:
        if ev.get("event") == "playbook_on_stats":
            artifact_data = ev["event_data"].get("artifact_data") or {}
    return RunResult(rc=result.rc, status=result.status, events=events,
                     stdout=result.stdout.read(), artifact_data=artifact_data)


@dataclass
class Stack:
    """The converged host and how to run procedures against it."""

    host: str
    inventory: Path
    workdir: Path
    runs: int = 0

    def run(self, playbook: str, **kwargs: Any) -> RunResult:
        self.runs += 1
        return run_playbook(playbook, self.inventory,
                            self.workdir / f"run{self.runs:03d}-{playbook}", **kwargs)

    def sh(self, script: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run a shell script on the managed host (as root)."""
        return docker("exec", self.host, "sh", "-ec", script, check=check)

    def compose(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return docker("exec", "-w", "/opt/backup-mgmt", self.host, "docker", "compose", *args,
                      check=check)

    def ready_status(self) -> int:
        """HTTP status of the backend's /health/ready on the host (0: no answer)."""
        out = self.sh("curl -s -o /dev/null -w '%{http_code}' --max-time 3 "
                      "http://127.0.0.1:8000/health/ready", check=False).stdout.strip()
        return int(out) if out.isdigit() else 0

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Wait until /health/ready answers 200 again."""
        deadline = time.monotonic() + timeout
        while self.ready_status() != 200:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"/health/ready not 200 after {timeout:.0f} s:\n"
                    + self.compose("ps", "-a", check=False).stdout)
            time.sleep(1)

    def passwords(self) -> dict[str, str]:
        """bm_db_password and bm_redis_password as the inventory gives them now."""
        values = dict(yaml.safe_load(DEMO_VAULT.read_text(encoding="utf-8")))
        override = self.inventory / "host_vars" / f"{self.host}.yml"
        if override.exists():
            values.update(yaml.safe_load(override.read_text(encoding="utf-8")) or {})
        return {key: values[key] for key in ("bm_db_password", "bm_redis_password")}

    def set_passwords(self, **passwords: str) -> None:
        """Rotate in the inventory (the one source every later run reads): host_vars
        of this host override the demo vault; no argument returns to the vault."""
        host_vars = self.inventory / "host_vars"
        host_vars.mkdir(exist_ok=True)
        path = host_vars / f"{self.host}.yml"
        if passwords:
            path.write_text(yaml.safe_dump(passwords), encoding="utf-8")
            path.chmod(0o600)
        else:
            path.unlink(missing_ok=True)

    def psql(self, sql: str) -> str:
        """Run SQL in the application database inside the db container."""
        proc = self.compose("exec", "-T", "db", "psql", "-U", "postgres", "-d", "backup_mgmt",
                            "-Atqc", sql)
        return proc.stdout.strip()


def write_inventory_text(directory: Path, hosts_yml: str) -> Path:
    """An inventory of HOSTS_YML that reuses the demo group_vars (one source)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "hosts.yml").write_text(hosts_yml, encoding="utf-8")
    link = directory / "group_vars"
    if not link.exists():
        link.symlink_to(ROOT / "inventory" / "demo" / "group_vars")
    return directory


def write_inventory(directory: Path, host: str) -> Path:
    """An inventory for HOST alone, reached through the Docker API."""
    return write_inventory_text(
        directory,
        "all:\n  children:\n    bm_app:\n      hosts:\n"
        f"        {host}:\n"
        "          ansible_connection: community.docker.docker\n"
        "          ansible_python_interpreter: /usr/bin/python3\n")


@pytest.fixture(scope="session")
def it_network():
    if docker("network", "inspect", NETWORK, check=False).returncode != 0:
        docker("network", "create", NETWORK)
    yield NETWORK
    if not KEEP:
        docker("network", "rm", NETWORK, check=False)


def start_host(name: str, network: str) -> None:
    """Start host NAME of the shared platform on NETWORK, or fail saying why."""
    require_image("bmops/host:trixie")
    try:
        hosts.up(name, network=network)
    except hosts.HostError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def stack(tmp_path_factory, it_network) -> Stack:
    """A managed host converged with site.yml (shared by the whole session)."""
    start_host(STACK_HOST, it_network)
    workdir = tmp_path_factory.mktemp("stack")
    inventory = write_inventory(workdir / "inventory", STACK_HOST)
    st = Stack(STACK_HOST, inventory, workdir)
    result = st.run("site")
    if result.rc != 0:
        if not KEEP:  # a half-converged host must not be reused by the next session
            hosts.down(STACK_HOST)
        pytest.fail(f"site.yml did not converge on {STACK_HOST} (rc={result.rc}):\n"
                    + result.stdout[-4000:], pytrace=False)
    yield st
    if not KEEP:
        hosts.down(STACK_HOST)


@dataclass
class SmtpSink:
    name: str
    ip: str
    port: int = 25

    def messages(self) -> list[email.message.Message]:
        listing = docker("exec", self.name, "sh", "-c", "ls -1 /srv/mail/*.eml 2>/dev/null || true")
        result = []
        for path in sorted(listing.stdout.split()):
            raw = docker("exec", self.name, "cat", path).stdout
            result.append(email.message_from_string(raw))
        return result

    def clear(self) -> None:
        docker("exec", self.name, "sh", "-c", "rm -f /srv/mail/*.eml")

    def wait_for(self, count: int, timeout: float = 30.0) -> list[email.message.Message]:
        deadline = time.monotonic() + timeout
        while True:
            msgs = self.messages()
            if len(msgs) >= count or time.monotonic() > deadline:
                return msgs
            time.sleep(0.5)


@pytest.fixture(scope="session")
def smtp_sink(it_network) -> SmtpSink:
    """A real SMTP server on the test network; every mail kept as a file."""
    require_image("bmops/smtp-sink:latest")
    docker("rm", "-f", SMTP_NAME, check=False)
    docker("run", "-d", "--name", SMTP_NAME, "--network", it_network, "bmops/smtp-sink:latest")
    ip = docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                SMTP_NAME).stdout.strip()
    deadline = time.monotonic() + 30
    while docker("inspect", "-f", "{{.State.Health.Status}}", SMTP_NAME).stdout.strip() \
            != "healthy":
        if time.monotonic() > deadline:
            pytest.fail("the SMTP sink did not become healthy", pytrace=False)
        time.sleep(0.5)
    yield SmtpSink(SMTP_NAME, ip)
    if not KEEP:
        docker("rm", "-f", SMTP_NAME, check=False)


# Modules that share the `stack` host run in this order: the checks need the
# freshly converged, error-free stack first; the operations and backup tests
# stop services and swap databases (and leave the stack healthy, but with
# ERROR lines in its logs). Modules not listed keep their places, before these.
# test_secrets_stack_rotation (a prefix match) runs after test_secrets_stack and
# returns the passwords to the inventory's before it ends.
# test_review_stack plants findings (a port, a secret file's mode) and removes them;
# it runs after the triage tests: its benchmark's thousand 200s in nginx's access log
# would dilute the 5xx share that test_operations' triage test plants.
# test_awx_ee runs the daily check from the execution environment over SSH (it
# installs and starts sshd on the host, which nothing else minds).
# test_offsite_stack is last: its host-loss test removes the shared stack host.
# test_ssh_transport adds sshd and two sudo admins to the host (nothing else minds).
STACK_ORDER = ["test_checks_stack", "test_awx_ee", "test_ssh_transport", "test_secrets_stack",
               "test_operations", "test_backup_stack", "test_monitoring_stack",
               "test_review_stack", "test_offsite_stack"]


def pytest_collection_modifyitems(session, config, items):
    def rank(item):
        name = item.module.__name__.rsplit(".", 1)[-1]
        for i, prefix in enumerate(STACK_ORDER):
            if name.startswith(prefix):
                return i + 1
        return 0

    items.sort(key=rank)  # stable: the order inside a module is kept
