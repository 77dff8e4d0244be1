#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The transport real sites use, and real fleets (issue 18), measured live.

    .venv/bin/python bench/fleet.py          # (bench/run.sh runs it after offsite.py)

N separate managed hosts (BMOPS_BENCH_FLEET, 10): systemd containers of the test platform
(tests/harness/hosts.py), each converged with playbooks/site.yml (its own Docker engine and
application stack). Each runs sshd with an ``admin`` account whose sudo is NOPASSWD; the
controller knows every host key through a known_hosts file the inventory names
(StrictHostKeyChecking=yes), as tests/integration/sshhost.py sets them up.

1. A no-change ``site.yml`` on one converged host, three arms interleaved: docker exec as
   root (community.docker.docker, what the tests use), SSH as admin with sudo (pipelining,
   ControlPersist: ansible.cfg), and SSH with the opt-in Mitogen strategy
   (ANSIBLE_STRATEGY=mitogen_linear).
2. ``daily_check.yml`` over SSH on 1, 5 and 10 hosts (the first N of the fleet), and on
   10 with Mitogen, interleaved: wall time, controller CPU per host (the ansible-playbook
   process tree, from wait4) and host CPU per check (each host container's cgroup, minus
   what its idle stack uses in the same time).

Writes the section "Transport and fleet" at the top of BENCHMARKS.md's results with the
lines site_rerun_ssh_seconds, site_rerun_ssh_mitogen_seconds, site_rerun_docker_seconds,
daily_check_ssh_seconds, daily_check_10_hosts_ratio.

Environment: BMOPS_BENCH_FLEET (10), BMOPS_BENCH_ROUNDS (3), BMOPS_KEEP=1 keeps the hosts,
BMOPS_BENCH_FLEET_CONVERGED=1 skips the converge (hosts kept by an earlier run).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "harness"))
sys.path.insert(0, str(ROOT / "tests" / "integration"))
sys.path.insert(0, str(ROOT / "bench"))

import hosts  # noqa: E402
import yaml  # noqa: E402
from sshhost import (  # noqa: E402
    admin_account,
    controller_key,
    enable_sshd,
    known_hosts_line,
    ssh_host_vars,
)

from bench import Cgroup, container_id  # noqa: E402

FLEET = max(1, int(os.environ.get("BMOPS_BENCH_FLEET", "10")))
ROUNDS = max(1, int(os.environ.get("BMOPS_BENCH_ROUNDS", "3")))
KEEP = os.environ.get("BMOPS_KEEP") == "1"
NETWORK = "bmops-bench-fleet"
NAMES = [f"bmops-bench-fleet-{i:02d}" for i in range(1, FLEET + 1)]
WORK = Path(os.environ.get("BMOPS_BENCH_FLEET_WORK", "/tmp/bmops-bench-fleet"))
BIN = ROOT / ".venv" / "bin"
OUT = ROOT / "BENCHMARKS.md"
SECTION = "## Transport and fleet"


def log(msg: str) -> None:
    print(f"[fleet {time.strftime('%H:%M:%S')}] {msg}", flush=True)


CGROUPS: dict[str, Cgroup] = {}


def host_cpu_seconds(name: str) -> float:
    """CPU used so far by the host container NAME (bench.py's cgroup reader, v1 or v2;
    looked up once per host)."""
    if name not in CGROUPS:
        CGROUPS[name] = Cgroup(container_id(name))
    used = CGROUPS[name].cpu_seconds()
    if used is None:
        raise RuntimeError(f"no cgroup CPU counter for {name}")
    return used


def inventory(name: str, host_vars: dict[str, dict]) -> Path:
    """An inventory of the given hosts (bm_app) that reuses the demo group_vars."""
    directory = WORK / name
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "hosts.yml").write_text(yaml.safe_dump(
        {"all": {"children": {"bm_app": {"hosts": host_vars}}}}), encoding="utf-8")
    link = directory / "group_vars"
    if not link.is_symlink():
        link.symlink_to(ROOT / "inventory" / "demo" / "group_vars")
    return directory


