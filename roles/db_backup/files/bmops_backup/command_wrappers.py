# SPDX-License-Identifier: Apache-2.0
"""Process plumbing: pipelines with pipefail, feeding a file range into a process,
and programs run inside the db container (psql, pg_dump, pg_restore)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import threading

from .config import exec_prefix
from .exceptions import ToolError
from .utils import CHUNK


class Pipeline:
    """Start processes connected stdout->stdin; check every exit code (pipefail)."""

    def __init__(self):
        self.procs = []  # (label, Popen, stderr tempfile)

    def start(self, label, argv, stdin=None, stdout=subprocess.PIPE):
        err = tempfile.TemporaryFile()  # noqa: SIM115 - closed in wait()
        try:
            proc = subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=err)
        except FileNotFoundError:
            err.close()
            raise ToolError(f"{label}: command not found: {argv[0]}") from None
        self.procs.append((label, proc, err))
        return proc

    def kill(self):
        for _, proc, _ in self.procs:
            if proc.poll() is None:
                proc.kill()

    def wait(self):
        """Wait for all; raise ToolError naming the first failed stage."""
        failures = []
        for label, proc, err in self.procs:
            rc = proc.wait()
            err.seek(0)
            text = err.read().decode(errors="replace").strip()
            err.close()
            if rc != 0:
                failures.append(f"{label} exited {rc}" + (f": {text[-600:]}" if text else ""))
        self.procs = []
        if failures:
            raise ToolError("; ".join(failures))


def copy_range(fh, offset: int, size: int, dest, hasher=None) -> None:
    """Copy bytes [offset, offset+size) of the open file ``fh`` to ``dest``."""
    fh.seek(offset)
    left = size
    while left > 0:
        chunk = fh.read(min(CHUNK, left))
        if not chunk:
            raise ToolError("archive is truncated")
        if hasher is not None:
            hasher.update(chunk)
        dest.write(chunk)
        left -= len(chunk)


@contextlib.contextmanager
def feeding(path: str, label: str, argv: list, offset: int = 0, size: int | None = None,
            hasher=None, stdout=subprocess.PIPE):
    """Run ``argv`` with bytes [offset, offset+size) of ``path`` on its stdin (fed by a
    thread, hashed on the way); yield (pipeline, process, stats).  On leaving: join the
    feeder, wait for every process of the pipeline (pipefail), and raise ToolError on
    any failure; on an error inside the block, kill them all first."""
    pipe = Pipeline()
    errors: list = []
    stats = {"bytes": 0}
    if size is None:
        size = os.path.getsize(path)
    try:
        proc = pipe.start(label, argv, stdin=subprocess.PIPE, stdout=stdout)

        def feed():
            try:
                with open(path, "rb") as src:
                    copy_range(src, offset, size, proc.stdin, hasher)
                    stats["bytes"] = size
            except BrokenPipeError:
                errors.append(f"{label} stopped reading early")
            except (OSError, ToolError) as exc:
                errors.append(str(exc))
            finally:
                with contextlib.suppress(OSError):
                    proc.stdin.close()

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        yield pipe, proc, stats
        feeder.join()
        pipe.wait()
    except BaseException:
        pipe.kill()
        raise
    if errors:
        raise ToolError(f"reading {path}: {errors[0]}")


def pipe_range(path: str, offset: int, size: int, label: str, argv: list,
               sink=None, out_fd: int | None = None) -> None:
    """Feed bytes [offset, offset+size) of ``path`` to ``argv``; its output goes to
    ``sink(chunk)``, to ``out_fd``, or nowhere.  Every failure raises ToolError."""
    if sink is not None:
        stdout = subprocess.PIPE
    else:
        stdout = out_fd if out_fd is not None else subprocess.DEVNULL
    with feeding(path, label, argv, offset, size, stdout=stdout) as (_, proc, _):
        if sink is not None:
            while chunk := proc.stdout.read(CHUNK):
                sink(chunk)


def run_in_db(cfg: dict, argv: list, stdin_text: str | None = None) -> str:
    """Run a program inside the db container; return stdout; raise on non-zero."""
    try:
        res = subprocess.run(exec_prefix(cfg) + argv, input=(stdin_text or "").encode(),
                             capture_output=True, check=False)
    except FileNotFoundError:
        raise ToolError(f"command not found: {exec_prefix(cfg)[0]}") from None
    if res.returncode != 0:
        raise ToolError(f"{argv[0]} in the db container exited {res.returncode}: "
                        f"{res.stderr.decode(errors='replace').strip()[-600:]}")
    return res.stdout.decode()


def psql(cfg: dict, sql: str, db: str | None = None) -> list[list[str]]:
    out = run_in_db(cfg, ["psql", "-X", "-q", "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1",
                          "-U", cfg["db_user"], "-d", db or cfg["db_name"], "-f", "-"], sql)
    return [line.split("\t") for line in out.splitlines() if line]


def sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def sql_ident(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'
