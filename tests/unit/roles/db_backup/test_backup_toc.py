# SPDX-License-Identifier: Apache-2.0
"""bmops_backup.toc: the stdlib reader of pg_dump's directory-format toc.dat.

``fixtures/pg15-directory`` is a real ``pg_dump -Fd -Z0`` of a small PostgreSQL 15
database: storage_targets (3 rows, one value holding an escaped newline and one a
backslash), a table with quotes in its name (25 rows) and empty_one (0 rows).
``fixtures/pg16-directory`` (archive 1.15) and ``fixtures/pg17-directory`` (archive 1.16)
are the same kind of dump made by PostgreSQL 16.2 and 17: tables t (42 rows) and
"Odd Name" (2 rows). The 16.2 binaries came from the ``pgserver`` wheel on PyPI.
"""

from __future__ import annotations

import pytest
from backup_harness import FIXTURES, pack
from bmops_backup.archive import inspect_dir_tar
from bmops_backup.toc import copy_table_name, parse_toc

FIXTURE = FIXTURES / "pg15-directory"


def test_parse_toc_finds_every_table_file_and_its_name():
    toc = parse_toc((FIXTURE / "toc.dat").read_bytes())
    assert toc["version"] == "1.14.0"
    assert {e["file"]: e["table"] for e in toc["entries"]} == {
        "3348.dat": "public.storage_targets", "3349.dat": 'public."Odd ""Name"""',
        "3350.dat": "public.empty_one"}


@pytest.mark.parametrize("fixture, version", [
    # archive 1.15: a compression-algorithm byte replaces the compression level
    ("pg16-directory", "1.15.0"),
    # archive 1.16: relkind per entry as well
    ("pg17-directory", "1.16.0"),
])
def test_parse_toc_reads_postgresql_16_and_17_archives_too(tmp_path, fixture, version):
    src = FIXTURES / fixture
    toc = parse_toc((src / "toc.dat").read_bytes())
    assert toc["version"] == version
    out = tmp_path / "x.dir.tar"
    info = pack(src, out)
    assert info["row_counts"] == {"public.t": 42, 'public."Odd Name"': 2}
    assert inspect_dir_tar(str(out))["row_counts"] == info["row_counts"]


@pytest.mark.parametrize("data, message", [
    (b"", "PGDMP"),
    (b"PGDMX" + bytes(40), "PGDMP"),
    (b"PGDMP\x01\x0a\x00\x04\x08\x05" + bytes(40), "unsupported archive version"),
    (b"PGDMP\x01\x0e\x00\x04\x08\x01" + bytes(40), "custom-format"),
])
def test_parse_toc_rejects_what_is_not_a_directory_toc(data, message):
    with pytest.raises(ValueError, match=message):
        parse_toc(data)


def test_parse_toc_rejects_a_truncated_toc():
    data = (FIXTURE / "toc.dat").read_bytes()
    with pytest.raises((ValueError, IndexError)):
        parse_toc(data[: len(data) // 2])


@pytest.mark.parametrize("stmt, name", [
    ("COPY public.t (a, b) FROM stdin;\n", "public.t"),
    ('COPY public."Odd ""Name""" (id) FROM stdin;\n', 'public."Odd ""Name"""'),
    ("COPY s.t FROM stdin;\n", "s.t"),
    (None, None),
    ("", None),
])
def test_copy_table_name(stmt, name):
    assert copy_table_name(stmt) == name
