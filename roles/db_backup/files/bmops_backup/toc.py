# SPDX-License-Identifier: Apache-2.0
"""pg_dump's directory-format table of contents (toc.dat), read with the stdlib.

This is the tool's one reader of a TOC.  It runs on the host, which has no
pg_restore (that lives in the db container), and it is needed there: ``verify`` reads
archives even when the db container is gone.  It gives what ``pg_restore -l`` cannot:
each table's data file name and its COPY statement, whose quoted table name is the
manifest's row-count key (``pg_restore -l`` prints names unquoted, ambiguous when they
hold spaces).  Backups therefore no longer also run ``pg_restore -l`` in the container;
restores still go through the server's own pg_restore.  Tested on real dumps of
PostgreSQL 15, 16 and 17 (archive versions 1.14, 1.15, 1.16).
"""

from __future__ import annotations

from .exceptions import ToolError


def _read_int(buf: bytes, pos: int, int_size: int) -> tuple[int, int]:
    sign = buf[pos]
    val = int.from_bytes(buf[pos + 1:pos + 1 + int_size], "little")
    return (-val if sign else val), pos + 1 + int_size


def _read_str(buf: bytes, pos: int, int_size: int) -> tuple[str | None, int]:
    n, pos = _read_int(buf, pos, int_size)
    if n < 0:
        return None, pos
    if pos + n > len(buf):
        raise ValueError("string runs past the end")
    return buf[pos:pos + n].decode("utf-8", errors="replace"), pos + n


def copy_table_name(copy_stmt: str | None) -> str | None:
    """'COPY public.t (a, b) FROM stdin;' -> 'public.t' (the manifest's table key)."""
    if not copy_stmt or not copy_stmt.startswith("COPY "):
        return None
    return copy_stmt[5:].split(" (", 1)[0].split(" FROM", 1)[0].strip()


def parse_toc(data: bytes) -> dict:
    """Parse a directory-format toc.dat: header and TOC entries that carry data files.

    Returns {"version": "1.14.0", "entries": [{"dump_id", "desc", "table", "file"}]};
    raises ValueError when the file is not a readable pg_dump TOC.
    """
    if data[:5] != b"PGDMP":
        raise ValueError("toc.dat does not start with PGDMP")
    vmaj, vmin, vrev, int_size, _off_size, fmt = data[5:11]
    version = (vmaj, vmin, vrev)
    if version < (1, 12, 0) or vmaj != 1:
        raise ValueError(f"unsupported archive version {vmaj}.{vmin}.{vrev}")
    if fmt == 1:  # archCustom: data blocks follow the TOC, no file names
        raise ValueError("this is a custom-format archive, not a directory TOC")
    pos = 11
    if version >= (1, 15, 0):
        compression, pos = data[pos], pos + 1  # algorithm byte
    else:
        compression, pos = _read_int(data, pos, int_size)
    if compression != 0:
        raise ValueError("the archive is compressed by pg_dump; bmops dumps with -Z0")
    for _ in range(7):  # creation time
        _, pos = _read_int(data, pos, int_size)
    for _ in range(3):  # database, server version, pg_dump version
        _, pos = _read_str(data, pos, int_size)
    count, pos = _read_int(data, pos, int_size)
    entries = []
    for _ in range(count):
        dump_id, pos = _read_int(data, pos, int_size)
        had_dumper, pos = _read_int(data, pos, int_size)
        for _ in range(2):  # tableoid, oid
            _, pos = _read_str(data, pos, int_size)
        _tag, pos = _read_str(data, pos, int_size)
        desc, pos = _read_str(data, pos, int_size)
        _, pos = _read_int(data, pos, int_size)  # section
        for _ in range(2):  # defn, dropStmt
            _, pos = _read_str(data, pos, int_size)
        copy_stmt, pos = _read_str(data, pos, int_size)
        for _ in range(3 if version >= (1, 14, 0) else 2):  # namespace, tablespace, tableam
            _, pos = _read_str(data, pos, int_size)
        if version >= (1, 16, 0):
            _, pos = _read_int(data, pos, int_size)  # relkind
        for _ in range(2):  # owner, "false"
            _, pos = _read_str(data, pos, int_size)
        while True:  # dependencies, NULL-terminated
            dep, pos = _read_str(data, pos, int_size)
            if dep is None:
                break
        filename, pos = _read_str(data, pos, int_size)
        if pos > len(data):
            raise ValueError("TOC runs past the end of toc.dat")
        if had_dumper and filename:
            entries.append({"dump_id": dump_id, "desc": desc, "file": filename,
                            "table": copy_table_name(copy_stmt)})
    return {"version": f"{vmaj}.{vmin}.{vrev}", "entries": entries}


def read_toc(data: bytes, where: str) -> dict:
    """parse_toc for callers: an unreadable TOC is a ToolError naming the file."""
    try:
        return parse_toc(data)
    except (ValueError, IndexError) as exc:
        raise ToolError(f"toc.dat of {where} is unreadable: {exc}") from None