def env(**extra: str) -> dict:
    out = {k: v for k, v in os.environ.items() if k != "ANSIBLE_STRATEGY"}
    out.update(ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_HOST_KEY_CHECKING="True", PATH=f"{BIN}:{out.get('PATH', '')}", **extra)
    return out


def recap(stdout: str) -> dict[str, dict]:
    rows = {}
    for m in re.finditer(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+"
                         r"failed=(\d+)", stdout, flags=re.M):
        rows[m[1]] = {"ok": int(m[2]), "changed": int(m[3]), "unreachable": int(m[4]),
                      "failed": int(m[5])}
    return rows


def measure(label: str, playbook: str, inv: Path, names: list[str], **extra_env: str) -> dict:
    """One ansible-playbook run: wall, controller CPU (wait4), CPU of each host."""
    cpu0 = {n: host_cpu_seconds(n) for n in names}
    logf = WORK / "logs" / f"{time.strftime('%H%M%S')}-{label}.log"
    logf.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with open(logf, "w+", encoding="utf-8") as out:
        proc = subprocess.Popen([str(BIN / "ansible-playbook"), "-i", str(inv),
                                 str(ROOT / "playbooks" / f"{playbook}.yml")],
                                stdout=out, stderr=subprocess.STDOUT, env=env(**extra_env))
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.monotonic() - t0
        out.seek(0)
        stdout = out.read()
    rc = os.waitstatus_to_exitcode(status)
    rows = recap(stdout)
    busy = sum(host_cpu_seconds(n) - cpu0[n] for n in names)
    res = {"label": label, "rc": rc, "wall": wall, "cpu_ctl": ru.ru_utime + ru.ru_stime,
           # what the run cost each host: its CPU minus what its idle stack uses anyway
           "cpu_hosts": busy - sum(IDLE.get(n, 0.0) for n in names) * wall,
           "hosts": len(rows), "changed": sum(r["changed"] for r in rows.values())}
    log(f"{label}: rc={rc} wall={wall:.1f}s ctl={res['cpu_ctl']:.1f}s "
        f"hosts_cpu={res['cpu_hosts']:.1f}s changed={res['changed']}")
    if rc != 0 or len(rows) != len(names) or any(r["failed"] or r["unreachable"]
                                                 for r in rows.values()):
        raise RuntimeError(f"{label} failed (rc {rc}, see {logf}):\n{stdout[-4000:]}")
    return res


def walls(runs: list[dict]) -> str:
    return ", ".join(f"{r['wall']:.1f}" for r in runs)


IDLE: dict[str, float] = {}


def measure_idle(names: list[str], window: float = 60.0) -> float:
    """CPU seconds per second each host's idle stack uses (health checks, Prometheus,
    exporters), over WINDOW; kept in IDLE and subtracted from every run's host CPU."""
    cpu0 = {n: host_cpu_seconds(n) for n in names}
    t0 = time.monotonic()
    time.sleep(window)
    elapsed = time.monotonic() - t0
    for n in names:
        IDLE[n] = (host_cpu_seconds(n) - cpu0[n]) / elapsed
    mean = statistics.mean(IDLE.values())
    log(f"idle: {mean:.3f} CPU s/s per host (mean of {len(names)})")
    return mean


