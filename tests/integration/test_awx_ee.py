# SPDX-License-Identifier: Apache-2.0
"""The execution environment, as AWX uses it (execution-environment.yml, `make ee`).

Inside the image `make images` built with ansible-builder (bmops/ee:0.1.0):
the pinned collections are installed, ansible-doc renders both bmops modules
from the project, and `ansible-runner run` of the daily check completes
against the converged stack host over SSH, the way an AWX job runs: a private
data directory with the project, an inventory that holds no secret, the SSH
key of a machine credential (env/ssh_key, through ssh-agent) and the secrets
as extra variables, which is what the bmops credential types inject. The
container runs as the image's user (1000), not root.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import DEMO_VAULT, ROOT, docker, require_image
from sshhost import address, authorise, controller_key, enable_sshd, known_hosts_line

EE_IMAGE = "bmops/ee:0.1.0"
EE_UID = 1000


def ee_run(*args: str, mounts: tuple[str, ...] = (), network: str | None = None,
           workdir: str | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    cmd = ["run", "--rm"]
    for m in mounts:
        cmd += ["-v", m]
    if network:
        cmd += ["--network", network]
    if workdir:
        cmd += ["-w", workdir]
    return docker(*cmd, EE_IMAGE, *args, check=False, timeout=timeout)


def copy_project(dest: Path) -> None:
    """The project as an AWX project sync has it: the files git knows, nothing else."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


@pytest.fixture(scope="module")
def ee():
    require_image(EE_IMAGE)
    return EE_IMAGE


def test_ee_has_the_pinned_collections(ee):
    proc = ee_run("ansible-galaxy", "collection", "list", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    installed = {}
    for path_listing in json.loads(proc.stdout).values():
        for name, info in path_listing.items():
            installed[name] = info["version"]
    pins = yaml.safe_load((ROOT / "ee" / "requirements.yml").read_text())["collections"]
    assert len(pins) == 7
    for entry in pins:
        ns, name, version = Path(entry["name"]).name.removesuffix(".tar.gz").split("-")
        assert installed.get(f"{ns}.{name}") == version, (ns, name, installed)
    versions = ee_run("sh", "-c", "python3 --version; ansible-runner --version; "
                      "python3 -c 'import ansible; print(ansible.__version__)'")
    assert versions.stdout.split() == ["Python", "3.11.2", "2.4.3", "2.19.14"], versions.stdout


def test_ee_renders_the_bmops_modules(ee, tmp_path):
    project = tmp_path / "project"
    copy_project(project)
    modules = sorted(p.stem for p in (ROOT / "plugins" / "modules").glob("bm_*.py"))
    assert len(modules) == 2
    for module in modules:
        proc = ee_run("ansible-doc", "-t", "module", module,
                      mounts=(f"{project}:/runner/project:ro",), workdir="/runner/project")
        assert proc.returncode == 0, proc.stderr
        assert "RETURN VALUES" in proc.stdout and module in proc.stdout, proc.stdout[:2000]


def ssh_ready_host(stack, tmp_path: Path) -> tuple[str, Path, str]:
    """sshd on the stack host, the controller's key authorised for root; returns
    the host's address, the private key and the host's known_hosts line."""
    enable_sshd(stack.host)
    key = controller_key(tmp_path, "bmops-ee-test")
    authorise(stack.host, "root", key.with_suffix(".pub").read_text().strip())
    return address(stack.host), key, known_hosts_line(stack.host)


def test_ee_runs_the_daily_check_over_ssh_like_awx(ee, stack, tmp_path):
    ip, key, known = ssh_ready_host(stack, tmp_path)
    pdd = tmp_path / "runner"
    copy_project(pdd / "project")
    inv = pdd / "inventory"
    (inv / "group_vars" / "bm_app").mkdir(parents=True)
    # the inventory AWX syncs: the demo's variables without its secrets file
    shutil.copy2(ROOT / "inventory" / "demo" / "group_vars" / "bm_app" / "main.yml",
                 inv / "group_vars" / "bm_app" / "main.yml")
    (inv / "known_hosts").write_text(known + "\n")
    (inv / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {"bm_app": {"hosts": {
        stack.host: {
            "ansible_host": ip,
            "ansible_user": "root",
            "ansible_python_interpreter": "/usr/bin/python3",
            "ansible_ssh_common_args": "-o UserKnownHostsFile=/runner/inventory/known_hosts",
        }}}}}}))
    env = pdd / "env"
    env.mkdir()
    secrets = dict(yaml.safe_load(DEMO_VAULT.read_text()))
    (env / "extravars").write_text(yaml.safe_dump(secrets))  # what the credentials inject
    (env / "ssh_key").write_text(key.read_text())
    for f in (env / "extravars", env / "ssh_key"):
        f.chmod(0o600)
    subprocess.run(["chown", "-R", f"{EE_UID}:0", str(pdd)], check=True)

    proc = ee_run("ansible-runner", "run", "/runner", "-p", "playbooks/daily_check.yml",
                  "--rotate-artifacts", "1",
                  mounts=(f"{pdd}:/runner",), network=stack_network(stack))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "failed=0" in proc.stdout and "unreachable=0" in proc.stdout, proc.stdout[-3000:]
    # it went over SSH to the host, and the report it wrote is there
    events = [json.loads(p.read_text())
              for p in sorted((pdd / "artifacts").glob("*/job_events/*.json"))]
    stats = [e for e in events if e.get("event") == "playbook_on_stats"]
    assert stats and stats[0]["event_data"]["ok"].get(stack.host), stats
    summary = stats[0]["event_data"]["artifact_data"]["bmops_daily"]
    assert summary["status"] in ("ok", "warn") and summary["breaches"] == [], summary
    report = json.loads(stack.sh("cat /var/lib/bmops/reports/daily-latest.json").stdout)
    assert report["checks"], report
    # no secret in any job event (what AWX stores and shows)
    raw = "\n".join(p.read_text() for p in (pdd / "artifacts").rglob("job_events/*.json"))
    for value in secrets.values():
        assert value not in raw
    # ssh-agent held the key; the key file the runner wrote is gone
    assert not list((pdd / "artifacts").rglob("ssh_key_data"))


def stack_network(stack) -> str:
    out = docker("inspect", "-f", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
                 stack.host).stdout.split()
    return out[0]
