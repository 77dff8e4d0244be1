#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Monitoring benchmarks (issue 23): detection latency and idle cost, measured live.

    .venv/bin/python bench/monitoring.py        # (bench/run.sh runs it after bench.py)

Brings up an app host and a monitoring host (tests/harness/hosts.py) on one
network with an SMTP sink, converges site.yml (two-host layout, the test
inventory's short scrape/evaluation intervals; the manual's 1 minute `for` of
the P1 rules stays), starts a webhook receiver, then measures:

- detection latency: fault -> notification in the sink, for backend down (P1,
  webhook), Redis down (P1, webhook) and a failed backup (P2, mail);
- first response (issue 22): backend down -> the triage mail of
  playbooks/respond_alert.yml in the sink, with ansible-rulebook
  (extensions/eda/rulebooks/bmops.yml) run as the service runs it;
- idle cost at the production intervals (the role's defaults: scrape and
  evaluation every 15 s, bmops-app-metrics every minute; site.yml re-run with
  the monitoring tags and without the test overrides): RSS and CPU of
  Prometheus, Alertmanager and the four exporters over BMOPS_BENCH_IDLE seconds
  (default 180), from /proc, plus bmops-app-metrics (a oneshot timer, gone
  between runs): the CPU of one run, measured with getrusage on the host, times
  the runs the window holds.

Writes the machine-readable lines into BENCHMARKS.md (section "Monitoring"):
detection_latency_p1_seconds, detection_latency_redis_seconds,
detection_latency_backup_seconds, fault_to_triage_mail_seconds, monitoring_idle_rss_mib,
monitoring_idle_cpu_percent.

Environment: BMOPS_BENCH_MON_APP (bmops-bench-mon), BMOPS_KEEP=1 keeps the hosts.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
os.environ.setdefault("BMOPS_IT_HOST", os.environ.get("BMOPS_BENCH_MON_APP", "bmops-bench-mon"))

import conftest as it  # noqa: E402
import test_monitoring_stack as tm  # noqa: E402

IDLE = int(os.environ.get("BMOPS_BENCH_IDLE", "180"))
APP_METRICS = "/usr/local/sbin/bmops-app-metrics --config /etc/bmops/app-metrics.json"
APP_METRICS_EVERY = 60  # seconds: monitoring_app_metrics_interval, the role's default
# the test inventory's short intervals; without them the role's defaults apply
SHORT_INTERVALS = ("monitoring_scrape_interval", "monitoring_evaluation_interval",
                   "monitoring_group_wait", "monitoring_p1_group_wait",
                   "monitoring_group_interval", "monitoring_for_default",
                   "monitoring_app_metrics_interval")
OUT = ROOT / "BENCHMARKS.md"


def setup():
    if it.docker("network", "inspect", it.NETWORK, check=False).returncode != 0:
        it.docker("network", "create", it.NETWORK)
    it.hosts.up(it.STACK_HOST, network=it.NETWORK)
    it.hosts.up(tm.MON_HOST, network=it.NETWORK)
    it.docker("rm", "-f", it.SMTP_NAME, check=False)
    it.docker("run", "-d", "--name", it.SMTP_NAME, "--network", it.NETWORK,
              "bmops/smtp-sink:latest")
    time.sleep(3)
    ip = it.docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                   it.SMTP_NAME).stdout.strip()
    sink = it.SmtpSink(it.SMTP_NAME, ip)
    work = Path(os.environ.get("BMOPS_BENCH_WORK", "/tmp/bmops-bench-mon"))
    inv = work / "inventory"
    gateway = it.docker("network", "inspect", "-f", "{{(index .IPAM.Config 0).Gateway}}",
                        it.NETWORK).stdout.strip()
    it.write_inventory_text(inv, tm.inventory_text(ip, gateway, str(work / "eda-state.json")))
    # the bench runs the rulebook itself (Responder), as the test does: no service
    result = it.run_playbook("site", inv, work / f"site-{int(time.time())}",
                             cmdline="--skip-tags eda_responder")
    if result.rc != 0:
        raise SystemExit("site.yml did not converge:\n" + result.stdout[-3000:])
    mon = tm.Mon(inv, work, sink)
    mon.gateway = gateway
    it.docker("exec", "-d", tm.MON_HOST, "python3", "-c", tm.HOOK_SERVER)
    stack = it.Stack(it.STACK_HOST, inv, work)
    stack.wait_ready(240)
    try:
        mon.wait("every target up", lambda: (r := mon.query("up")) and all(
            x["value"][1] == "1" for x in r), 300)
    except AssertionError as exc:  # name the target and Prometheus's reason
        down = [(t["labels"].get("job"), t.get("lastError")) for t in
                mon.api("/api/v1/targets")["activeTargets"] if t.get("health") != "up"]
        raise SystemExit(f"{exc}: down: {down}") from None
    return stack, mon, sink