def median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def setup() -> tuple[dict[str, dict], dict[str, dict]]:
    """The fleet up and converged; return the docker-exec and SSH host vars by name."""
    WORK.mkdir(parents=True, exist_ok=True)
    if hosts.docker("network", "inspect", NETWORK, check=False).returncode != 0:
        hosts.docker("network", "create", NETWORK)
    key = controller_key(WORK / "key", "bmops-bench-fleet")
    pub = key.with_suffix(".pub").read_text().strip()
    known = WORK / "known_hosts"
    lines, docker_vars, ssh_vars = [], {}, {}
    for name in NAMES:
        log(f"host {name}: {hosts.up(name, network=NETWORK)}")
        enable_sshd(name)
        admin_account(name, "admin", pub, None)
        lines.append(known_hosts_line(name))
        docker_vars[name] = {"ansible_connection": "community.docker.docker",
                             "ansible_python_interpreter": "/usr/bin/python3"}
    known.write_text("\n".join(lines) + "\n", encoding="utf-8")
    for name in NAMES:
        ssh_vars[name] = ssh_host_vars(name, "admin", key, known)
    if os.environ.get("BMOPS_BENCH_FLEET_CONVERGED") == "1":
        log("hosts kept converged from an earlier run (BMOPS_BENCH_FLEET_CONVERGED=1)")
        return docker_vars, ssh_vars
    log(f"converge site.yml on {len(NAMES)} hosts (docker exec, forks 20)")
    t0 = time.monotonic()
    converge = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(inventory("converge", docker_vars)),
         str(ROOT / "playbooks" / "site.yml")], env=env(), capture_output=True, text=True)
    (WORK / "converge.log").write_text(converge.stdout + converge.stderr, encoding="utf-8")
    if converge.returncode != 0:
        raise RuntimeError(f"converge failed:\n{converge.stdout[-4000:]}")
    log(f"converged in {time.monotonic() - t0:.0f} s")
    return docker_vars, ssh_vars


def bench(docker_vars: dict, ssh_vars: dict) -> tuple[dict, dict]:
    first = NAMES[0]
    one_docker = inventory("one-docker", {first: docker_vars[first]})
    one_ssh = inventory("one-ssh", {first: ssh_vars[first]})
    arms = {
        "docker exec": lambda: measure("site-docker", "site", one_docker, [first]),
        "SSH": lambda: measure("site-ssh", "site", one_ssh, [first]),
        "SSH + Mitogen": lambda: measure("site-mitogen", "site", one_ssh, [first],
                                         ANSIBLE_STRATEGY="mitogen_linear"),
    }
    sizes = sorted({1, min(5, FLEET), FLEET})
    fleets = {n: inventory(f"fleet-{n}", {h: ssh_vars[h] for h in NAMES[:n]}) for n in sizes}
    for n in sizes:
        arms[f"daily {n}"] = (lambda n=n: measure(f"daily-{n}", "daily_check", fleets[n],
                                                  NAMES[:n]))
    # the whole fleet once more with Mitogen: one Python per host instead of one per task
    arms[f"daily {FLEET} mitogen"] = lambda: measure(
        f"daily-{FLEET}-mitogen", "daily_check", fleets[FLEET], NAMES,
        ANSIBLE_STRATEGY="mitogen_linear")
    # warm-up: facts cached, SSH masters up, the daily check's first report written
    measure("warm-site-ssh", "site", one_ssh, [first])
    measure("warm-daily", "daily_check", fleets[FLEET], NAMES)
    idle = measure_idle(NAMES)
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    runs: dict[str, list[dict]] = {name: [] for name in arms}
    names = list(arms)
    for i in range(ROUNDS):
        for name in names[i % len(names):] + names[:i % len(names)]:
            runs[name].append(arms[name]())
    return runs, {"sizes": sizes, "load": load, "idle": idle}


