#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""bmops benchmarks (docs/architecture.md, "Benchmarks"): measure side by side, in one run, and
write BENCHMARKS.md.  Entry point: ``bash bench/run.sh`` (``make bench``).

What runs where:
- the managed host is a systemd host container (tests/harness/hosts.py), converged
  with playbooks/site.yml (which applies the db_backup role);
- shell arms run on that host through ``docker exec HOST bash -c``; Ansible arms run
  ``ansible-playbook`` here (the controller) against it, as admins and AWX do;
- every measurement records wall time, CPU (controller process tree from wait4, the
  host container's cgroup, the db container's cgroup: cgroup v1 cpuacct), the peak
  of extra resident memory (anon RSS) on the managed side (host container + db
  container cgroups, sampled every 0.2 s) and the controller tree's max RSS.

Environment: BMOPS_KEEP=1 keeps the host; BMOPS_BENCH_HOST (default bmops-bench),
BMOPS_BENCH_WORK (default /tmp/bmops-bench), BMOPS_BENCH_SCALE (pgbench scale, 70),
BMOPS_BENCH_DOCS (rows of the extra text/jsonb table, 500000), BMOPS_BENCH_REPEAT
(repetitions of short measurements, 3), BMOPS_BENCH_PARTS (for debugging: a
comma list of site,daily,backup,restore,playbook; BENCHMARKS.md needs them all).

One file of three parts (measurement: ``measure``/``Cgroup``/``interleaved``; the
arms: ``bench_*``; the report: ``render``) that share the module-level host, cgroup
and result state. ``render`` (about 190 lines) is the part to move out first, into
a module that takes the saved results; that split needs a full bench run to check
and is not done yet.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "harness"))

import hosts  # noqa: E402

HOST = os.environ.get("BMOPS_BENCH_HOST", "bmops-bench")
WORK = Path(os.environ.get("BMOPS_BENCH_WORK", "/tmp/bmops-bench"))
KEEP = os.environ.get("BMOPS_KEEP") == "1"
SCALE = int(os.environ.get("BMOPS_BENCH_SCALE", "70"))
DOCS = int(os.environ.get("BMOPS_BENCH_DOCS", "500000"))
REPEAT = max(3, int(os.environ.get("BMOPS_BENCH_REPEAT", "3")))
# Every arm runs at the wal_level a site with point-in-time recovery runs (issue 16);
# BMOPS_BENCH_WAL_LEVEL=minimal measures the role's default without it.
WAL_LEVEL = os.environ.get("BMOPS_BENCH_WAL_LEVEL", "replica")
SHORT = 30.0  # measurements shorter than this are repeated REPEAT times (median)
PROJECT_DIR = "/opt/backup-mgmt"
PROJECT = "backup-mgmt"
DB = "backup_mgmt"
TOOL = "/usr/local/sbin/bmops-backup"
FILES = "/var/tmp/bmops-bench"  # dump files of the manual and module arms (on HOST)
COMPOSE = f"cd {PROJECT_DIR} && docker compose"
BIN = ROOT / ".venv" / "bin"
CGROOT = Path("/sys/fs/cgroup")
OUT = ROOT / "BENCHMARKS.md"

RESULTS: dict = {"measurements": {}, "notes": []}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------ shell helpers


def run(argv: list[str], check: bool = True, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, **kw)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)[:300]} exited {proc.returncode}:\n"
                           f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return proc


