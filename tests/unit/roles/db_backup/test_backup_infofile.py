# SPDX-License-Identifier: Apache-2.0
"""bmops_backup.infofile: backup file names."""

from __future__ import annotations

import pytest
from bmops_backup.infofile import parse_name


@pytest.mark.parametrize("name,expected", [
    ("20260225_030000.sql.gz", {"id": "20260225_030000", "format": "sql_gz", "partial": False}),
    ("20260225_030000_2.dump.zst", {"id": "20260225_030000_2", "codec": "zstd"}),
    ("20260225_030000.dump.gz.partial", {"format": "custom", "codec": "gzip", "partial": True}),
    ("20260225_030000.json", None),
    ("backup.sql.gz", None),
    ("20260225_0300.sql.gz", None),
])
def test_parse_name(name, expected):
    got = parse_name(name)
    if expected is None:
        assert got is None
    else:
        assert {k: got[k] for k in expected} == expected


def test_name_time_is_utc():
    assert parse_name("20260225_030000.sql.gz")["name_time"] == 1771988400.0
