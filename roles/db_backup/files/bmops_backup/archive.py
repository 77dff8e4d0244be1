# SPDX-License-Identifier: Apache-2.0
"""The directory-format archive, <id>.dir.tar.

Default format.  pg_dump -Fd -Z0 -j N writes one plain COPY file per table into a
work directory inside the db container; the host reads it through /proc/<pid>/root
(no docker exec stdio in the data path), counts each table's rows, and packs the
files into ONE tar file whose members are compressed one by one:

    <id>.dir.tar = toc.dat + <dumpId>.dat.zst ... (uncompressed tar, 0600)

Restoring by hand: `tar -xf <id>.dir.tar -C d && zstd -d --rm d/*.zst &&
pg_restore -j 2 -d DB d` (pg_restore 16+ reads the .zst members as they are).
bmops restores without unpacking: every table file becomes a FIFO in the container
that the host fills from its member while `pg_restore -j N` reads it.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import tarfile
import time

from .command_wrappers import Pipeline, pipe_range
from .compression import DECOMPRESS, SUFFIX, TEST, compress_argv, member_codec
from .exceptions import ToolError
from .toc import read_toc
from .utils import CHUNK

COPY_END = b"\\.\n\n\n"  # what pg_dump writes after a table's last row (-Fd, -Z0)


def table_rows(name: str, newlines: int, tail: bytes) -> int:
    """Rows of a -Fd table file: one line per COPY row, then pg_dump's end marker."""
    if not tail.endswith(COPY_END):
        raise ToolError(f"{name}: table data is incomplete (no end-of-data marker)")
    return newlines - COPY_END.count(b"\n")


def _tar_header(name: str, size: int, mtime: float) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o600, int(mtime)
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def _pad(size: int) -> bytes:
    return b"\0" * (-size % 512)


def _compress_member(src: str, out, codec: str, level: int, count: bool) -> dict:
    """Compress the finished file ``src`` into ``out``; count its rows meanwhile.

    The compressor and ``wc -l`` read the file themselves (page cache, C speed);
    Python only copies the compressed bytes.
    """
    argv = [*compress_argv(codec, level), src]
    pipe = Pipeline()
    written = 0
    lines = b"0"
    try:
        comp = pipe.start(argv[0], argv, stdin=subprocess.DEVNULL)
        counter = None
        if count:
            with open(src, "rb") as fh:
                counter = pipe.start("wc -l", ["wc", "-l"], stdin=fh)
        while chunk := comp.stdout.read(CHUNK):
            out.write(chunk)
            written += len(chunk)
        if counter:
            lines = counter.stdout.read()
        pipe.wait()
    except BaseException:
        pipe.kill()
        raise
    size = os.path.getsize(src)
    result = {"compressed": written, "bytes": size}
    if count:
        with open(src, "rb") as fh:
            fh.seek(max(0, size - len(COPY_END)))
            tail = fh.read()
        result["rows"] = table_rows(os.path.basename(src), int(lines.split()[0]), tail)
    return result


def pack_directory(src_dir: str, out, codec: str, level: int) -> dict:
    """Pack a pg_dump -Fd directory into the open file ``out`` as a tar of compressed
    members; return row counts per table, read from the table files themselves."""
    with open(os.path.join(src_dir, "toc.dat"), "rb") as fh:
        toc_bytes = fh.read()
    toc = read_toc(toc_bytes, "the dump")
    names = set(os.listdir(src_dir))
    missing = [e["file"] for e in toc["entries"] if e["file"] not in names]
    if missing:
        raise ToolError(f"dump is incomplete: data files missing: {', '.join(missing[:5])}")
    tables = {e["file"]: e["table"] for e in toc["entries"] if e["table"]}
    now = time.time()
    out.write(_tar_header("toc.dat", len(toc_bytes), now) + toc_bytes + _pad(len(toc_bytes)))
    counts: dict[str, int] = {}
    sql_bytes = 0
    for name in sorted(names - {"toc.dat"}):
        path = os.path.join(src_dir, name)
        if not os.path.isfile(path):
            raise ToolError(f"unexpected entry {name} in the dump directory")
        start = out.tell()
        out.write(b"\0" * 512)  # header, filled in once the compressed size is known
        res = _compress_member(path, out, codec, level, count=name in tables)
        out.write(_pad(res["compressed"]))
        end = out.tell()
        out.seek(start)
        out.write(_tar_header(name + SUFFIX[codec], res["compressed"], now))
        out.seek(end)
        sql_bytes += res["bytes"]
        if name in tables:
            counts[tables[name]] = counts.get(tables[name], 0) + res["rows"]
    out.write(b"\0" * 1024)  # end of archive
    return {"row_counts": counts, "sql_bytes": sql_bytes + len(toc_bytes),
            "archive_version": toc["version"], "members": len(names)}


def iter_tar(fh):
    """Yield (name, offset, size) of each member of an uncompressed tar; hashes nothing."""
    while True:
        block = fh.read(512)
        if len(block) < 512:
            raise ToolError("archive is truncated (no end-of-archive marker)")
        if block == b"\0" * 512:
            return
        try:
            info = tarfile.TarInfo.frombuf(block, "utf-8", "strict")
        except tarfile.TarError as exc:
            raise ToolError(f"archive is damaged: {exc}") from None
        if not info.isfile() or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", info.name):
            raise ToolError(f"archive holds an unexpected member {info.name!r}")
        yield info.name, fh.tell(), info.size
        fh.seek(info.size + (-info.size % 512), os.SEEK_CUR)


def inspect_dir_tar(path: str, count: bool = True) -> dict:
    """Read a .dir.tar end to end: sha256 of the file, every member decompresses
    (codec checksums), the TOC parses, and (count=True) rows per table."""
    hasher = hashlib.sha256()
    counts: dict[str, int] = {}
    sql_bytes = 0
    with open(path, "rb") as fh:
        members = list(iter_tar(fh))
        names = {member_codec(n)[0] for n, _, _ in members}
        if "toc.dat" not in names:
            raise ToolError(f"{path}: no toc.dat in the archive")
        for name, off, size in members:
            if name == "toc.dat":
                fh.seek(off)
                toc = read_toc(fh.read(size), path)
        tables = {e["file"]: e["table"] for e in toc["entries"] if e["table"]}
        missing = [e["file"] for e in toc["entries"] if e["file"] not in names]
        if missing:
            raise ToolError(f"{path}: data files missing: {', '.join(missing[:5])}")
        for name, off, size in members:
            base, codec = member_codec(name)
            if codec is None:
                continue
            table = tables.get(base) if count else None
            if table:
                seen = {"nl": 0, "tail": b"", "bytes": 0}

                def sink(chunk, seen=seen):
                    seen["nl"] += chunk.count(b"\n")
                    seen["tail"] = (seen["tail"] + chunk[-8:])[-8:]
                    seen["bytes"] += len(chunk)

                pipe_range(path, off, size, f"{codec} -d ({name})", DECOMPRESS[codec],
                           sink=sink)
                nl, tail = seen["nl"], seen["tail"]
                sql_bytes += seen["bytes"]
            else:
                pipe_range(path, off, size, f"{codec} -t ({name})", TEST[codec])
            if table:
                counts[table] = counts.get(table, 0) + table_rows(f"{path}: {name}", nl, tail)
        fh.seek(0)
        size_bytes = 0
        while chunk := fh.read(CHUNK):
            hasher.update(chunk)
            size_bytes += len(chunk)
    return {"sha256": hasher.hexdigest(), "size_bytes": size_bytes,
            "row_counts": counts if count else None, "sql_bytes": sql_bytes,
            "complete": True}
