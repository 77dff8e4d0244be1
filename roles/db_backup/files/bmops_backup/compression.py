# SPDX-License-Identifier: Apache-2.0
"""Host codecs: zstd and gzip, always run as separate processes (C speed)."""

from __future__ import annotations

from .command_wrappers import pipe_range

DECOMPRESS = {"zstd": ["zstd", "-dc", "-q"], "gzip": ["gzip", "-dc"]}
TEST = {"zstd": ["zstd", "-t", "-q"], "gzip": ["gzip", "-t"]}
SUFFIX = {"zstd": ".zst", "gzip": ".gz"}
CODEC_OF = {v: k for k, v in SUFFIX.items()}


def compress_argv(codec: str, level: int) -> list:
    """The host compressor (stdout), for a file argument or stdin."""
    return (["zstd", f"-{level}", "-T0", "-q", "-c"] if codec == "zstd"
            else ["gzip", "-1", "-c"])


def member_codec(name: str) -> tuple[str, str | None]:
    """'3365.dat.zst' -> ('3365.dat', 'zstd'); 'toc.dat' -> ('toc.dat', None)."""
    base, dot, suffix = name.rpartition(".")
    if dot and "." + suffix in CODEC_OF:
        return base, CODEC_OF["." + suffix]
    return name, None


def decompress_range(path: str, offset: int, size: int, codec: str, out_fd: int) -> None:
    """Decompress bytes [offset, offset+size) of ``path`` into the file descriptor."""
    pipe_range(path, offset, size, f"{codec} -d", DECOMPRESS[codec], out_fd=out_fd)
