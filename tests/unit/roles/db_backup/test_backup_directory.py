# SPDX-License-Identifier: Apache-2.0
"""Unit tests of the directory format of bmops-backup (pure file logic, no database).

The fixture ``fixtures/pg15-directory`` is a real ``pg_dump -Fd -Z0`` of a small
PostgreSQL 15 database: storage_targets (3 rows, one value holding an escaped
newline and one a backslash), a table with quotes in its name (25 rows) and empty_one (0 rows).
``fixtures/pg16-directory`` (archive 1.15) and ``fixtures/pg17-directory`` (archive 1.16)
are the same kind of dump made by PostgreSQL 16.2 and 17: tables t (42 rows) and
"Odd Name" (2 rows). The 16.2 binaries came from the ``pgserver`` wheel on PyPI.
"""

from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path

import pytest
from test_backup_tool import bt

FIXTURE = Path(__file__).parent / "fixtures" / "pg15-directory"
COUNTS = {"public.storage_targets": 3, 'public."Odd ""Name"""': 25, "public.empty_one": 0}


@pytest.fixture
def dump_dir(tmp_path):
    d = tmp_path / "dump"
    shutil.copytree(FIXTURE, d)
    return d


def pack(src: Path, out: Path, codec: str = "zstd") -> dict:
    with open(out, "xb") as fh:
        return bt.pack_directory(str(src), fh, codec, 1)


def test_parse_toc_finds_every_table_file_and_its_name():
    toc = bt.parse_toc((FIXTURE / "toc.dat").read_bytes())
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
    src = Path(__file__).parent / "fixtures" / fixture
    toc = bt.parse_toc((src / "toc.dat").read_bytes())
    assert toc["version"] == version
    out = tmp_path / "x.dir.tar"
    info = pack(src, out)
    assert info["row_counts"] == {"public.t": 42, 'public."Odd Name"': 2}
    assert bt.inspect_dir_tar(str(out))["row_counts"] == info["row_counts"]


@pytest.mark.parametrize("data, message", [
    (b"", "PGDMP"),
    (b"PGDMX" + bytes(40), "PGDMP"),
    (b"PGDMP\x01\x0a\x00\x04\x08\x05" + bytes(40), "unsupported archive version"),
    (b"PGDMP\x01\x0e\x00\x04\x08\x01" + bytes(40), "custom-format"),
])
def test_parse_toc_rejects_what_is_not_a_directory_toc(data, message):
    with pytest.raises(ValueError, match=message):
        bt.parse_toc(data)


def test_parse_toc_rejects_a_truncated_toc():
    data = (FIXTURE / "toc.dat").read_bytes()
    with pytest.raises((ValueError, IndexError)):
        bt.parse_toc(data[: len(data) // 2])


@pytest.mark.parametrize("codec", ["zstd", "gzip"])
def test_pack_counts_rows_and_the_archive_reads_back(dump_dir, tmp_path, codec):
    out = tmp_path / "x.dir.tar"
    info = pack(dump_dir, out, codec)
    assert info["row_counts"] == COUNTS
    assert info["archive_version"] == "1.14.0"
    suffix = bt.SUFFIX[codec]
    with tarfile.open(out) as tar:  # a plain tar that any tar can list and extract
        assert sorted(tar.getnames()) == sorted(
            ["toc.dat"] + [f"{n}{suffix}" for n in ("3348.dat", "3349.dat", "3350.dat")])
        assert all(m.mode == 0o600 for m in tar.getmembers())
        assert tar.extractfile("toc.dat").read() == (FIXTURE / "toc.dat").read_bytes()
    again = bt.inspect_dir_tar(str(out), count=True)
    assert again["row_counts"] == COUNTS
    assert again["size_bytes"] == out.stat().st_size
    quick = bt.inspect_dir_tar(str(out), count=False)
    assert quick["sha256"] == again["sha256"] and quick["row_counts"] is None


def test_members_decompress_to_the_dump_files_byte_for_byte(dump_dir, tmp_path):
    out = tmp_path / "x.dir.tar"
    pack(dump_dir, out)
    with open(out, "rb") as fh:
        for name, off, size in bt.iter_tar(fh):
            base, codec = bt._member_codec(name)
            if codec is None:
                continue
            target = tmp_path / base
            with open(target, "wb") as dest:
                bt._decompress_range(str(out), off, size, codec, dest.fileno())
            assert target.read_bytes() == (FIXTURE / base).read_bytes()


def test_a_table_file_without_its_end_marker_is_refused(dump_dir, tmp_path):
    f = dump_dir / "3349.dat"
    f.write_bytes(f.read_bytes()[:-5])  # pg_dump died mid-table
    with pytest.raises(bt.ToolError, match=r"3349\.dat: table data is incomplete"):
        pack(dump_dir, tmp_path / "x.dir.tar")


def test_a_missing_table_file_is_refused(dump_dir, tmp_path):
    (dump_dir / "3348.dat").unlink()
    with pytest.raises(bt.ToolError, match=r"data files missing: 3348\.dat"):
        pack(dump_dir, tmp_path / "x.dir.tar")


def test_a_flipped_byte_or_a_truncated_file_fails_inspection(dump_dir, tmp_path):
    out = tmp_path / "x.dir.tar"
    pack(dump_dir, out)
    data = out.read_bytes()
    with open(out, "rb") as fh:
        member = next(m for m in bt.iter_tar(fh) if m[0] == "3349.dat.zst")
    flipped = bytearray(data)
    flipped[member[1] + member[2] // 2] ^= 0xFF
    bad = tmp_path / "flipped.dir.tar"
    bad.write_bytes(bytes(flipped))
    with pytest.raises(bt.ToolError):
        bt.inspect_dir_tar(str(bad), count=False)
    short = tmp_path / "short.dir.tar"
    short.write_bytes(data[: member[1] + 3])
    with pytest.raises(bt.ToolError, match="truncated"):
        bt.inspect_dir_tar(str(short), count=True)


def test_iter_tar_refuses_paths_and_links():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("../etc/passwd")
        tar.addfile(info, io.BytesIO(b""))
    buf.seek(0)
    with pytest.raises(bt.ToolError, match="unexpected member"):
        list(bt.iter_tar(buf))


@pytest.mark.parametrize("stmt, name", [
    ("COPY public.t (a, b) FROM stdin;\n", "public.t"),
    ('COPY public."Odd ""Name""" (id) FROM stdin;\n', 'public."Odd ""Name"""'),
    ("COPY s.t FROM stdin;\n", "s.t"),
    (None, None),
    ("", None),
])
def test_copy_table_name(stmt, name):
    assert bt.copy_table_name(stmt) == name


def test_an_archive_with_a_damaged_toc_is_a_tool_error(tmp_path):
    bad = tmp_path / "bad.dir.tar"
    with tarfile.open(bad, "w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("toc.dat")
        info.size = 40
        tar.addfile(info, io.BytesIO(b"PGDMP" + bytes(35)))
    with pytest.raises(bt.ToolError, match=r"toc\.dat of .* is unreadable"):
        bt.inspect_dir_tar(str(bad))
