# SPDX-License-Identifier: Apache-2.0
"""Fixtures of the bmops_backup tests.

``roles/db_backup/files`` goes first on ``sys.path``, so the tests import the tool as
the package it is (``from bmops_backup import retention``); ``env`` is a backup
directory, a 0600 configuration and ``fakedb``, a small stand-in for the db container
that answers the two programs the tool runs there (psql, pg_dump).
"""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
from helpers import ROOT

FILES = ROOT / "roles" / "db_backup" / "files"
if str(FILES) not in sys.path:
    sys.path.insert(0, str(FILES))

FAKEDB = textwrap.dedent('''\
    #!/usr/bin/env python3
    # Stand-in for `docker compose exec -T db`: answers psql and pg_dump.
    import os, sys
    args = sys.argv[1:]
    mode = os.environ.get("FAKE_MODE", "ok")
    if args[0] == "psql":
        sys.stdin.read()
        print("15.99\\t1000")
    elif args[0] == "pg_dump":
        if mode == "empty":
            sys.exit(0)
        out = sys.stdout
        out.write("--\\n-- PostgreSQL database dump\\n--\\n")
        out.write("COPY public.t (a) FROM stdin;\\n")
        for i in range(int(os.environ.get("FAKE_ROWS", "500"))):
            out.write(f"row {i}\\n")
            if mode == "hang" and i == 100:
                out.flush()
                import time
                time.sleep(60)
            if mode == "fail" and i == 100:
                out.flush()
                sys.stderr.write("pg_dump: error: connection lost\\n")
                sys.exit(1)
        out.write("\\\\.\\n\\n")
        out.write('COPY public."Odd ""Name""" (b) FROM stdin;\\n1\\n2\\n\\\\.\\n')
        out.write("--\\n-- PostgreSQL database dump complete\\n--\\n")
    else:
        sys.exit(99)
''')


@pytest.fixture
def env(tmp_path, monkeypatch):
    fake = tmp_path / "fakedb"
    fake.write_text(FAKEDB)
    fake.chmod(0o755)
    bdir = tmp_path / "backup"
    bdir.mkdir(mode=0o700)
    prom = tmp_path / "prom"
    prom.mkdir()
    cfg = {"exec_prefix": [sys.executable, str(fake)], "container_password_env": "",
           "backup_dir": str(bdir), "lock_file": str(tmp_path / "lock"),
           "textfile_dir": str(prom), "state_dir": str(tmp_path / "state"),
           "format": "sql_gz", "min_free_bytes": 0,
           "keep_days": 30, "keep_min": 2}
    path = tmp_path / "backup.json"
    path.write_text(json.dumps(cfg))
    path.chmod(0o600)
    monkeypatch.setenv("FAKE_MODE", "ok")
    return {"cfg": path, "dir": bdir, "prom": prom, "tmp": tmp_path}