def write(runs: dict, meta: dict, elapsed: float) -> None:
    sizes = meta["sizes"]
    site = {k: median(runs[k], "wall") for k in ("docker exec", "SSH", "SSH + Mitogen")}
    daily = {n: runs[f"daily {n}"] for n in sizes}
    big = sizes[-1]
    ratio = median(daily[big], "wall") / median(daily[1], "wall")
    lines = {
        "site_rerun_ssh_seconds": round(site["SSH"], 1),
        "site_rerun_ssh_mitogen_seconds": round(site["SSH + Mitogen"], 1),
        "site_rerun_docker_seconds": round(site["docker exec"], 1),
        "site_rerun_ssh_changed": max(r["changed"] for k in site for r in runs[k]),
        "daily_check_ssh_seconds": round(median(daily[1], "wall"), 1),
        f"daily_check_{big}_hosts_ratio": round(ratio, 2),
        f"daily_check_{big}_hosts_mitogen_ratio": round(
            median(runs[f"daily {big} mitogen"], "wall") / median(daily[1], "wall"), 2),
    }
    goals = [("site.yml no-change over SSH <= 15 s", lines["site_rerun_ssh_seconds"], 15),
             ("the same with the opt-in Mitogen <= 15 s",
              lines["site_rerun_ssh_mitogen_seconds"], 15),
             (f"daily check on {big} hosts <= 3 x one host",
              lines[f"daily_check_{big}_hosts_ratio"], 3)]
    table = ["| arm | wall (median) | controller CPU | host CPU | runs |", "|---|---|---|---|---|"]
    for k in site:
        table.append(f"| site.yml no-change, one host, {k} | {site[k]:.1f} s | "
                     f"{median(runs[k], 'cpu_ctl'):.1f} s | {median(runs[k], 'cpu_hosts'):.1f} s | "
                     f"{walls(runs[k])} |")
    fleet = ["| hosts | wall (median) | vs one host | controller CPU per host | "
             "host CPU per check | runs |", "|---|---|---|---|---|---|"]
    one = median(daily[1], "wall")
    rows = [(str(n), n, daily[n]) for n in sizes]
    rows.append((f"{big}, Mitogen", big, runs[f"daily {big} mitogen"]))
    for label, n, rr in rows:
        fleet.append(f"| {label} | {median(rr, 'wall'):.1f} s | "
                     f"{median(rr, 'wall') / one:.2f} | "
                     f"{median(rr, 'cpu_ctl') / n:.2f} s | "
                     f"{median(rr, 'cpu_hosts') / n:.2f} s | "
                     f"{walls(rr)} |")
    section = [
        SECTION, "",
        f"Written by `bench/fleet.py` on {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC "
        f"in {elapsed / 60:.0f} min. {FLEET} separate managed hosts (systemd containers, each "
        "converged with `site.yml`: its own Docker engine and application stack), reached "
        "over SSH as `admin` with sudo (NOPASSWD), host keys checked against the "
        "inventory's known_hosts; pipelining and ControlPersist as `ansible.cfg` sets them. "
        f"Arms interleaved, {ROUNDS} rounds, medians. Controller and hosts share the same "
        f"{os.cpu_count()} cores, so the fleet's figures include every host's own CPU; "
        f"the {FLEET} idle stacks themselves (health checks, Prometheus, exporters) keep "
        f"the machine busy too: load average {meta['load']} when the measurements "
        f"started; each idle host used {meta['idle']:.3f} CPU s per s, which is subtracted "
        "from the host CPU below (host CPU = what the run cost the hosts).", "",
        "These are the headline figures: SSH as a sudo admin is how sites connect. The "
        "docker-exec figures are the tests' transport, given beside them.", "",
        *[f"{k}: {v}" for k, v in lines.items()], "",
        "| goal | measured | |", "|---|---|---|",
        *[f"| {g} | {v} | {'met' if v <= lim else 'NOT met'} |" for g, v, lim in goals], "",
        *table, "", *fleet, "",
    ]
    text = OUT.read_text(encoding="utf-8")
    text = re.sub(rf"\n{re.escape(SECTION)}\n.*?(?=\n## |\Z)", "", text, flags=re.S)
    head, sep, rest = text.partition("\n## Results\n")
    if not sep:
        raise RuntimeError("BENCHMARKS.md has no '## Results' section to put the headline before")
    OUT.write_text(head.rstrip("\n") + "\n\n" + "\n".join(section) + sep + rest, encoding="utf-8")
    log(f"wrote {OUT}: {lines}")


def main() -> int:
    t0 = time.monotonic()
    try:
        docker_vars, ssh_vars = setup()
        runs, meta = bench(docker_vars, ssh_vars)
        write(runs, meta, time.monotonic() - t0)
    finally:
        if not KEEP:
            for name in NAMES:
                hosts.down(name)
            hosts.docker("network", "rm", NETWORK, check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
