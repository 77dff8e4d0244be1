# SPDX-License-Identifier: Apache-2.0
"""Run a bmops procedure the way AWX does: through ansible-runner.

    bmops list
    bmops run daily_check -i inventory/production
    bmops run daily_check -i hosts.yml --project-dir /srv/bmops

Each procedure is a playbook under the project's ``playbooks/``. The project
is ``--project-dir``, else ``$BMOPS_PROJECT_DIR``, else the current directory
when it holds ``ansible.cfg`` and ``playbooks/``, else the copy installed with
the package (see :mod:`bmops.paths`). The run uses the project directory as
AWX does (so its ``ansible.cfg`` applies), keeps the runner artifacts (events,
stdout, ``set_stats`` data) under the artifact directory (``--artifacts``,
``$BMOPS_ARTIFACTS``, else ``.cache/runner`` in a writable checkout, else
``$XDG_CACHE_HOME/bmops/runner``), prints one line per task result, then the
summary that the playbook published with ``set_stats`` and where its report
is. The exit code is the playbook's (0 ok, 2 a host failed, 4 a host
unreachable, ...), which is what AWX shows.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from bmops import paths

# Events worth a line of progress, and how to name their outcome.
_RESULT_EVENTS = {
    "runner_on_ok": "ok",
    "runner_on_failed": "FAILED",
    "runner_on_unreachable": "UNREACHABLE",
    "runner_on_skipped": "skipped",
}
# ansible-playbook's prompt for --ask-become-pass, as ansible-runner matches it
BECOME_PROMPT = r"^BECOME password.*:\s*?$"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def procedures(project: paths.Project | None = None) -> list[str]:
    """Names of the procedures (playbooks) of PROJECT (default: the one
    :func:`bmops.paths.find_project` picks)."""
    return (project or paths.find_project()).procedures()


def parse_extravars(pairs: list[str]) -> dict[str, Any]:
    """Turn ``-e key=value`` and ``-e @file.json`` arguments into a dict.

    Values are parsed as JSON when they are valid JSON (``true``, ``3``,
    ``["a"]``), else kept as strings, like ``ansible-playbook -e``.
    """
    result: dict[str, Any] = {}
    for item in pairs:
        if item.startswith("@"):
            data = json.loads(Path(item[1:]).read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError(f"{item[1:]} must hold a JSON object")
            result.update(data)
            continue
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"extra variable {item!r} is not key=value or @file.json")
        try:
            result[key] = json.loads(value)
        except json.JSONDecodeError:
            result[key] = value
    return result


def progress_line(event: dict[str, Any]) -> str | None:
    """One human line for a runner event, or None for events not worth one."""
    kind = event.get("event", "")
    data = event.get("event_data", {})
    if kind == "playbook_on_play_start":
        return f"PLAY {data.get('play', '')}"
    outcome = _RESULT_EVENTS.get(kind)
    if outcome is None:
        return None
    if outcome == "ok" and (data.get("res") or {}).get("changed"):
        outcome = "changed"
    line = f"  {outcome:<11} {data.get('host', '?')}: {data.get('task', '')}"
    if outcome in ("FAILED", "UNREACHABLE"):
        res = data.get("res") or {}
        msg = res.get("msg") or res.get("stderr") or ""
        if msg and not res.get("_ansible_no_log"):
            first = str(msg).strip().splitlines()[0]
            # validate_argument_spec: "Validation of arguments failed:", then the errors
            errors = res.get("argument_errors") or []
            if errors and first.endswith(":"):
                first += f" {errors[0]}"
            line += f"\n              {first[:300]}"
    return line


def summary_lines(stats: dict[str, Any] | None, artifact_data: dict[str, Any]) -> list[str]:
    """The closing lines: per-host counts, then what the playbook published."""
    lines: list[str] = []
    for host in sorted(set().union(*[(stats or {}).get(k, {}) for k in
                                     ("ok", "changed", "failures", "dark", "skipped")])):
        counts = {k: (stats or {}).get(k, {}).get(host, 0)
                  for k in ("ok", "changed", "failures", "dark", "skipped")}
        lines.append(
            f"{host}: ok={counts['ok']} changed={counts['changed']} "
            f"failed={counts['failures']} unreachable={counts['dark']} skipped={counts['skipped']}"
        )
    for key, value in sorted(artifact_data.items()):
        if isinstance(value, dict):
            status = value.get("status")
            report = value.get("report")
            if status is not None:
                lines.append(f"{key}: {status}")
            if report:
                lines.append(f"{key} report: {report}")
    return lines


def ensure_tools_on_path() -> None:
    """Put this interpreter's bin directory first on PATH.

    ansible-runner starts ``ansible-playbook`` by name; when bmops is run as
    ``.venv/bin/bmops`` without an activated virtualenv, that is where it is.
    """
    bindir = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    if bindir not in path.split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + path


def run(args: argparse.Namespace, project: paths.Project) -> int:
    import ansible_runner  # imported here so `list` and `--help` stay instant

    known = project.procedures()
    if args.procedure not in known:
        print(f"bmops: no procedure {args.procedure!r} in {project.describe()}; "
              f"known: {', '.join(known)}", file=sys.stderr)
        return 2
    extravars = parse_extravars(args.extra_vars or [])
    artifact_data: dict[str, Any] = {}
    # ansible-playbook's own output (errors before any play: a syntax error, a
    # role or module not found), shown only when the run fails before a task.
    verbose: list[str] = []
    results = 0

    def on_event(event: dict[str, Any]) -> bool:
        nonlocal results
        if event.get("event") == "playbook_on_stats":
            artifact_data.update(event.get("event_data", {}).get("artifact_data") or {})
        elif event.get("event") == "verbose" and len(verbose) < 200:
            verbose.append(_ANSI.sub("", event.get("stdout") or ""))
        elif event.get("event") in _RESULT_EVENTS:
            results += 1
        line = progress_line(event)
        if line and not args.quiet:
            print(line, flush=True)
        return True

    cmdline = []
    if args.check:
        cmdline.append("--check")
    if args.diff:
        cmdline.append("--diff")
    if args.tags:
        cmdline += ["--tags", args.tags]
    if args.syntax_check:
        cmdline.append("--syntax-check")
    passwords: dict[str, str] = {}
    if args.ask_become_pass:
        # answered through ansible-runner's prompt answers (env/passwords, 0600, in the
        # private data dir removed below), as AWX gives a machine credential's
        # become password: never on a command line, never in the environment
        cmdline.append("--ask-become-pass")
        passwords[BECOME_PROMPT] = getpass.getpass("BECOME password: ")
    inventory = str(Path(args.inventory or project.path / "inventory" / "demo").resolve())
    ensure_tools_on_path()
    root = Path(args.artifacts or paths.default_artifacts(project)).resolve()
    root.mkdir(parents=True, exist_ok=True)
    if not args.quiet:
        print(f"project: {project.describe()}", flush=True)
    # ansible-runner writes -e, the environment and the command line options to
    # env/ in its private data dir and, when such a file is already there, uses
    # it: a shared one would carry one run's -e (restore_confirm=true), --check
    # or ANSIBLE_CONFIG (another project's) into the next run. So each run gets
    # a fresh private data dir, removed after (it holds the -e values); the
    # artifacts stay under ROOT/artifacts/, the newest 20 kept.
    private = Path(tempfile.mkdtemp(prefix="run-", dir=root))
    try:
        result = ansible_runner.run(
            private_data_dir=str(private),
            artifact_dir=str(root / "artifacts"),
            project_dir=str(project.path),
            playbook=f"playbooks/{args.procedure}.yml",
            inventory=inventory,
            extravars=extravars,
            limit=args.limit,
            verbosity=args.verbose,
            cmdline=" ".join(cmdline) or None,
            passwords=passwords,
            envvars={"ANSIBLE_CONFIG": str(project.ansible_cfg),
                     # ansible-runner turns host key checking off unless told:
                     # keep SSH host keys checked (as ansible.cfg says) unless the
                     # operator's environment says otherwise
                     "ANSIBLE_HOST_KEY_CHECKING": os.environ.get(
                         "ANSIBLE_HOST_KEY_CHECKING", "True")},
            quiet=True,
            event_handler=on_event,
            rotate_artifacts=20,
        )
    finally:
        shutil.rmtree(private, ignore_errors=True)
    if result.rc != 0 and not results:
        print("\n".join(verbose).strip())
    for line in summary_lines(result.stats, artifact_data):
        print(line)
    print(f"artifacts: {result.config.artifact_dir}")
    print(f"status: {result.status} rc={result.rc}")
    return int(result.rc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bmops", description=__doc__.splitlines()[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--project-dir", metavar="DIR",
        help=f"the Ansible project (ansible.cfg, playbooks/, roles/...); default "
             f"${paths.PROJECT_ENV}, else the current directory if it is one, "
             "else the copy installed with bmops")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", parents=[common], help="list the procedures")
    runp = sub.add_parser("run", parents=[common],
                          help="run a procedure through ansible-runner")
    runp.add_argument("procedure", help="playbook name without .yml, e.g. daily_check")
    runp.add_argument("-i", "--inventory",
                      help="inventory file or directory (default: the project's inventory/demo)")
    runp.add_argument("-e", "--extra-vars", action="append", metavar="KEY=VALUE|@FILE")
    runp.add_argument("-l", "--limit")
    runp.add_argument("-t", "--tags")
    runp.add_argument("-C", "--check", action="store_true")
    runp.add_argument("-D", "--diff", action="store_true")
    runp.add_argument("-v", "--verbose", action="count", default=0)
    runp.add_argument("-q", "--quiet", action="store_true", help="no per-task lines")
    runp.add_argument("-K", "--ask-become-pass", action="store_true",
                      help="ask for the sudo (become) password once, here; it is given "
                           "to ansible-playbook's prompt, never on a command line")
    runp.add_argument("--syntax-check", action="store_true",
                      help="only check the playbook (its roles and modules resolve); "
                           "no host is contacted")
    runp.add_argument(
        "--artifacts", metavar="DIR",
        help=f"where the runner artifacts go (artifacts/<run id>/ in it); default "
             f"${paths.ARTIFACTS_ENV}, else "
             ".cache/runner in a writable project checkout, else "
             "$XDG_CACHE_HOME/bmops/runner (~/.cache/bmops/runner)")
    args = parser.parse_args(argv)
    try:
        project = paths.find_project(args.project_dir)
        if args.command == "list":
            print("\n".join(project.procedures()))
            return 0
        return run(args, project)
    except ValueError as exc:
        print(f"bmops: {exc}", file=sys.stderr)
        return 2
