# SPDX-License-Identifier: Apache-2.0
"""bmops_backup.archive (and .compression): the .dir.tar format, pure file logic, no
database.  The fixture is described in test_backup_toc.py."""

from __future__ import annotations

import io
import shutil
import tarfile

import pytest
from backup_harness import FIXTURES, pack
from bmops_backup.archive import inspect_dir_tar, iter_tar
from bmops_backup.compression import SUFFIX, decompress_range, member_codec
from bmops_backup.exceptions import ToolError

FIXTURE = FIXTURES / "pg15-directory"
COUNTS = {"public.storage_targets": 3, 'public."Odd ""Name"""': 25, "public.empty_one": 0}


@pytest.fixture
def dump_dir(tmp_path):
    d = tmp_path / "dump"
    shutil.copytree(FIXTURE, d)
    return d


@pytest.mark.parametrize("codec", ["zstd", "gzip"])
def test_pack_counts_rows_and_the_archive_reads_back(dump_dir, tmp_path, codec):
    out = tmp_path / "x.dir.tar"
    info = pack(dump_dir, out, codec)
    assert info["row_counts"] == COUNTS
    assert info["archive_version"] == "1.14.0"
    suffix = SUFFIX[codec]
    with tarfile.open(out) as tar:  # a plain tar that any tar can list and extract
        assert sorted(tar.getnames()) == sorted(
            ["toc.dat"] + [f"{n}{suffix}" for n in ("3348.dat", "3349.dat", "3350.dat")])
        assert all(m.mode == 0o600 for m in tar.getmembers())
        assert tar.extractfile("toc.dat").read() == (FIXTURE / "toc.dat").read_bytes()
    again = inspect_dir_tar(str(out), count=True)
    assert again["row_counts"] == COUNTS
    assert again["size_bytes"] == out.stat().st_size
    quick = inspect_dir_tar(str(out), count=False)
    assert quick["sha256"] == again["sha256"] and quick["row_counts"] is None


def test_members_decompress_to_the_dump_files_byte_for_byte(dump_dir, tmp_path):
    out = tmp_path / "x.dir.tar"
    pack(dump_dir, out)
    with open(out, "rb") as fh:
        for name, off, size in iter_tar(fh):
            base, codec = member_codec(name)
            if codec is None:
                continue
            target = tmp_path / base
            with open(target, "wb") as dest:
                decompress_range(str(out), off, size, codec, dest.fileno())
            assert target.read_bytes() == (FIXTURE / base).read_bytes()


def test_a_table_file_without_its_end_marker_is_refused(dump_dir, tmp_path):
    f = dump_dir / "3349.dat"
    f.write_bytes(f.read_bytes()[:-5])  # pg_dump died mid-table
    with pytest.raises(ToolError, match=r"3349\.dat: table data is incomplete"):
        pack(dump_dir, tmp_path / "x.dir.tar")


def test_a_missing_table_file_is_refused(dump_dir, tmp_path):
    (dump_dir / "3348.dat").unlink()
    with pytest.raises(ToolError, match=r"data files missing: 3348\.dat"):
        pack(dump_dir, tmp_path / "x.dir.tar")


def test_a_flipped_byte_or_a_truncated_file_fails_inspection(dump_dir, tmp_path):
    out = tmp_path / "x.dir.tar"
    pack(dump_dir, out)
    data = out.read_bytes()
    with open(out, "rb") as fh:
        member = next(m for m in iter_tar(fh) if m[0] == "3349.dat.zst")
    flipped = bytearray(data)
    flipped[member[1] + member[2] // 2] ^= 0xFF
    bad = tmp_path / "flipped.dir.tar"
    bad.write_bytes(bytes(flipped))
    with pytest.raises(ToolError):
        inspect_dir_tar(str(bad), count=False)
    short = tmp_path / "short.dir.tar"
    short.write_bytes(data[: member[1] + 3])
    with pytest.raises(ToolError, match="truncated"):
        inspect_dir_tar(str(short), count=True)


def test_iter_tar_refuses_paths_and_links():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("../etc/passwd")
        tar.addfile(info, io.BytesIO(b""))
    buf.seek(0)
    with pytest.raises(ToolError, match="unexpected member"):
        list(iter_tar(buf))


def test_an_archive_with_a_damaged_toc_is_a_tool_error(tmp_path):
    bad = tmp_path / "bad.dir.tar"
    with tarfile.open(bad, "w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("toc.dat")
        info.size = 40
        tar.addfile(info, io.BytesIO(b"PGDMP" + bytes(35)))
    with pytest.raises(ToolError, match=r"toc\.dat of .* is unreadable"):
        inspect_dir_tar(str(bad))