def on_host(script: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(["docker", "exec", HOST, "bash", "-c", "set -euo pipefail\n" + script],
               check=check)


def host_argv(script: str) -> list[str]:
    return ["docker", "exec", HOST, "bash", "-c", "set -euo pipefail\n" + script]


def psql(sql: str, db: str = DB) -> str:
    return on_host(f"{COMPOSE} exec -T db psql -X -U postgres -d {db} -At -v ON_ERROR_STOP=1 "
                   f"-c {shlex.quote(sql)}").stdout.strip()


def ansible_env() -> dict:
    env = dict(os.environ)
    env.update(ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_FORCE_COLOR="0", PY_COLORS="0", PATH=f"{BIN}:{env.get('PATH', '')}")
    return env


def playbook_argv(playbook: str, inventory: Path, *extra: str) -> list[str]:
    return [str(BIN / "ansible-playbook"), "-i", str(inventory), str(ROOT / playbook), *extra]


def recap(stdout: str) -> dict:
    """Sum the PLAY RECAP counters over hosts."""
    total = {"ok": 0, "changed": 0, "failed": 0, "unreachable": 0, "hosts": 0}
    for line in stdout.splitlines():
        m = re.match(r"^\S+\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)",
                     line)
        if m:
            total["hosts"] += 1
            total["ok"] += int(m[1])
            total["changed"] += int(m[2])
            total["unreachable"] += int(m[3])
            total["failed"] += int(m[4])
    return total


# ---------------------------------------------------------------- measurement


class Cgroup:
    """cgroup v1 cpuacct + memory of one container (by full container id)."""

    def __init__(self, cid: str):
        self.cid = cid
        self.cpu = CGROOT / "cpuacct" / "docker" / cid / "cpuacct.usage"
        self.mem = CGROOT / "memory" / "docker" / cid / "memory.stat"
        if not self.cpu.exists():  # cgroup v2 fallback
            base = next((p for p in (CGROOT / "system.slice" / f"docker-{cid}.scope",
                                     CGROOT / "docker" / cid) if p.exists()), None)
            self.cpu = base / "cpu.stat" if base else None
            self.mem = base / "memory.stat" if base else None

    def cpu_seconds(self) -> float | None:
        if not self.cpu or not self.cpu.exists():
            return None
        text = self.cpu.read_text()
        if self.cpu.name == "cpu.stat":
            return int(re.search(r"usage_usec (\d+)", text)[1]) / 1e6
        return int(text) / 1e9

    def rss(self) -> int:
        if not self.mem or not self.mem.exists():
            return 0
        stat = dict(line.split() for line in self.mem.read_text().splitlines())
        return int(stat.get("total_rss", stat.get("anon", 0)))


def container_id(name: str, inner: bool = False) -> str:
    argv = ["docker", "inspect", "-f", "{{.Id}}", name]
    proc = run(["docker", "exec", HOST, *argv]) if inner else run(argv)
    return proc.stdout.strip()


CG: dict[str, Cgroup] = {}
COUNTER = [0]


def refresh_cgroups() -> None:
    CG["host"] = Cgroup(container_id(HOST))
    CG["db"] = Cgroup(container_id(f"{PROJECT}-db-1", inner=True))


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def measure(argv: list[str], label: str, env: dict | None = None,
            check: bool = True) -> dict:
    """Run argv here; return wall, CPU (controller + host + db cgroups), memory, output."""
    refresh_cgroups()
    cgs = [CG["host"], CG["db"]]
    cpu0 = [c.cpu_seconds() for c in cgs]
    rss0 = sum(c.rss() for c in cgs)
    peak = [rss0]
    loads: list[float] = []
    stop = threading.Event()

    def sample():
        while not stop.wait(0.2):
            peak[0] = max(peak[0], sum(c.rss() for c in cgs))
            loads.append(loadavg())

    sampler = threading.Thread(target=sample, daemon=True)
    COUNTER[0] += 1
    out_path = WORK / "logs" / f"{COUNTER[0]:03d}-{label}.log"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    sampler.start()
    with open(out_path, "w+", encoding="utf-8") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.monotonic() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        stop.set()
        sampler.join()
        out.seek(0)
        stdout = out.read()
    cpu1 = [c.cpu_seconds() for c in cgs]
    res = {
        "label": label, "rc": proc.returncode, "wall": wall,
        "cpu_ctl": ru.ru_utime + ru.ru_stime,
        "cpu_host": (cpu1[0] - cpu0[0]) if cpu0[0] is not None else None,
        "cpu_db": (cpu1[1] - cpu0[1]) if cpu0[1] is not None else None,
        "peak_rss": max(0, peak[0] - rss0), "ctl_maxrss": ru.ru_maxrss * 1024,
        "load": statistics.mean(loads) if loads else loadavg(),
    }
    res["cpu_total"] = res["cpu_ctl"] + (res["cpu_host"] or 0) + (res["cpu_db"] or 0)
    res["stdout_tail"] = stdout[-3000:]
    res["_stdout"] = stdout
    # profile_tasks' last timestamp line carries the play's elapsed total.
    tp = re.findall(r"\(\d+:\d+:\d+\.\d+\)\s+(\d+):(\d+):(\d+\.\d+)", stdout)
    if tp:
        res["tasks_phase"] = int(tp[-1][0]) * 3600 + int(tp[-1][1]) * 60 + float(tp[-1][2])
    log(f"{label}: rc={res['rc']} wall={wall:.1f}s cpu={res['cpu_total']:.1f}s "
        f"peak_rss={res['peak_rss'] / 2**20:.0f}MiB load={res['load']:.1f}")
    if check and proc.returncode != 0:
        raise RuntimeError(f"{label} failed (rc {proc.returncode}):\n{stdout[-4000:]}")
    return res


def keep(name: str, runs: list[dict], **extra) -> dict:
    """Store runs of one measurement; the reported values are medians."""
    med = {}
    for key in ("wall", "cpu_ctl", "cpu_host", "cpu_db", "cpu_total", "peak_rss",
                "ctl_maxrss", "load"):
        vals = [r[key] for r in runs if r.get(key) is not None]
        med[key] = statistics.median(vals) if vals else None
    entry = {"runs": [{k: v for k, v in r.items() if not k.startswith("_")} for r in runs],
             "n": len(runs), **med, **extra}
    RESULTS["measurements"][name] = entry
    save()
    return entry


def save() -> None:
    (WORK / "results.json").write_text(json.dumps(RESULTS, indent=2, default=str))


def interleaved(arms: dict, rounds: int | None = None) -> dict:
    """Run arms {name: callable -> result} in rotating order; repeat short ones.

    One round always runs.  When every arm took less than SHORT seconds, REPEAT rounds
    run in total (or ``rounds`` when given)."""
    results = {name: [] for name in arms}
    names = list(arms)
    first = True
    i = 0
    while True:
        order = names[i % len(names):] + names[:i % len(names)]
        for name in order:
            results[name].append(arms[name]())
        i += 1
        if first:
            first = False
            want = rounds or (REPEAT if all(r[0]["wall"] < SHORT
                                            for r in results.values()) else 1)
        if i >= want:
            return results


# ------------------------------------------------------------------------ setup


def write_inventory(directory: Path, aliases: list[str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    lines = ["all:", "  children:", "    bm_app:", "      hosts:"]
    for alias in aliases:
        lines += [f"        {alias}:",
                  "          ansible_connection: community.docker.docker",
                  f"          ansible_host: {HOST}",
                  "          ansible_python_interpreter: /usr/bin/python3",
                  "          app_stack_db_settings:",
                  "            shared_preload_libraries: pg_stat_statements",
                  f"            wal_level: {WAL_LEVEL}",
                  f"            max_wal_senders: {0 if WAL_LEVEL == 'minimal' else 10}"]
    (directory / "hosts.yml").write_text("\n".join(lines) + "\n")
    link = directory / "group_vars"
    if not link.is_symlink():
        link.symlink_to(ROOT / "inventory" / "demo" / "group_vars")
    return directory


def machine_info() -> dict:
    mem = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())[1]) * 1024
    model = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
    others = run(["docker", "ps", "--format", "{{.Names}}"]).stdout.split()
    return {"nproc": os.cpu_count(), "mem_bytes": mem,
            "cpu_model": model[1].strip() if model else platform.processor(),
            "kernel": platform.release(),
            "load_start": Path("/proc/loadavg").read_text().split()[:3],
            "other_containers": [n for n in others if n != HOST]}


def converge(inv: Path) -> None:
    log(f"host {HOST}: {hosts.up(HOST)}")
    for pb in ("playbooks/site.yml",):
        log(f"converge {pb}")
        t0 = time.monotonic()
        proc = run(playbook_argv(pb, inv), check=False, env=ansible_env())
        (WORK / "logs").mkdir(parents=True, exist_ok=True)
        (WORK / "logs" / f"converge-{Path(pb).stem}.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            raise RuntimeError(f"{pb} did not converge (rc {proc.returncode}):\n"
                               + proc.stdout[-4000:])
        RESULTS.setdefault("converge", {})[pb] = {"wall": time.monotonic() - t0,
                                                   **recap(proc.stdout)}
    # Shims for postgresql_db (see bench/pg_shim.sh) and the dump directory.
    shim = (ROOT / "bench" / "pg_shim.sh").read_text()
    run(["docker", "exec", "-i", HOST, "bash", "-c",
         "set -e; cat > /usr/local/lib/bmops-pg-shim; chmod 755 /usr/local/lib/bmops-pg-shim;"
         " ln -sf /usr/local/lib/bmops-pg-shim /usr/local/bin/pg_dump;"
         " ln -sf /usr/local/lib/bmops-pg-shim /usr/local/bin/psql;"
         f" mkdir -p {FILES}; chmod 700 {FILES}"], input=shim)


def load_data() -> None:
    """pgbench -i -s SCALE plus DOCS rows of text/jsonb; skipped when already there."""
    have = psql("SELECT coalesce((SELECT count(*) FROM pg_class WHERE relname = "
                "'pgbench_branches'), 0), coalesce((SELECT reltuples::bigint FROM pg_class "
                "WHERE relname = 'bench_docs'), -1)")
    branches, docs = (int(x) for x in have.split("|"))
    if branches and docs >= DOCS * 0.99 and psql("SELECT count(*) FROM pgbench_branches") \
            == str(SCALE):
        log("test data already loaded")
    else:
        log(f"loading data: pgbench -i -s {SCALE} and {DOCS} text/jsonb rows")
        t0 = time.monotonic()
        on_host(f"{COMPOSE} exec -T db pgbench -i -q -s {SCALE} -U postgres {DB}")
        psql(f"""
DROP TABLE IF EXISTS bench_docs;
CREATE TABLE bench_docs (id bigint PRIMARY KEY, created_at timestamptz NOT NULL,
  title text NOT NULL, body text NOT NULL, doc jsonb NOT NULL);
INSERT INTO bench_docs
SELECT i, now() - make_interval(secs => i * 7),
       'document ' || i || ' of backup target ' || (i % 997),
       'job ' || md5(i::text) || ' copied ' || (i * 37 % 100000) || ' files from /srv/data/'
         || (i % 4096) || ' to vault ' || md5((i % 5003)::text) || ' checksum '
         || md5((i * 31)::text) || ' status '
         || (ARRAY['ok','ok','ok','retry','failed'])[1 + i % 5],
       jsonb_build_object('id', i, 'owner', 'user' || (i % 1000),
         'tags', jsonb_build_array('t' || (i % 17), 't' || (i % 31)),
         'bytes', (i::bigint * 7919) % 1000000007, 'host', 'srv' || (i % 250),
         'sha', md5((i * 13)::text), 'ok', i % 5 <> 4)
  FROM generate_series(1, {DOCS}) AS i;
CREATE INDEX bench_docs_created ON bench_docs (created_at);
""")
        psql("VACUUM ANALYZE")
        RESULTS["data_load_seconds"] = time.monotonic() - t0
    size = int(psql("SELECT pg_database_size(current_database())"))
    counts = psql("SELECT (SELECT count(*) FROM pgbench_accounts) || ' ' || "
                  "(SELECT count(*) FROM bench_docs)").split()
    RESULTS["database"] = {"size_bytes": size, "pgbench_accounts": int(counts[0]),
                           "bench_docs": int(counts[1]), "scale": SCALE,
                           "tables": psql("SELECT string_agg(relname || '=' || "
                                          "pg_size_pretty(pg_total_relation_size(oid)), ', ' "
                                          "ORDER BY pg_total_relation_size(oid) DESC) FROM "
                                          "pg_class WHERE relkind = 'r' AND relnamespace = "
                                          "'public'::regnamespace")}
    log(f"database {DB}: {size / 2**30:.2f} GiB")
    save()


# ------------------------------------------------------------------- part 3: site


def bench_site(inv: Path) -> None:
    log("site.yml no-change rerun")
    runs = []

    def one():
        r = measure(playbook_argv("playbooks/site.yml", inv), f"site-rerun-{len(runs) + 1}",
                    env=ansible_env())
        r["recap"] = recap(r["_stdout"])
        r["changed_tasks"] = re.findall(r"^changed: \[[^\]]+\].*$", r["_stdout"], re.M)[:20]
        runs.append(r)
        return r

    res = interleaved({"site": one})["site"]
    keep("site_rerun", res, changed=[r["recap"]["changed"] for r in res],
         ok=[r["recap"]["ok"] for r in res])


# ------------------------------------------------------------- part 2: daily check


def bench_daily(inv: Path) -> None:
    log("daily check: one module call vs plain tasks")
    arms = {
        "module": lambda: measure(playbook_argv("bench/daily_module.yml", inv), "daily-module",
                                  env=ansible_env()),
        "plain": lambda: measure(playbook_argv("bench/daily_plain.yml", inv), "daily-plain",
                                 env=ansible_env()),
    }
    res = interleaved(arms, rounds=max(REPEAT, 5))
    for name, runs in res.items():
        keep(f"daily_{name}", runs, tasks=None)
    for name, runs in res.items():  # task phase: profile_tasks total, no start-up
        phase = [r["tasks_phase"] for r in runs if r.get("tasks_phase") is not None]
        RESULTS["measurements"][f"daily_{name}"]["tasks_phase"] = (
            statistics.median(phase) if phase else None)
    scale = {}
    for n in (1, 10, 50):
        sinv = write_inventory(WORK / f"inventory-{n}", [f"bench-{i:03d}" for i in range(1, n + 1)])
        runs = [measure(playbook_argv("bench/daily_module.yml", sinv), f"daily-module-{n}h",
                        env=ansible_env()) for _ in range(REPEAT)]
        for r in runs:
            r["recap"] = recap(r["_stdout"])
            if r["recap"]["hosts"] != n or r["recap"]["failed"] or r["recap"]["unreachable"]:
                raise RuntimeError(f"daily check at {n} hosts: {r['recap']}")
        scale[n] = keep(f"daily_scale_{n}", runs, hosts=n)
    save()


# ----------------------------------------------------------- part 1: backup/restore


def file_size(path: str) -> int:
    return int(on_host(f"stat -c %s {shlex.quote(path)}").stdout)


def drop_db(name: str) -> None:
    psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", db="postgres")


def accounts_in(db: str) -> int:
    return int(psql("SELECT count(*) FROM pgbench_accounts", db=db))


def bench_backup(inv: Path) -> None:
    log("backup: bmops-backup vs pg_dump | gzip vs postgresql_db state=dump")
    on_host(f"rm -f {FILES}/manual.sql.gz {FILES}/module.sql.gz")
    info: dict = {}

    def bmops():
        r = measure(["docker", "exec", HOST, TOOL, "backup"], "backup-bmops")
        text = r["_stdout"]
        out, _ = json.JSONDecoder().raw_decode(text[text.index("{"):])
        man = json.loads(on_host(f"cat /backup/db/{out['id']}.json").stdout)
        r["bytes"] = out["size_bytes"]
        info["bmops"] = {"id": out["id"], "path": out["path"], "format": out["format"],
                         "codec": out["codec"], "dump_seconds": man["dump_seconds"],
                         "pack_seconds": man.get("pack_seconds", 0.0),
                         "verify_seconds": man["verify_seconds"], "sql_bytes": man["sql_bytes"]}
        return r

    def manual():
        r = measure(host_argv(f"cd {PROJECT_DIR}\ndocker compose exec -T db pg_dump -U "
                              f"postgres {DB} | gzip > {FILES}/manual.sql.gz"), "backup-manual")
        r["bytes"] = file_size(f"{FILES}/manual.sql.gz")
        return r

    def module():
        r = measure(playbook_argv("bench/pg_module.yml", inv, "-e", "bench_action=dump"),
                    "backup-module", env=ansible_env())
        r["bytes"] = file_size(f"{FILES}/module.sql.gz")
        return r

    res = interleaved({"bmops": bmops, "manual": manual, "module": module})
    for name, runs in res.items():
        keep(f"backup_{name}", runs, bytes=statistics.median(r["bytes"] for r in runs),
             **({"detail": info["bmops"]} if name == "bmops" else {}))
    RESULTS["bmops_backup"] = info["bmops"]


def bench_restore(inv: Path) -> None:
    log("data restore: bmops-backup restore (pg_restore -j) vs gunzip | psql vs postgresql_db")
    bid = RESULTS["bmops_backup"]["id"]
    scratch = "bmops_scratch_bench"
    checks: dict = {}

    def bmops():
        drop_db(scratch)
        r = measure(["docker", "exec", HOST, TOOL, "restore", bid, "--into-scratch", scratch],
                    "restore-bmops")
        checks.setdefault("bmops", []).append(accounts_in(scratch))
        drop_db(scratch)
        return r

    def manual():
        drop_db("bench_manual")
        r = measure(host_argv(
            f"cd {PROJECT_DIR}\n"
            "docker compose exec -T db createdb -U postgres bench_manual\n"
            f"gunzip -c {FILES}/manual.sql.gz | docker compose exec -T db psql -U postgres "
            "bench_manual > /dev/null"), "restore-manual")
        checks.setdefault("manual", []).append(accounts_in("bench_manual"))
        drop_db("bench_manual")
        return r

    def module():
        drop_db("bench_module")
        r = measure(playbook_argv("bench/pg_module.yml", inv, "-e", "bench_action=restore"),
                    "restore-module", env=ansible_env())
        checks.setdefault("module", []).append(accounts_in("bench_module"))
        drop_db("bench_module")
        return r

    res = interleaved({"bmops": bmops, "manual": manual, "module": module})
    expected = RESULTS["database"]["pgbench_accounts"]
    for name, runs in res.items():
        keep(f"restore_{name}", runs, rows_ok=all(c == expected for c in checks[name]))


def bench_restore_playbook(inv: Path) -> None:
    log("restore_db.yml vs the manual's four steps")

    def wait_ready() -> str:
        # A person types `curl -f .../health/ready` until it answers; so does this.
        return ("for i in $(seq 1 300); do\n"
                "  if python3 -c 'import urllib.request,sys; urllib.request.urlopen("
                "\"http://127.0.0.1:8000/health/ready\", timeout=5)' 2>/dev/null; "
                "then exit 0; fi\n  sleep 1\ndone\nexit 1\n")

    def playbook():
        r = measure(playbook_argv("playbooks/restore_db.yml", inv, "-e", "restore_confirm=true"),
                    "restore-playbook", env=ansible_env())
        r["recap"] = recap(r["_stdout"])
        # Untimed cleanup: the pre-restore database is kept renamed; drop it (space).
        on_host(f"{TOOL} drop-old --keep 0 >/dev/null")
        return r

    def manual():
        curl = on_host("command -v curl || true").stdout.strip()
        ready = ("until curl -fsS http://127.0.0.1:8000/health/ready >/dev/null; do sleep 1; done"
                 if curl else wait_ready())
        r = measure(host_argv(
            f"cd {PROJECT_DIR}\n"
            "# 1. stop the services\n"
            "docker compose stop backend celery celery-beat\n"
            "# 2. restore (into a recreated database: the manual's psql into the live one\n"
            "#    would fail on every existing table and restore nothing)\n"
            f"docker compose exec -T db psql -U postgres -d postgres -q "
            f"-c 'DROP DATABASE {DB} WITH (FORCE)' -c 'CREATE DATABASE {DB}'\n"
            f"gunzip -c {FILES}/manual.sql.gz | docker compose exec -T db psql -U postgres {DB}"
            " > /dev/null\n"
            "# 3. start them again\n"
            "docker compose start backend celery celery-beat\n"
            "# 4. check /health/ready (retried until it answers, as a person would)\n"
            + ready), "restore-manual-4steps")
        return r

    res = interleaved({"playbook": playbook, "manual": manual})
    keep("restore_playbook", res["playbook"])
    keep("restore_manual_4steps", res["manual"])
    RESULTS["after_restore_accounts"] = accounts_in(DB)


# ------------------------------------------------------------------------ report


def fmt_s(v) -> str:
    return "n/a" if v is None else f"{v:.1f}"


def fmt_mib(v) -> str:
    return "n/a" if v is None else f"{v / 2**20:.0f}"


def ratio(a: str, b: str, key: str = "wall") -> float:
    m = RESULTS["measurements"]
    return m[a][key] / m[b][key]


def row(name: str, label: str, with_bytes: bool = False) -> str:
    m = RESULTS["measurements"][name]
    cells = [label, str(m["n"]), fmt_s(m["wall"]), fmt_s(m["cpu_total"]), fmt_s(m["cpu_ctl"]),
             fmt_s(m["cpu_host"]), fmt_s(m["cpu_db"]), fmt_mib(m["peak_rss"]),
             fmt_mib(m["ctl_maxrss"]), f"{m['load']:.1f}"]
    if with_bytes:
        cells.append(f"{m['bytes'] / 2**20:.1f} MiB ({m['bytes']:,})" if m.get("bytes") else "")
    return "| " + " | ".join(cells) + " |"


HEAD = ("| arm | n | wall s | CPU s total | CPU ctl | CPU host | CPU db | peak RSS MiB "
        "(managed) | max RSS MiB (ctl) | load |")
SEP = "|---|---|---|---|---|---|---|---|---|---|"


def goal(value: float, limit: float) -> str:
    return "met" if value <= limit else "**missed**"


def render(elapsed: float) -> str:
    m = RESULTS["measurements"]
    mach = RESULTS["machine"]
    db = RESULTS["database"]
    bt = ratio("backup_bmops", "backup_manual")
    bs = m["backup_bmops"]["bytes"] / m["backup_manual"]["bytes"]
    rt = ratio("restore_bmops", "restore_manual")
    rp = ratio("restore_playbook", "restore_manual_4steps")
    dr = ratio("daily_module", "daily_plain")
    det = RESULTS["bmops_backup"]
    site = m["site_rerun"]
    load_end = RESULTS["machine"].get("load_end", ["?"])
    L = []
    L += ["# bmops benchmarks", "",
          f"Written by `bash bench/run.sh` (`make bench`) on {RESULTS['date']}; the whole run "
          f"took {elapsed / 60:.0f} min. Numbers are from ONE run, every arm "
          "measured side by side on the same host in the same run; compare ratios, not "
          "absolute times.", "",
          "## Machine", "",
          f"- nproc {mach['nproc']} ({mach['cpu_model']}), memory "
          f"{mach['mem_bytes'] / 2**30:.1f} GiB, kernel {mach['kernel']}",
          f"- load average at start {' '.join(mach['load_start'])}, at end {' '.join(load_end)}"
          f"; {len(mach['other_containers'])} other containers were running. The `load` column "
          "is the mean 1-min load average during each measurement: absolute times are "
          "inflated by that contention, ratios much less so (arms were interleaved).",
          f"- managed host: container `{HOST}` (Debian 13, systemd, inner Docker), converged "
          "with `playbooks/site.yml` (role defaults, except PostgreSQL 15 at "
          f"wal_level={RESULTS.get('wal_level', 'minimal')}, the level a site with "
          "point-in-time recovery runs; backup format `directory`); controller: "
          "ansible-playbook from `.venv` with `ansible.cfg` (forks 20, pipelining, "
          "community.docker.docker connection).", "",
          "## Results", "",
          f"backup_time_ratio: {bt:.2f}",
          f"backup_size_ratio: {bs:.2f}",
          f"restore_time_ratio: {rt:.2f}",
          f"restore_playbook_ratio: {rp:.2f}",
          f"daily_check_ratio: {dr:.2f}",
          f"site_rerun_changed: {max(site['changed'])}", "",
          "The same comparisons in CPU seconds (controller + host + db container), which "
          "the machine's changing load disturbs much less than wall time: "
          f"backup {ratio('backup_bmops', 'backup_manual', 'cpu_total'):.2f}, "
          f"data restore {ratio('restore_bmops', 'restore_manual', 'cpu_total'):.2f}, "
          f"restore playbook "
          f"{ratio('restore_playbook', 'restore_manual_4steps', 'cpu_total'):.2f}, "
          f"daily check {ratio('daily_module', 'daily_plain', 'cpu_total'):.2f}. "
          "Arms that take longer than 30 s ran once each; compare the `load` column of "
          "their rows before trusting a wall-time ratio.", "",
          "| goal (issue) | measured (3 decimals: the verdict uses the unrounded ratio) | |",
          "|---|---|---|",
          f"| backup time ≤ 0.40 x manual | {bt:.3f} | {goal(bt, 0.40)} |",
          f"| backup size ≤ 0.85 x manual | {bs:.3f} | {goal(bs, 0.85)} |",
          f"| data restore ≤ 0.80 x manual | {rt:.3f} | {goal(rt, 0.80)} |",
          f"| restore_db.yml ≤ 1.6 x manual four steps | {rp:.3f} | {goal(rp, 1.6)} |",
          f"| daily check (module) ≤ 0.25 x plain tasks | {dr:.3f} | {goal(dr, 0.25)} |",
          f"| site.yml rerun changed = 0 | {max(site['changed'])} | "
          f"{'met' if max(site['changed']) == 0 else '**missed**'} |", "",
          f"### 1. Backup and restore of a {db['size_bytes'] / 2**30:.2f} GiB database", "",
          f"`pg_database_size('{DB}')` = {db['size_bytes']:,} bytes "
          f"({db['size_bytes'] / 2**30:.2f} GiB): `pgbench -i -s {db['scale']}` "
          f"({db['pgbench_accounts']:,} pgbench_accounts rows) + {db['bench_docs']:,} rows of "
          f"text/jsonb in `bench_docs`, plus the reference app's tables. Sizes: {db['tables']}.",
          "", HEAD[:-1] + "| output |", SEP + "---|",
          row("backup_bmops", f"(a) bmops-backup backup ({det['format']}, {det['codec']})", True),
          row("backup_manual", "(b) manual: pg_dump \\| gzip", True),
          row("backup_module", "(c) postgresql_db state=dump (.sql.gz)", True),
          "", f"bmops-backup phases (from its manifest): dump {det['dump_seconds']:.1f} s "
          f"(`pg_dump -Fd -Z0 -j 2` in the container), pack {det.get('pack_seconds', 0):.1f} s "
          "(zstd of each table file read through /proc/<pid>/root, rows counted with "
          f"`wc -l`), verify {det['verify_seconds']:.1f} s (every member decompresses with "
          "its checksum, TOC parsed, sha256 of the file); COPY text in the archive "
          f"{det['sql_bytes'] / 2**20:.0f} MiB.", "",
          HEAD, SEP,
          row("restore_bmops", "(a) bmops-backup restore --into-scratch (pg_restore -j 2 "
              "from FIFOs)"),
          row("restore_manual", "(b) manual: createdb + gunzip -c \\| psql"),
          row("restore_module", "(c) postgresql_db present + state=restore"),
          "", "Every restored database was checked (untimed) for the full "
          f"{db['pgbench_accounts']:,} pgbench_accounts rows: "
          + ", ".join(f"{k} {'ok' if m[f'restore_{k}']['rows_ok'] else 'WRONG'}"
                      for k in ("bmops", "manual", "module")) + ".", "",
          HEAD, SEP,
          row("restore_playbook", "restore_db.yml -e restore_confirm=true"),
          row("restore_manual_4steps", "manual four steps as a script"),
          "",
          "### 2. Daily check", "",
          HEAD, SEP,
          row("daily_module", "one bm_health_info call (bench/daily_module.yml)"),
          row("daily_plain", "8 plain tasks + 1 set_fact (bench/daily_plain.yml)"),
          "",
          "Task phase only (profile_tasks total, without ansible-playbook start-up): module "
          f"{fmt_s(m['daily_module'].get('tasks_phase'))} s, plain "
          f"{fmt_s(m['daily_plain'].get('tasks_phase'))} s"
          + (f" (ratio {m['daily_module']['tasks_phase'] / m['daily_plain']['tasks_phase']:.2f})."
             if m['daily_module'].get('tasks_phase') and m['daily_plain'].get('tasks_phase')
             else "."), "",
          "Cost at 1, 10 and 50 inventory hosts (aliases of the one host container, so all "
          "hosts share one machine, one inner Docker and one database; forks 20 from "
          "ansible.cfg):", "",
          HEAD, SEP]
    for n in (1, 10, 50):
        L.append(row(f"daily_scale_{n}", f"{n} host{'s' if n > 1 else ''}"))
    per = [m[f"daily_scale_{n}"]["wall"] / n for n in (1, 10, 50)]
    L += ["", "Wall per host: "
          + ", ".join(f"{n}: {p:.2f} s" for n, p in zip((1, 10, 50), per, strict=True))
          + ".", "",
          "### 3. No-change rerun of site.yml", "",
          HEAD, SEP, row("site_rerun", "playbooks/site.yml (second and later runs)"), "",
          f"changed per run: {site['changed']} (ok: {site['ok']}).", ""]
    dump_ratio = det["dump_seconds"] / m["backup_manual"]["wall"]
    bm, mb = m["backup_bmops"], m["backup_manual"]
    L += ["### Where the time goes", "",
          f"- CPU of the manual backup: {fmt_s(mb['cpu_host'])} s on the host side (gzip -6, "
          f"and the docker exec stream: containerd-shim / dockerd / compose CLI copying "
          f"every byte) against {fmt_s(mb['cpu_db'])} s in the db container (pg_dump and "
          f"its server backend). bmops: {fmt_s(bm['cpu_host'])} s host, "
          f"{fmt_s(bm['cpu_db'])} s db: its data never crosses docker exec's stdio, and "
          "zstd -1 -T0 costs about a tenth of gzip -6 on the same text.",
          f"- bmops backup = dump {det['dump_seconds']:.1f} s + pack "
          f"{det.get('pack_seconds', 0):.1f} s + verify {det['verify_seconds']:.1f} s. The "
          f"dump phase alone is {dump_ratio:.2f} x the manual's wall time; it is bounded by "
          "the biggest table (pgbench_accounts, about 80 % of the data), which one pg_dump "
          "job copies on its own.",
          "- bmops restore includes sha256 of the file, feeding every table file to "
          "`pg_restore -j 2` through a FIFO (no unpacking to disk), and an exact row count "
          "of every table compared with the manifest; the manual's psql does none of these "
          "checks. At wal_level=minimal pg_restore can skip WAL for the tables it creates "
          "(it truncates them in the same transaction) and psql replaying a plain dump "
          f"cannot; this run is at wal_level={RESULTS.get('wal_level', 'minimal')}.",
          "- restore_db.yml includes a full safety backup of the current database (run side "
          "by side with the scratch restore) and the data restore, then stop, swap, start "
          "and /health/ready polled every second, as in the manual's fourth step.", ""]
    L += ["## Method", "",
          "- Wall: monotonic clock around the command started on the controller (the shell "
          "arms via `docker exec HOST bash -c` with `set -o pipefail`; the Ansible arms "
          "as `ansible-playbook`, start-up included).",
          "- CPU: `CPU ctl` = user+sys of the controller process tree (wait4 rusage: "
          "ansible-playbook and its workers, or the `docker exec` client); `CPU host` = "
          "cgroup v1 cpuacct of the host container (host-side tools: gzip/zstd, the "
          "bmops-backup Python process, docker CLI, inner dockerd/containerd stream copying, "
          "Ansible modules; plus the idle background of systemd/cron); `CPU db` = cpuacct of "
          "the db container (pg_dump, psql, pg_restore, the server backends). "
          "`CPU s total` is their sum.",
          "- Memory: `peak RSS (managed)` = peak of the sum of `total_rss` (anonymous "
          "memory; page cache excluded) of the host and db container cgroups above the "
          "value at start, sampled every 0.2 s; `max RSS (ctl)` = largest single process of "
          "the controller tree.",
          f"- Repetitions: measurements under {SHORT:.0f} s run {REPEAT}x (daily check 5x), "
          "interleaved in rotating order, and the table shows medians; longer ones run "
          "once per arm, interleaved. Page cache is warm for every arm (the 1 GB database "
          "and the dump files fit in RAM).",
          "- (a) bmops: `/usr/local/sbin/bmops-backup backup` with the role's defaults "
          "(directory format: `pg_dump -Fd -Z0 -j 2 --no-sync` into a work directory in the "
          "db container, each table file compressed with zstd -1 -T0 on the host into one "
          "`.dir.tar`, rows counted per file, then verification and manifest); restore: "
          "`bmops-backup restore ID --into-scratch bmops_scratch_bench` (sha256, toc.dat + "
          "one FIFO per table file in the container, `pg_restore -j 2` reading them while "
          "the host decompresses into them, row counts compared with the manifest).",
          f"- (b) manual §4.1/§4.2: `docker compose exec -T db pg_dump -U postgres {DB} | gzip > "
          "file.sql.gz`; restore `createdb` + `gunzip -c file | docker compose exec -T db psql "
          "-U postgres NEWDB` into a fresh database.",
          "- (c) `community.postgresql.postgresql_db` 4.2 `state=dump target=….sql.gz` and "
          "`state=present` + `state=restore` (bench/pg_module.yml). The module runs pg_dump / "
          "psql on the managed host; Debian 13 packages the PostgreSQL 17 client "
          "(`postgresql-client` 17+278), whose plain dumps start with `SET transaction_timeout` "
          "that a 15 server rejects, and which would not be the binary (a) and (b) use. So "
          "`bench/pg_shim.sh` "
          "makes `pg_dump` / `psql` on the host run the db container's own PostgreSQL 15 "
          "client through `docker compose exec -T` — the same binaries, the same path "
          "for the data as (a) and (b). The module pipes through gzip itself (`gzip` "
          "default level; pigz is not installed).",
          "- restore_db.yml: the whole playbook (`-e restore_confirm=true`, newest verified "
          "backup): checksum, host lock, safety backup of the current database, restore into "
          "a scratch database, stop 3 services, swap, start, wait for /health/ready, drop "
          "pre-restore databases beyond one. The kept pre-restore database is dropped "
          "untimed afterwards. Manual four steps: `docker compose stop backend celery "
          "celery-beat`; drop + create the database (needed: as written, psql into the live "
          "database fails on every existing table and restores nothing); `gunzip -c | "
          "docker compose exec -T db psql`; `docker compose start …`; `/health/ready` "
          "polled once a second until 200.",
          "- Daily check: `bench/daily_module.yml` is the gathering task of "
          "`roles/health_check/tasks/gather_daily.yml` (one `bm_health_info` call, same "
          "arguments) without "
          "the report phase; `bench/daily_plain.yml` does the same checks as plain tasks: "
          "uri x2, `docker exec psql` x2 (jobs, storage), `docker logs` x2, `docker exec -e "
          "REDISCLI_AUTH redis redis-cli ping`, `docker inspect`, and one set_fact counting "
          "ERROR lines. Scaling inventories: aliases `bench-NNN` with `ansible_host: "
          f"{HOST}` and `ansible_connection: community.docker.docker`.",
          "- site.yml rerun: `ansible-playbook playbooks/site.yml` on the converged host; "
          "`changed` from the PLAY RECAP.",
          f"- Raw data: {WORK}/results.json and logs in {WORK}/logs (not kept in git).", ""]
    return "\n".join(L) + "\n"


# -------------------------------------------------------------------------- main


def main() -> int:
    started = time.time()
    WORK.mkdir(parents=True, exist_ok=True)
    RESULTS["date"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    RESULTS["machine"] = machine_info()
    RESULTS["wal_level"] = WAL_LEVEL
    inv = write_inventory(WORK / "inventory", [HOST])
    rc = 0
    try:
        converge(inv)
        refresh_cgroups()
        if psql("SHOW wal_level") != WAL_LEVEL:
            raise RuntimeError(f"the stack runs wal_level {psql('SHOW wal_level')}, "
                               f"not {WAL_LEVEL}")
        load_data()
        parts = os.environ.get("BMOPS_BENCH_PARTS", "site,daily,backup,restore,playbook")
        steps = {"site": bench_site, "daily": bench_daily, "backup": bench_backup,
                 "restore": bench_restore, "playbook": bench_restore_playbook}
        for part in parts.split(","):
            steps[part](inv)
        RESULTS["machine"]["load_end"] = Path("/proc/loadavg").read_text().split()[:3]
        RESULTS["total_seconds"] = time.time() - started
        save()
        OUT.write_text(render(RESULTS["total_seconds"]))
        log(f"wrote {OUT} in {(time.time() - started) / 60:.1f} min")
    except Exception as exc:  # report, then clean up
        log(f"FAILED: {exc}")
        save()
        rc = 1
    finally:
        if not KEEP:
            log(f"removing host {HOST} (BMOPS_KEEP=1 keeps it)")
            hosts.down(HOST)
    return rc


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "render":  # re-render from results.json
        RESULTS.update(json.loads((WORK / "results.json").read_text()))
        OUT.write_text(render(RESULTS.get("total_seconds", 0)))
        sys.exit(0)
    sys.exit(main())
