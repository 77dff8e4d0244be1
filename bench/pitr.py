# SPDX-License-Identifier: Apache-2.0
"""Point-in-time recovery benchmarks (issue 16), measured live on bench/offsite.py's hosts.

bench/offsite.py calls ``measure`` after its standby phase. Its app host streams its WAL
to Barman on the repository host (bm_pitr_enabled, wal_level replica) and holds the
1.26 GiB benchmark database; the standby is converged.

1. A new base backup (``barman backup --wait``), so that the restore replays the WAL
   written after it (the minute below and the probe rows), not the data load.
2. WAL shipping's cost on a write-heavy minute: ``pgbench -c 2 -j 2 -T 60`` (TPC-B-like).
   CPU of the walsender that streams to Barman against the rest of the db container's
   CPU over the same minute (``wal_shipping_cpu_percent``); pg_receivewal's CPU on the
   repository host and the WAL bytes written are given beside it.
3. A point-in-time restore: a row a second carrying its commit time, a time T between two
   rows; then, interleaved, the manual's ``createdb`` + ``gunzip -c | psql`` of a dump of
   the same database into a new database, and ``restore_db.yml -e
   restore_target_time=T``; exactly the rows up to T must be live afterwards.
   ``pitr_restore_ratio`` = the playbook's wall time / the manual's. The playbook's task
   times split it into the physical part (barman restore of the base backup and the WAL,
   the copy to the app host, the replay to T) and the logical part (the dump of the
   recovered cluster, then the ordinary restore's safety backup, restore and swap).
4. RPO with the primary killed: ten rows a second, the app host removed with every volume
   (``docker rm -f -v``), ``dr_drill.yml --limit <standby>`` from the WAL;
   ``rpo_seconds`` = the removal's time - the commit time of the newest row the standby
   has.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import conftest as it
import test_offsite_stack as to

import bench

MANUAL_DUMP = "/var/tmp/bmops-bench-pitr.sql.gz"
# The recovery's physical part: role wal_archive's tasks (tasks/recover.yml).
PHYSICAL = {
    "barman restore (base backup + WAL)": "Restore the newest base backup before the target",
    "copy to the app host (SFTP)": "Fetch the recovered directory over SFTP",
    "replay to T in a scratch cluster": "Wait until the scratch cluster has reached the target",
}
DUMP_TASK = "Dump the recovered database into a verified backup"


def log(msg: str) -> None:
    print(f"[pitr {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def psql_on(host: str, sql: str) -> str:
    """psql on a host other than bench.HOST (the standby)."""
    return it.docker("exec", host, "sh", "-c",
                     f"cd {bench.PROJECT_DIR} && docker compose exec -T db psql -XtA -U postgres "
                     f"-d {bench.DB} -c \"{sql}\"").stdout.strip()


def proc_cpu(host: str, script: str) -> float:
    """utime + stime (seconds) of the process whose /proc/PID/stat SCRIPT prints on HOST."""
    stat = it.docker("exec", host, "sh", "-c", script).stdout
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # USER_HZ 100


def task_seconds(run: it.RunResult) -> dict[str, float]:
    """Seconds per task name, from the runner's events (a task's duration, loops whole)."""
    out: dict[str, float] = {}
    for ev in run.events:
        data = ev.get("event_data", {})
        if ev.get("event") in ("runner_on_ok", "runner_on_failed") and "duration" in data:
            out[data.get("task", "")] = out.get(data.get("task", ""), 0) + float(data["duration"])
    return out


def base_backup() -> float:
    t0 = time.monotonic()
    # --immediate-checkpoint: the cron's weekly backup waits for a spread checkpoint
    # (4.5 min here), which only makes this run longer
    to.repo_sh("runuser -u barman -- barman -q backup --wait --immediate-checkpoint "
               f"{bench.HOST}")
    return time.monotonic() - t0


def shipping_cost(app: str) -> dict:
    """pgbench for a minute; the walsender's share of the db container's CPU."""
    bench.refresh_cgroups()
    db = bench.CG["db"]
    sender = bench.psql("SELECT pid FROM pg_stat_replication "
                        "WHERE application_name = 'barman_receive_wal'")
    if not sender:
        raise RuntimeError("no walsender streams to Barman")
    sender = (f"cd {bench.PROJECT_DIR} && docker compose exec -T db cat /proc/{sender}/stat")
    receiver = "cat /proc/$(pgrep -o -x pg_receivewal)/stat"
    lsn0 = bench.psql("SELECT pg_current_wal_lsn()")
    cpu0, ws0, rcv0 = db.cpu_seconds(), proc_cpu(app, sender), proc_cpu(to.REPO, receiver)
    t0 = time.monotonic()
    bench.on_host(f"{bench.COMPOSE} exec -T db pgbench -n -c 2 -j 2 -T 60 -U postgres {bench.DB}")
    wall = time.monotonic() - t0
    cpu1, ws1, rcv1 = db.cpu_seconds(), proc_cpu(app, sender), proc_cpu(to.REPO, receiver)
    wal = int(bench.psql(f"SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{lsn0}')"))
    walsender = ws1 - ws0
    rest = (cpu1 - cpu0) - walsender
    return {"seconds": wall, "db_cpu": cpu1 - cpu0, "walsender_cpu": walsender,
            "receiver_cpu": rcv1 - rcv0, "wal_bytes": wal,
            "percent": round(100 * walsender / rest, 1)}


def probe_rows() -> str:
    """20 rows, one a second, each with its commit time; T between rows 10 and 11 (UTC)."""
    bench.psql("DROP TABLE IF EXISTS pitr_probe; "
               "CREATE TABLE pitr_probe (seq int PRIMARY KEY, at timestamptz NOT NULL)")
    bench.on_host(f"cd {bench.PROJECT_DIR}\nfor i in $(seq 1 20); do echo \"INSERT INTO "
                  "pitr_probe VALUES ($i, clock_timestamp());\"; sleep 1; done | docker compose "
                  f"exec -T db psql -q -U postgres -d {bench.DB}")
    return bench.psql("SELECT to_char((a.at + (b.at - a.at) / 2) AT TIME ZONE 'UTC', "
                      "'YYYY-MM-DD HH24:MI:SS.US') || '+00:00' FROM pitr_probe a JOIN "
                      "pitr_probe b ON b.seq = a.seq + 1 WHERE a.seq = 10")


def manual_restore() -> float:
    bench.drop_db("bench_manual_pitr")
    t0 = time.monotonic()
    bench.on_host(f"cd {bench.PROJECT_DIR}\n"
                  "docker compose exec -T db createdb -U postgres bench_manual_pitr\n"
                  f"gunzip -c {MANUAL_DUMP} | docker compose exec -T db psql -q -U postgres "
                  "-d bench_manual_pitr >/dev/null")
    wall = time.monotonic() - t0
    if bench.accounts_in("bench_manual_pitr") != bench.SCALE * 100000:
        raise RuntimeError("the manual restore is incomplete")
    bench.drop_db("bench_manual_pitr")
    return wall


def pitr_restore(inv: Path, work: Path, target: str) -> tuple[float, it.RunResult]:
    t0 = time.monotonic()
    run = it.run_playbook("restore_db", inv, work / f"restore_db-{int(time.time())}",
                          extravars={"restore_target_time": target, "restore_confirm": True},
                          cmdline=f"--limit {bench.HOST}")
    wall = time.monotonic() - t0
    if run.rc != 0:
        raise RuntimeError(f"restore_db.yml to {target} failed:\n{run.stdout[-4000:]}")
    rows = bench.psql("SELECT count(*), max(seq) FROM pitr_probe")
    if rows != "10|10":
        raise RuntimeError(f"restored to {target}: rows {rows}, not 10|10")
    old = run.artifact_data["db_restore"]["swap"]["old_database"]
    bench.drop_db(old)  # untimed: the kept database would fill the disk by the next arm
    return wall, run


def rpo(inv: Path, work: Path, app: str) -> dict:
    """Ten rows a second, the app host removed; the standby from the WAL."""
    bench.psql(to.DR_PROBE_TABLE)
    it.docker("exec", app, "sh", "-c", to.DR_PROBE_WRITER)
    time.sleep(20)
    if int(bench.psql("SELECT count(*) FROM dr_probe")) < 50:
        raise RuntimeError("the writer does not write")
    killed_at = time.time()
    it.hosts.down(app)
    t0 = time.monotonic()
    run = it.run_playbook("dr_drill", inv, work / f"dr_drill-wal-{int(time.time())}",
                          cmdline=f"--limit {to.STANDBY}")
    wall = time.monotonic() - t0
    if run.rc != 0:
        raise RuntimeError(f"dr_drill.yml from the WAL failed:\n{run.stdout[-4000:]}")
    result = run.artifact_data["bmops_dr_standby"]
    newest = float(psql_on(to.STANDBY, "SELECT extract(epoch FROM max(at)) FROM dr_probe"))
    # Rows go on being committed while docker removes the host: a newest row after the
    # removal began is a loss of nothing (rpo_seconds 0; the detail gives the raw figure).
    return {"rpo": round(killed_at - newest, 1), "wall": wall, "result": result,
            "rows": int(psql_on(to.STANDBY, "SELECT count(*) FROM dr_probe"))}


def measure(inv: Path, work: Path, app: str) -> tuple[dict, list[str]]:
    log("a new base backup")
    bb = base_backup()
    log(f"base backup {bb:.0f} s; a write-heavy minute")
    cost = shipping_cost(app)
    log(f"shipping cost {cost}")
    target = probe_rows()
    bench.on_host(f"{bench.COMPOSE} exec -T db pg_dump -U postgres {bench.DB} "
                  f"| gzip > {MANUAL_DUMP}")
    log(f"target {target}; arms interleaved: manual, restore_db.yml, manual")
    manual = [manual_restore()]
    wall, run = pitr_restore(inv, work, target)
    manual.append(manual_restore())
    bench.on_host(f"rm -f {MANUAL_DUMP}")
    tasks = task_seconds(run)
    phys = {k: next((v for t, v in tasks.items() if t.startswith(name)), 0.0)
            for k, name in PHYSICAL.items()}
    dump = next((v for t, v in tasks.items() if t.startswith(DUMP_TASK)), 0.0)
    man = statistics.mean(manual)
    log(f"restore_db.yml {wall:.0f} s, manual {manual}; the primary is removed now")
    lost = rpo(inv, work, app)
    log(f"rpo {lost['rpo']} s, standby from the WAL {lost['wall']:.0f} s")
    results = {"rpo_seconds": max(0.0, lost["rpo"]), "pitr_restore_ratio": round(wall / man, 2),
               "pitr_physical_ratio": round(sum(phys.values()) / man, 2),
               "wal_shipping_cpu_percent": cost["percent"],
               "standby_wal_rto_seconds": round(lost["wall"])}
    mib = 2 ** 20
    detail = [
        "### Point-in-time recovery (bench/pitr.py)", "",
        f"The app host streams its WAL to Barman (wal_level replica); a new base backup "
        f"(`barman backup --immediate-checkpoint`) took {bb:.0f} s before the measurements.",
        "",
        f"- **WAL shipping's cost** on a write-heavy minute (`pgbench -c 2 -j 2 -T 60`, "
        f"{cost['wal_bytes'] / mib:.0f} MiB of WAL): the walsender streaming to Barman used "
        f"{cost['walsender_cpu']:.2f} CPU s against {cost['db_cpu'] - cost['walsender_cpu']:.1f}"
        f" CPU s for everything else in the db container: **{cost['percent']} %** extra. "
        f"pg_receivewal on the repository host: {cost['receiver_cpu']:.2f} CPU s.",
        f"- **Point-in-time restore** to T = {target} (20 rows one a second; T between rows "
        f"10 and 11; afterwards exactly rows 1-10 were live): `restore_db.yml -e "
        f"restore_target_time=T` {wall:.0f} s; the manual's `createdb` + `gunzip -c | psql` "
        f"{' and '.join(f'{m:.0f}' for m in manual)} s (before and after, mean {man:.0f} s): "
        f"ratio **{wall / man:.2f}**.",
        "  The playbook's physical part, which gives a consistent cluster at T beside the "
        "live one: " + ", ".join(f"{k} {v:.0f} s" for k, v in phys.items())
        + f" = {sum(phys.values()):.0f} s ({sum(phys.values()) / man:.2f} x the manual). "
        f"Then the logical part: the recovered cluster dumped into a verified backup "
        f"{dump:.0f} s, and the ordinary restore of that backup with everything else "
        f"(safety backup, scratch database, swap, services, /health/ready, Ansible) "
        f"{wall - sum(phys.values()) - dump:.0f} s.",
        f"- **RPO with the primary killed**: ten rows a second; the app host removed with its "
        f"volumes; `dr_drill.yml --limit {to.STANDBY}` from the WAL took {lost['wall']:.0f} s "
        f"(its own RTO {lost['result']['rto_seconds']} s) and brought back {lost['rows']} rows; "
        f"the newest was committed **{lost['rpo']} s** before the removal began"
        + (" (negative: rows kept coming while docker removed the host; nothing was lost)"
           if lost["rpo"] < 0 else "") + ".",
    ]
    return results, detail


def goals(results: dict) -> list[tuple[str, float, float]]:
    return [("RPO with the primary killed <= 60 s", results["rpo_seconds"], 60),
            ("point-in-time restore <= 0.5 x gunzip \\| psql", results["pitr_restore_ratio"],
             0.5)]

