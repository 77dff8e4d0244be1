# SPDX-License-Identifier: Apache-2.0
"""Encrypted copies off the host with restic (``offsite init|send|check|status``).

restic does the cryptography, the transfer (SFTP through ssh) and the retention;
this module only decides what to send, runs restic with the key in a 0600 file
(RESTIC_PASSWORD_FILE, never on a command line), turns its exit codes into
sentences and records every outcome (state file and textfile metrics), so a
failed copy is loud and the next run tries again.

What a ``send`` copies, as two snapshots tagged with the host name:
- ``bmops-backups``: every verified backup (data file and manifest) in the
  backup directory; restic stores only what the repository lacks.
- ``bmops-config``: the paths that make the host work (the Compose project,
  /etc/bmops, nginx, Let's Encrypt, cron, systemd units), without the offsite
  key itself.
Then ``restic forget --keep-within <keep_days>d --keep-last <keep_min> --prune``
on this host's snapshots: never fewer than keep_min copies, whatever their age.
Nothing is forgotten unless both snapshots of this run were stored.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import subprocess
import tempfile
import time

from .catalogue import scan
from .exceptions import EXIT_LOCKED, EXIT_USAGE, ToolError, fail_with
from .fs import write_atomic
from .utils import iso, log

DEFAULT_OFFSITE_CONFIG = "/etc/bmops/offsite.json"

OFFSITE_DEFAULTS = {
    "restic": "restic",
    # e.g. sftp:bmops-offsite:/srv/bmops-repo/app1 (the host alias of ssh_config)
    "repository": None,
    "password_file": "/etc/bmops/offsite/password",
    # ssh_config with the Host alias, key, known_hosts, BatchMode, timeouts
    "ssh_config": "/etc/bmops/offsite/ssh_config",
    "ssh_host": "bmops-offsite",
    "cache_dir": "/var/cache/bmops/restic",
    "config_paths": [],
    "exclude": ["/etc/bmops/offsite"],
    "keep_days": 30,
    "keep_min": 3,
    "check_subset": "5%",
    "lock_file": "/run/bmops/offsite.lock",
    "host": None,  # snapshot host name; None = this host's name
    "timeout": 3600,
}

BACKUPS_TAG = "bmops-backups"
CONFIG_TAG = "bmops-config"

# restic >= 0.17 exit codes
RESTIC_NO_REPO, RESTIC_LOCKED, RESTIC_WRONG_KEY, RESTIC_INCOMPLETE = 10, 11, 12, 3


def load_offsite(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise ToolError(f"{path} does not exist: off-host copies are not configured "
                        "(role offsite_backup: bm_offsite_enabled: true)", EXIT_USAGE) from None
    except (OSError, ValueError) as exc:
        raise ToolError(f"{path} is not readable JSON: {exc}", EXIT_USAGE) from None
    cfg = {**OFFSITE_DEFAULTS, **data}
    if not cfg["repository"]:
        raise ToolError(f"{path}: 'repository' is empty (offsite_backup_repository)", EXIT_USAGE)
    if not os.path.isfile(cfg["password_file"]):
        raise ToolError(f"the repository key file {cfg['password_file']} is missing "
                        "(offsite_backup_password)", EXIT_USAGE)
    cfg["host"] = cfg["host"] or socket.gethostname()
    return cfg


class Restic:
    """restic with this configuration: the key from its file, ssh from ssh_config."""

    def __init__(self, ocfg: dict):
        self.ocfg = ocfg

    def env(self) -> dict:
        """This process's environment without any RESTIC_* of its own (a stray
        RESTIC_PASSWORD would win over the file), plus the configuration's."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("RESTIC_")}
        env.setdefault("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        env.setdefault("HOME", "/root")
        env.update(LC_ALL="C.UTF-8", RESTIC_REPOSITORY=self.ocfg["repository"],
                   RESTIC_PASSWORD_FILE=self.ocfg["password_file"],
                   RESTIC_CACHE_DIR=self.ocfg["cache_dir"])
        return env

    def argv(self, *args: str) -> list[str]:
        argv = [self.ocfg["restic"], "--quiet"]
        if self.ocfg["repository"].startswith("sftp:"):
            argv += ["-o", f"sftp.command=ssh -F {self.ocfg['ssh_config']} "
                           f"{self.ocfg['ssh_host']} -s sftp"]
        return argv + list(args)

    def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(self.argv(*args), env=self.env(), input=stdin,
                                  capture_output=True, text=True,
                                  timeout=self.ocfg["timeout"], check=False)
        except FileNotFoundError:
            raise ToolError(f"{self.ocfg['restic']} is not installed (package restic)") from None
        except subprocess.TimeoutExpired:
            raise ToolError(f"restic {args[0]} took longer than {self.ocfg['timeout']} s") from None

    def explain(self, what: str, proc: subprocess.CompletedProcess) -> str:
        """One sentence for a failed restic call, naming the cause and the fix."""
        said = " ".join((proc.stderr or proc.stdout or "").split())[-600:]
        repo = self.ocfg["repository"]
        if proc.returncode == RESTIC_WRONG_KEY or "wrong password" in said:
            return (f"{what}: the repository {repo} does not accept the key in "
                    f"{self.ocfg['password_file']} (wrong key; bm_offsite_password / "
                    "offsite_backup_password must be the key the repository was created "
                    "with). Nothing was deleted")
        if proc.returncode == RESTIC_NO_REPO:
            return (f"{what}: there is no repository at {repo} "
                    "(run site.yml with the offsite_backup role to create it)")
        if proc.returncode == RESTIC_LOCKED:
            return f"{what}: the repository {repo} is locked by another restic run: {said}"
        if "no space left" in said.lower():
            return f"{what}: the repository host is full ({repo}): {said}"
        if any(k in said for k in ("ssh", "connection", "Connection", "subprocess",
                                   "unable to start the sftp session", "Host key")):
            return f"{what}: the repository {repo} cannot be reached: {said}"
        return f"{what}: restic exit {proc.returncode}: {said}"


class OffsiteLock:
    """One offsite run at a time (flock; gone when its owner dies)."""

    def __init__(self, path: str):
        self.path = path
        self.fd = None

    def __enter__(self):
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise ToolError(f"another off-host copy is running ({self.path})",
                            EXIT_LOCKED) from None
        return self

    def __exit__(self, *exc):
        os.close(self.fd)


# --- state and metrics ---------------------------------------------------------------

def _state_path(cfg: dict) -> str:
    return os.path.join(cfg["state_dir"], "offsite.json")


def read_state(cfg: dict) -> dict:
    try:
        with open(_state_path(cfg), encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return {}


def write_state(cfg: dict, state: dict) -> None:
    os.makedirs(cfg["state_dir"], mode=0o700, exist_ok=True)
    write_atomic(_state_path(cfg), json.dumps(state, indent=2) + "\n")
    write_textfile(cfg, state)


def metric_lines(state: dict) -> list[str]:
    """The textfile metrics of the off-host copies (bmops_offsite_*)."""
    def gauge(name: str, text: str, value) -> list[str]:
        return [f"# HELP {name} {text}", f"# TYPE {name} gauge", f"{name} {value}"]

    send, check = state.get("send", {}), state.get("check", {})
    lines = gauge("bmops_offsite_last_run_success",
                  "1 if the last off-host copy run succeeded.", 1 if send.get("ok") else 0)
    lines += gauge("bmops_offsite_last_run_timestamp_seconds",
                   "Time of the last off-host copy run.", f"{send.get('finished', 0):.0f}")
    lines += gauge("bmops_offsite_last_success_timestamp_seconds",
                   "Time of the last successful off-host copy.",
                   f"{state.get('last_success', 0):.0f}")
    lines += gauge("bmops_offsite_newest_backup_timestamp_seconds",
                   "Creation time of the newest backup copied off the host.",
                   f"{state.get('newest_copied_time', 0):.0f}")
    if check:
        lines += gauge("bmops_offsite_last_check_success",
                       "1 if the last integrity check of the repository succeeded.",
                       1 if check.get("ok") else 0)
        lines += gauge("bmops_offsite_last_check_timestamp_seconds",
                       "Time of the last integrity check of the repository.",
                       f"{check.get('finished', 0):.0f}")
    return lines


def write_textfile(cfg: dict, state: dict) -> None:
    tdir = cfg.get("textfile_dir")
    if tdir and os.path.isdir(tdir):
        write_atomic(os.path.join(tdir, "bmops_offsite.prom"),
                     "\n".join(metric_lines(state)) + "\n", 0o644)


def _record(cfg: dict, key: str, outcome: dict) -> None:
    state = read_state(cfg)
    state[key] = outcome
    if key == "send" and outcome.get("ok"):
        state["last_success"] = outcome["finished"]
        state["newest_copied_id"] = outcome.get("newest_id")
        state["newest_copied_time"] = outcome.get("newest_time", 0)
    try:
        write_state(cfg, state)
    except OSError as exc:
        log(f"cannot record the off-host outcome: {exc}")


# --- commands ------------------------------------------------------------------------

def cmd_offsite(cfg: dict, args) -> dict:
    ocfg = load_offsite(args.offsite_config)
    return {"init": offsite_init, "send": offsite_send, "check": offsite_check,
            "status": offsite_status, "fetch": offsite_fetch}[args.action](cfg, ocfg, args)


def offsite_init(_cfg: dict, ocfg: dict, _args) -> dict:
    """Create the repository unless it exists (and accepts the key)."""
    restic = Restic(ocfg)
    proc = restic.run("cat", "config")
    if proc.returncode == 0:
        return {"ok": True, "created": False, "repository": ocfg["repository"]}
    if proc.returncode != RESTIC_NO_REPO:
        raise ToolError(restic.explain("checking the repository", proc))
    proc = restic.run("init")
    if proc.returncode != 0:
        raise ToolError(restic.explain("creating the repository", proc))
    log(f"created the off-host repository {ocfg['repository']}")
    return {"ok": True, "created": True, "repository": ocfg["repository"]}


def backup_files(cfg: dict) -> tuple[list[dict], list[str]]:
    """The verified backups (newest first) and the files that make them up."""
    verified = [e for e in scan(cfg["backup_dir"]) if e["kind"] == "verified"]
    files = []
    for e in verified:
        files.append(e["path"])
        manifest = os.path.join(cfg["backup_dir"], f"{e['id']}.json")
        if os.path.exists(manifest):
            files.append(manifest)
    return verified, files


def _snapshot(restic: Restic, ocfg: dict, tag: str, paths: list[str],
              excludes: list[str]) -> dict:
    with tempfile.NamedTemporaryFile("w", prefix="bmops-offsite-", suffix=".list",
                                     encoding="utf-8", delete=True) as lst:
        lst.write("\n".join(paths) + "\n")
        lst.flush()
        args = ["backup", "--json", "--tag", tag, "--host", ocfg["host"],
                "--files-from-verbatim", lst.name]
        for ex in excludes:
            args += ["--exclude", ex]
        proc = restic.run(*args)
    if proc.returncode not in (0, RESTIC_INCOMPLETE):
        raise ToolError(restic.explain(f"copying {tag}", proc))
    summary = {}
    for line in proc.stdout.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("message_type") == "summary":
            summary = msg
    out = {"snapshot": summary.get("snapshot_id", "")[:8],
           "files": summary.get("total_files_processed", 0),
           "bytes_added": summary.get("data_added", 0),
           "complete": proc.returncode == 0}
    if proc.returncode == RESTIC_INCOMPLETE:
        out["warning"] = " ".join(proc.stderr.split())[-400:]
    return out


def _forget(restic: Restic, ocfg: dict, tag: str) -> None:
    proc = restic.run("forget", "--tag", tag, "--host", ocfg["host"],
                      "--keep-within", f"{int(ocfg['keep_days'])}d",
                      "--keep-last", str(int(ocfg["keep_min"])), "--prune")
    if proc.returncode != 0:
        raise ToolError(restic.explain(f"applying retention to {tag}", proc))


@contextlib.contextmanager
def _outcome(cfg: dict, kind: str, result: dict):
    """Record how a run of KIND (send, check) ended, for the metrics and `status`, and
    turn a ToolError into the JSON failure. Not recorded: a run that found another one
    holding the lock (that one records its own outcome) and a send with nothing new."""
    try:
        yield
    except ToolError as exc:
        result["error"] = str(exc)
        if exc.code != EXIT_LOCKED:
            result["finished"] = time.time()
            _record(cfg, kind, result)
        raise fail_with(result, str(exc)) from None
    if not result.get("skipped"):
        result["finished"] = time.time()
        _record(cfg, kind, result)


def offsite_send(cfg: dict, ocfg: dict, args) -> dict:
    """Copy the verified backups and the configuration; then apply retention."""
    result = {"ok": False, "repository": ocfg["repository"], "started": iso(time.time())}
    with _outcome(cfg, "send", result), OffsiteLock(ocfg["lock_file"]):
        verified, files = backup_files(cfg)
        if not verified:
            raise ToolError(f"no verified backup in {cfg['backup_dir']} to copy")
        newest = verified[0]
        state = read_state(cfg)
        if (not args.force and state.get("newest_copied_id") == newest["id"]
                and state.get("send", {}).get("ok")):
            result.update(ok=True, skipped=True, newest_id=newest["id"],
                          reason="the newest verified backup is already off the host")
            return result
        restic = Restic(ocfg)
        result["backups"] = _snapshot(restic, ocfg, BACKUPS_TAG, files, [])
        config = [p for p in ocfg["config_paths"] if os.path.exists(p)]
        if config:
            result["config"] = _snapshot(restic, ocfg, CONFIG_TAG, config, ocfg["exclude"])
        if not result["backups"]["complete"]:
            raise ToolError("some backup files could not be read: "
                            + result["backups"].get("warning", ""))
        for tag in (BACKUPS_TAG, CONFIG_TAG):
            _forget(restic, ocfg, tag)
        result.update(ok=True, newest_id=newest["id"], newest_time=newest["time"],
                      copied_ids=[e["id"] for e in verified])
    log(f"copied {len(result['copied_ids'])} verified backups off the host "
        f"(newest {result['newest_id']}, {result['backups']['bytes_added']} bytes new)")
    return result


def offsite_check(cfg: dict, ocfg: dict, args) -> dict:
    """restic check, reading back a sample of the data (--read-data-subset)."""
    subset = args.subset or ocfg["check_subset"]
    result = {"ok": False, "repository": ocfg["repository"], "subset": subset}
    with _outcome(cfg, "check", result), OffsiteLock(ocfg["lock_file"]):
        restic = Restic(ocfg)
        proc = restic.run("check", f"--read-data-subset={subset}")
        if proc.returncode != 0:
            raise ToolError(restic.explain("checking the repository", proc))
        result["ok"] = True
    return result


def offsite_status(cfg: dict, ocfg: dict, _args) -> dict:
    """The recorded outcomes and this host's snapshots in the repository."""
    state = read_state(cfg)
    restic = Restic(ocfg)
    proc = restic.run("snapshots", "--json", "--host", ocfg["host"])
    if proc.returncode != 0:
        raise fail_with({"state": state}, restic.explain("listing the snapshots", proc))
    snaps = json.loads(proc.stdout or "[]")
    out = [{"id": s.get("short_id"), "time": s.get("time"), "tags": s.get("tags", []),
            "paths": len(s.get("paths", []))} for s in snaps]
    newest_local = next((e for e in scan(cfg["backup_dir"]) if e["kind"] == "verified"), None)
    copied = state.get("newest_copied_time", 0)
    return {"ok": True, "repository": ocfg["repository"], "snapshots": out, "state": state,
            "newest_local_id": newest_local["id"] if newest_local else None,
            "newest_copied_id": state.get("newest_copied_id"),
            "behind": bool(newest_local and newest_local["time"] > copied),
            "newest_copied_utc": iso(copied) if copied else None}


def offsite_fetch(_cfg: dict, ocfg: dict, args) -> dict:
    """Restore the newest copies of the backups and the configuration under --target
    (a standby host, a DR drill): the files keep their absolute paths below it."""
    if not args.target:
        raise ToolError("offsite fetch needs --target DIR (an empty directory)", EXIT_USAGE)
    host = args.from_host or ocfg["host"]
    if args.from_repository:
        # another host's repository on the same repository host (a standby reading the
        # primary's copies): same transport, key and SSH identity, another path
        ocfg = {**ocfg, "repository": args.from_repository}
    restic = Restic(ocfg)
    out = {"ok": True, "repository": ocfg["repository"], "host": host, "target": args.target}
    for tag in (BACKUPS_TAG, CONFIG_TAG):
        proc = restic.run("restore", "latest", "--tag", tag, "--host", host,
                          "--target", args.target)
        if proc.returncode != 0:
            raise fail_with(out, restic.explain(f"fetching {tag} of {host}", proc))
        out[tag] = "restored"
    return out