def to_production(stack, mon):
    """Re-run site.yml (monitoring tags) without the test's short intervals."""
    text = (mon.inventory / "hosts.yml").read_text(encoding="utf-8")
    prod = "\n".join(line for line in text.splitlines()
                      if line.strip().split(":")[0] not in SHORT_INTERVALS) + "\n"
    inv = mon.inventory.parent / "inventory-production"
    it.write_inventory_text(inv, prod)
    result = it.run_playbook("site", inv, mon.workdir / f"prod-{int(time.time())}",
                             tags=tm.TAGS)
    if result.rc != 0:
        raise SystemExit("site.yml (production intervals) failed:\n" + result.stdout[-3000:])
    timer = it.docker("exec", stack.host, "systemctl", "show", "-p", "TimersMonotonic",
                      "bmops-app-metrics.timer").stdout
    if "1min" not in timer:
        raise SystemExit(f"bmops-app-metrics.timer is not at the production minute: {timer}")


def app_metrics_cpu(host, runs=5):
    """CPU seconds of one bmops-app-metrics run (its process tree on the host; the
    queries' share inside the db container is not counted), the median of RUNS."""
    script = ("import resource, subprocess, sys\n"
              "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)\n"
              "r = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
              "print(r.ru_utime + r.ru_stime)")
    samples = sorted(float(it.docker("exec", host, "python3", "-c", script,
                                     *APP_METRICS.split()).stdout) for _ in range(runs))
    return samples[len(samples) // 2]


def fire(mon, alertname, fault, repair, via="webhook", status="firing"):
    mon.clear()
    start = time.monotonic()
    fault()
    try:
        if via == "webhook":
            mon.wait(alertname, lambda: tm.hooks_about(mon, alertname, status), 300)
        else:
            mon.wait(alertname, lambda: tm.mails_about(mon.sink, alertname, "FIRING"), 300)
        return time.monotonic() - start
    finally:
        repair()


def proc_stats(host):
    """{name: (rss_kib, cpu_ticks)} of the monitoring processes on HOST."""
    out = it.docker("exec", host, "sh", "-c",
                    "for p in /proc/[0-9]*; do c=$(cat $p/comm 2>/dev/null) || continue; "
                    "case $c in prometheus*|bmops-app-metri*) "
                    "echo \"$c $(awk '/VmRSS/{print $2}' $p/status) "
                    "$(cut -d' ' -f14,15 $p/stat)\";; esac; done", check=False).stdout
    stats = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4:
            name, rss, ut, st = parts[0], int(parts[1] or 0), int(parts[2]), int(parts[3])
            old = stats.get(name, (0, 0))
            stats[name] = (old[0] + rss, old[1] + ut + st)
    return stats


# The postmortem draft's first timeline row names the alert the triage answers.
FIRED_RE = re.compile(r"\| (\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d)\S* \| alert "
                      r"(BmReadyNotOK|BmContainerDown) \(P1\) started firing")


def answers(text, since):
    """Whether a triage mail answers a P1 of the backend that started after SINCE."""
    m = FIRED_RE.search(text)
    return bool(m) and dt.datetime.fromisoformat(
        m.group(1).replace(" ", "T") + "+00:00") >= since


def settle(mon, sink, quiet=20, timeout=240):
    """Wait until no P1/P2 alert is firing or pending and, for QUIET seconds, no
    respond_alert.yml runs and no mail arrives: the detection runs above left
    notifications that Alertmanager keeps retrying to the responder URL, and once
    it listens they start triages of faults already repaired."""
    mon.wait("no P1/P2 alert firing or pending",
             lambda: not mon.query('ALERTS{severity=~"P1|P2"}'), 300)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = len(sink.messages())
        time.sleep(quiet)
        busy = subprocess.run(["pgrep", "-f", "respond_alert.yml"], capture_output=True,
                              check=False).returncode == 0
        if not busy and len(sink.messages()) == before:
            return
    raise SystemExit("the responder did not settle: it keeps answering earlier alerts")


def first_response(stack, mon, sink):
    """Backend down -> the first-response triage mail of this fault in the sink (s)."""
    workdir = mon.workdir / f"eda-{int(time.time())}"
    workdir.mkdir(parents=True)
    responder = tm.Responder(mon, workdir)
    try:
        settle(mon, sink)
        # forget the settled triages' decisions (one triage per host per 10 minutes)
        (mon.workdir / "eda-state.json").unlink(missing_ok=True)
        mon.clear()
        since = dt.datetime.now(dt.UTC).replace(microsecond=0)
        start = time.monotonic()
        stack.compose("stop", "backend")
        try:
            mon.wait("the triage mail of this fault", lambda: [
                t for _, t in tm.first_response_mails(sink, must=("Triage (read-only",))
                if answers(t, since)], 300)
            return time.monotonic() - start
        finally:
            stack.compose("start", "backend")
            stack.wait_ready()
    finally:
        responder.stop()


def idle_cost(stack):
    """RSS (MiB) and CPU (% of one core) of the monitoring at rest, both hosts."""
    hz = 100
    time.sleep(30)  # let the re-run's restarts settle
    before = {h: proc_stats(h) for h in (stack.host, tm.MON_HOST)}
    time.sleep(IDLE)
    after = {h: proc_stats(h) for h in (stack.host, tm.MON_HOST)}
    rss = sum(v[0] for h in after for v in after[h].values()) / 1024
    ticks = sum(after[h][n][1] - before[h].get(n, (0, 0))[1] for h in after for n in after[h])
    per_run = app_metrics_cpu(stack.host)
    servers = 100.0 * ticks / hz / IDLE
    timer = 100.0 * per_run / APP_METRICS_EVERY
    detail = {f"{h}:{n}": round(v[0] / 1024, 1) for h in after for n, v in after[h].items()}
    cpu = {"servers": round(servers, 2), "bmops-app-metrics": round(timer, 2),
           "app-metrics run (s)": round(per_run, 2)}
    return rss, servers + timer, detail, cpu


def write(results, detail, cpu_detail):
    text = OUT.read_text(encoding="utf-8") if OUT.exists() else "# bmops benchmarks\n"
    text = re.sub(r"\n## Monitoring\n.*?(?=\n## |\Z)", "", text, flags=re.S)
    lines = [f"{k}: {v}" for k, v in results.items()]
    goals = [
        ("P1 detection (worst of backend and Redis down) <= 120 s",
         results["detection_latency_p1_seconds"], 120),
        ("fault -> triage mail, nobody at the keyboard <= 180 s",
         results["fault_to_triage_mail_seconds"], 180),
        ("idle RSS <= 300 MiB", results["monitoring_idle_rss_mib"], 300),
        ("idle CPU <= 2 % of one core", results["monitoring_idle_cpu_percent"], 2),
    ]
    section = ["", "## Monitoring", "",
               f"Written by `bench/monitoring.py` on {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC "
               "(two hosts: app + monitoring; scrape and evaluation every 5 s, Alertmanager "
               "group_wait 2 s for P1, the P1 rules' `for: 1m` as in production). "
               "Latency = fault injected -> notification stored by the sink (webhook for P1, "
               "mail for the backup; the backup's P2 rule waits the test's `for: 10s`, "
               "production waits 5 minutes more). First response = backend stopped -> "
               "the triage mail of playbooks/respond_alert.yml (run by ansible-rulebook "
               "through Alertmanager's webhook) stored by the SMTP sink. "
               "Idle cost at the production intervals "
               "(scrape and evaluation every 15 s, bmops-app-metrics every minute), "
               f"summed over both hosts, from /proc ({IDLE} s window) plus the timer's "
               "runs.", "", *lines, "",
               "| goal | measured | |", "|---|---|---|",
               *[f"| {g} | {v} | {'met' if v <= lim else 'NOT met'} |" for g, v, lim in goals],
               "", "RSS per process (MiB): " + ", ".join(f"{k} {v}" for k, v in
                                                         sorted(detail.items())),
               "", "CPU (% of one core): " + ", ".join(f"{k} {v}" for k, v in
                                                      cpu_detail.items()), ""]
    OUT.write_text(text.rstrip("\n") + "\n" + "\n".join(section), encoding="utf-8")


def main():
    stack, mon, sink = setup()
    try:
        p1 = fire(mon, "BmReadyNotOK", lambda: stack.compose("stop", "backend"),
                  lambda: (stack.compose("start", "backend"), stack.wait_ready()))
        redis = fire(mon, "BmRedisDown", lambda: stack.compose("stop", "redis"),
                     lambda: (stack.compose("start", "redis"), stack.wait_ready()))

        def failed_backup():
            stack.compose("stop", "db")
            it.docker("exec", stack.host, "/usr/local/sbin/bmops-backup", "backup", check=False)
            stack.compose("start", "db")

        backup = fire(mon, "BmBackupFailed", failed_backup,
                      lambda: (stack.wait_ready(), it.docker(
                          "exec", stack.host, "/usr/local/sbin/bmops-backup", "backup",
                          check=False)),
                      via="mail")
        triage = first_response(stack, mon, sink)
        to_production(stack, mon)
        rss, cpu, detail, cpu_detail = idle_cost(stack)
        results = {"detection_latency_p1_seconds": round(max(p1, redis)),  # the worst P1
                   "detection_latency_redis_seconds": round(redis),
                   "detection_latency_backup_seconds": round(backup),
                   "fault_to_triage_mail_seconds": round(triage),
                   "monitoring_idle_rss_mib": round(rss),
                   "monitoring_idle_cpu_percent": round(cpu, 2)}
        write(results, detail, cpu_detail)
        for k, v in results.items():
            print(f"{k}: {v}")
    finally:
        if os.environ.get("BMOPS_KEEP") != "1":
            for h in (tm.MON_HOST, it.STACK_HOST):
                it.hosts.down(h)
            it.docker("rm", "-f", it.SMTP_NAME, check=False)


if __name__ == "__main__":
    main()
