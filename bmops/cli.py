# SPDX-License-Identifier: Apache-2.0
"""Run a bmops procedure the way AWX does: through ansible-runner.

    python -m bmops run daily_check -i inventory/demo
    python -m bmops list

Each procedure is a playbook under ``playbooks/``. The run uses the project
directory as AWX does (so the root ``ansible.cfg`` applies), keeps the runner
artifacts (events, stdout, ``set_stats`` data) under the artifact directory,
prints one line per task result, then the summary that the playbook published
with ``set_stats`` and where its report is. The exit code is the playbook's
(0 ok, 2 a host failed, 4 a host unreachable, ...), which is what AWX shows.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parent.parent
PLAYBOOK_DIR = PROJECT_DIR / "playbooks"
DEFAULT_ARTIFACTS = PROJECT_DIR / ".cache" / "runner"

# Events worth a line of progress, and how to name their outcome.
_RESULT_EVENTS = {
    "runner_on_ok": "ok",
    "runner_on_failed": "FAILED",
    "runner_on_unreachable": "UNREACHABLE",
    "runner_on_skipped": "skipped",
}


def procedures() -> list[str]:
    """Names of the procedures (playbooks) this project ships."""
    return sorted(p.stem for p in PLAYBOOK_DIR.glob("*.yml"))


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
            line += f"\n              {str(msg).strip().splitlines()[0][:300]}"
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


def run(args: argparse.Namespace) -> int:
    import ansible_runner  # imported here so `list` and `--help` stay instant

    if args.procedure not in procedures():
        print(f"bmops: no procedure {args.procedure!r}; known: {', '.join(procedures())}",
              file=sys.stderr)
        return 2
    extravars = parse_extravars(args.extra_vars or [])
    artifact_data: dict[str, Any] = {}

    def on_event(event: dict[str, Any]) -> bool:
        if event.get("event") == "playbook_on_stats":
            artifact_data.update(event.get("event_data", {}).get("artifact_data") or {})
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
    inventory = str(Path(args.inventory).resolve())
    ensure_tools_on_path()
    private = Path(args.artifacts).resolve()
    private.mkdir(parents=True, exist_ok=True)
    result = ansible_runner.run(
        private_data_dir=str(private),
        project_dir=str(PROJECT_DIR),
        playbook=f"playbooks/{args.procedure}.yml",
        inventory=inventory,
        extravars=extravars,
        limit=args.limit,
        verbosity=args.verbose,
        cmdline=" ".join(cmdline) or None,
        envvars={"ANSIBLE_CONFIG": str(PROJECT_DIR / "ansible.cfg")},
        quiet=True,
        event_handler=on_event,
        rotate_artifacts=20,
    )
    for line in summary_lines(result.stats, artifact_data):
        print(line)
    print(f"artifacts: {private / 'artifacts' / result.config.ident}")
    print(f"status: {result.status} rc={result.rc}")
    return int(result.rc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bmops", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the procedures")
    runp = sub.add_parser("run", help="run a procedure through ansible-runner")
    runp.add_argument("procedure", help="playbook name without .yml, e.g. daily_check")
    runp.add_argument("-i", "--inventory", default=str(PROJECT_DIR / "inventory" / "demo"))
    runp.add_argument("-e", "--extra-vars", action="append", metavar="KEY=VALUE|@FILE")
    runp.add_argument("-l", "--limit")
    runp.add_argument("-t", "--tags")
    runp.add_argument("-C", "--check", action="store_true")
    runp.add_argument("-D", "--diff", action="store_true")
    runp.add_argument("-v", "--verbose", action="count", default=0)
    runp.add_argument("-q", "--quiet", action="store_true", help="no per-task lines")
    runp.add_argument("--artifacts", default=os.environ.get("BMOPS_ARTIFACTS",
                                                            str(DEFAULT_ARTIFACTS)))
    args = parser.parse_args(argv)
    if args.command == "list":
        print("\n".join(procedures()))
        return 0
    try:
        return run(args)
    except ValueError as exc:
        print(f"bmops: {exc}", file=sys.stderr)
        return 2
